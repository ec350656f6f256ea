"""The analyze-state changelog format, written and read here only.

analyze-state is a compacted topic: the newest record per key wins, and a None value (a
tombstone) deletes its key. analyze keeps a state per partition of processed-orders: its keys
start ``<partition>/`` and go to the changelog partition ``partition % changelog partitions``
(``scoped``, ``changelog_partition``); keys without that prefix are the state of the version
before (``LEGACY``, migrated by ``stages``). Within a partition, its keys and values:

- ``window:<window_start>:<product_id>``: an open window's exact aggregate,
  JSON ``{"count": 3, "total": "31.50"}`` (the total never rounded);
- ``orders:<hash of the value>``: a segment of counted order ids: their 16-byte fingerprints,
  then their event times (little-endian int64 epoch microseconds);
- ``watermark``: the newest event time counted, JSON epoch microseconds;
- ``ledger``: everything counted so far, JSON ``{"count", "revenue"}``.
"""

from __future__ import annotations

from decimal import Decimal
from hashlib import blake2b
from typing import NamedTuple

import msgspec
import numpy as np

from include.pipeline.domain import codec
from include.pipeline.domain.windows import Aggregate, Ledger, WindowKey

Record = tuple[bytes, bytes | None]
FINGERPRINT = np.dtype("S16")
EVENT_US = np.dtype("<i8")
SEGMENT_IDS = 20_000  # ids per segment record: 480 KB, under the broker's 1 MB default

_WINDOW, _SEGMENT, _WATERMARK, _LEDGER = b"window:", b"orders:", b"watermark", b"ledger"


def scoped(partition: int, records: list[Record]) -> list[Record]:
    """One partition's state records: each key prefixed ``<partition>/``."""
    prefix = f"{partition}/".encode()
    return [(prefix + key, value) for key, value in records]


def scope_of(key: bytes) -> tuple[int | None, bytes]:
    """(the partition a changelog key belongs to, the key within it); None for a key of the
    version before partitions."""
    head, slash, rest = key.partition(b"/")
    return (int(head), rest) if slash and head.isdigit() else (None, key)


def changelog_partition(partition: int, changelog_partitions: int) -> int:
    """The analyze-state partition that holds the state of a processed-orders partition."""
    return partition % changelog_partitions


def window_record(key: WindowKey, aggregate: Aggregate | None) -> Record:
    """A window's aggregate; None: the window is closed, its key deleted."""
    value = (
        None if aggregate is None
        else codec.encode({"count": aggregate.count, "total": str(aggregate.total)})
    )
    return _WINDOW + f"{key[0]}:{key[1]}".encode(), value


def segment_records(fingerprints: np.ndarray, event_us: np.ndarray) -> list[tuple[bytes, bytes, int]]:
    """Newly counted ids as segment records, SEGMENT_IDS each: (key, value, newest event time)."""
    segments = []
    for start in range(0, len(fingerprints), SEGMENT_IDS):
        times = event_us[start:start + SEGMENT_IDS]
        value = fingerprints[start:start + SEGMENT_IDS].tobytes() + times.tobytes()
        segments.append(
            (_SEGMENT + blake2b(value, digest_size=16).hexdigest().encode(), value, int(times.max()))
        )
    return segments


def is_segment(key: bytes) -> bool:
    """Whether a changelog key is a segment of counted order ids."""
    return key.startswith(_SEGMENT)


def segment_ids(value: bytes) -> tuple[np.ndarray, np.ndarray]:
    """A segment's fingerprints and their event times (read-only views of ``value``)."""
    n = len(value) // (FINGERPRINT.itemsize + EVENT_US.itemsize)
    split = n * FINGERPRINT.itemsize
    return np.frombuffer(value, FINGERPRINT, n), np.frombuffer(value, EVENT_US, n, offset=split)


def watermark_record(watermark_us: int | None) -> Record:
    """The newest event time counted, in epoch microseconds (None: nothing counted yet)."""
    return _WATERMARK, codec.encode(watermark_us)


def ledger_record(ledger: Ledger) -> Record:
    """Everything counted so far: what reconcile checks the metrics against."""
    return _LEDGER, codec.encode(msgspec.to_builtins(ledger))


class Window(NamedTuple):
    """A window's aggregate by its key; None once the window closed (its key deleted)."""

    key: WindowKey
    aggregate: Aggregate | None  # None: deleted


class Segment(NamedTuple):
    """A segment of counted order ids, its value still undecoded."""

    key: bytes
    value: bytes | None  # decoded by segment_ids, only once it is known to be live


class Watermark(NamedTuple):
    """The newest event time counted, in epoch microseconds."""

    us: int


def decode(key: bytes, value: bytes | None) -> Window | Segment | Watermark | Ledger | None:
    """One changelog record; None for a key of no kind above, or a deleted watermark or ledger."""
    if key.startswith(_WINDOW):
        start, product_id = key[len(_WINDOW):].decode().split(":", 1)
        if value is None:
            return Window((int(start), product_id), None)
        doc = codec.decode(value)
        return Window((int(start), product_id), Aggregate(int(doc["count"]), Decimal(doc["total"])))
    if key.startswith(_SEGMENT):
        return Segment(key, value)
    if value is None:
        return None
    if key == _WATERMARK:
        return Watermark(codec.decode(value))
    if key == _LEDGER:
        return msgspec.convert(codec.decode(value), Ledger)
    return None
