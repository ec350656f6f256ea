"""The dead-letter record format of orders-dlq, written and read here only.

A dead letter is the rejected record's key and value, unchanged, with its own headers kept and
these added: ``reason`` (a short code), ``detail`` (a sentence naming what to fix) and where it
came from (``source.topic``, ``source.partition``, ``source.offset``).
"""

from __future__ import annotations

from datetime import datetime, timezone

import msgspec

from include.pipeline.domain.record import Record

REASON, DETAIL = "reason", "detail"
SOURCE_TOPIC, SOURCE_PARTITION, SOURCE_OFFSET = "source.topic", "source.partition", "source.offset"


class DeadLetter(msgspec.Struct, frozen=True):
    """One record of orders-dlq, as read back."""

    partition: int
    offset: int
    timestamp: datetime | None  # when it was dead-lettered (the record's timestamp)
    key: bytes | None
    value: bytes | None
    reason: str
    detail: str
    source_topic: str
    source_partition: int
    source_offset: int


def headers(message: Record, reason: str, detail: str) -> list[tuple[str, bytes | None]]:
    """The headers of ``message``'s dead letter (its key and value go unchanged): its own, then
    why and where from."""
    return list(message.headers() or []) + [
        (REASON, reason.encode()),
        (DETAIL, detail.encode()),
        (SOURCE_TOPIC, message.topic().encode()),
        (SOURCE_PARTITION, str(message.partition()).encode()),
        (SOURCE_OFFSET, str(message.offset()).encode()),
    ]


def read(message: Record) -> DeadLetter:
    """A record of orders-dlq. Of repeated headers the last wins: the rejected record's own
    headers come first, so a producer's ``reason`` header cannot hide the pipeline's."""
    headers = {name: (value or b"").decode(errors="replace") for name, value in message.headers() or []}
    kind, ms = message.timestamp()
    return DeadLetter(
        partition=message.partition(), offset=message.offset(),
        timestamp=datetime.fromtimestamp(ms / 1000, timezone.utc) if kind and ms >= 0 else None,
        key=message.key(), value=message.value(), reason=headers.get(REASON, ""),
        detail=headers.get(DETAIL, ""), source_topic=headers.get(SOURCE_TOPIC, ""),
        source_partition=_int(headers.get(SOURCE_PARTITION)), source_offset=_int(headers.get(SOURCE_OFFSET)),
    )


def _int(text: str | None) -> int:
    try:
        return int(text or "")
    except ValueError:  # a record someone else wrote to orders-dlq
        return -1
