"""A Kafka record as the domain reads it: the methods of confluent_kafka's ``Message`` it uses, so
that nothing here imports the client."""

from __future__ import annotations

from typing import Protocol


class Record(Protocol):
    """An input record, as confluent_kafka's ``Message`` is one."""

    def key(self) -> bytes | None:
        """The record's key."""

    def value(self) -> bytes | None:
        """The record's value; None for a tombstone."""

    def timestamp(self) -> tuple[int, int]:
        """(timestamp type, epoch ms); type 0 means none."""

    def topic(self) -> str:
        """The topic it was read from."""

    def partition(self) -> int:
        """The partition of its topic it was read from."""

    def offset(self) -> int:
        """Its offset in that partition."""

    def headers(self) -> list[tuple[str, bytes | None]] | None:
        """Its headers, in order; None when it has none."""
