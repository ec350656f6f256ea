"""What continuous mode measures, written and read here only: the ``origins`` header that carries
orders' produce times to product-metrics, end-to-end latencies, and the lines a stage process
reports to the stream supervisor.

An order's end-to-end latency runs from its produce time (the Kafka timestamp of its ``orders``
record; process gives its processed-orders record the same timestamp) to the commit of the
metrics-store transaction that makes its window's new totals visible. analyze puts on each
product-metrics record the produce times of the orders it newly counts in it, so the sink
measures each order, not each batch. Kafka keeps timestamps to the millisecond, and so does the
header: a list of [produce time in epoch ms, orders] pairs.
"""

from __future__ import annotations

import math
from fractions import Fraction

import msgspec
import numpy as np

ORIGINS = "origins"


# The origins header of a record that counts no order with a produce time.
NO_ORIGINS = ORIGINS, b"[]"


def origins_headers(groups: np.ndarray, produced_ms: np.ndarray) -> dict[int, tuple[str, bytes]]:
    """The ``origins`` header of each group of orders (``groups``: each order's), by group: the
    [produce time in epoch ms, orders] pairs, sorted, of those produced at a known time (ms > 0);
    a group with none has no entry (its header is NO_ORIGINS)."""
    timed = produced_ms > 0
    groups, produced_ms = groups[timed], produced_ms[timed]
    order = np.lexsort((produced_ms, groups))
    groups, produced_ms = groups[order], produced_ms[order]
    new = np.ones(len(groups), bool)
    new[1:] = (groups[1:] != groups[:-1]) | (produced_ms[1:] != produced_ms[:-1])
    firsts = np.flatnonzero(new)
    counts = np.diff(np.append(firsts, len(groups))).tolist()
    pairs: dict[int, list[tuple[int, int]]] = {}
    for group, ms, count in zip(groups[firsts].tolist(), produced_ms[firsts].tolist(), counts):
        pairs.setdefault(group, []).append((ms, count))
    return {group: (ORIGINS, msgspec.json.encode(times)) for group, times in pairs.items()}


_pairs = msgspec.json.Decoder(list[tuple[int, int]])


def origins(headers: list[tuple[str, bytes | None]] | None) -> list[tuple[int, int]]:
    """The (produce time in epoch ms, orders) pairs of a record's headers; none for a record
    that counts no new order (a replayed window, a record from before continuous mode)."""
    for name, value in headers or ():
        if name == ORIGINS and value:
            try:
                return _pairs.decode(value)
            except msgspec.DecodeError:  # a header someone else wrote: not ours to measure
                return []
    return []


class Latencies(msgspec.Struct):
    """Orders per end-to-end latency in whole milliseconds: exact percentiles over any number of
    orders in little memory (latencies repeat)."""

    counts: dict[int, int] = {}

    def add(self, latency_ms: int, orders: int = 1) -> None:
        """Counts ``orders`` more at this latency; a negative one counts as 0."""
        latency_ms = max(0, latency_ms)  # clocks of two hosts may disagree by a little
        self.counts[latency_ms] = self.counts.get(latency_ms, 0) + orders

    def add_origins(self, pairs: list[tuple[int, int]], visible_ms: int, since_ms: int = 0) -> None:
        """Counts the orders of a record's ``origins`` pairs, made visible at ``visible_ms`` (epoch
        ms), that were produced at ``since_ms`` or later."""
        for produced_ms, orders in pairs:
            if produced_ms >= since_ms:
                self.add(visible_ms - produced_ms, orders)

    def merge(self, other: Latencies) -> None:
        """Adds the counts of ``other`` to these."""
        for latency_ms, orders in other.counts.items():
            self.add(latency_ms, orders)

    @property
    def orders(self) -> int:
        """How many orders were measured."""
        return sum(self.counts.values())

    def percentile(self, q: float) -> int | None:
        """The latency that ``q`` percent of the orders do not exceed (nearest rank); None when
        there is none."""
        total = self.orders
        if not total:
            return None
        rank = max(1, math.ceil(total * Fraction(str(q)) / 100))  # exact, for any q
        seen = 0
        for latency_ms in sorted(self.counts):
            seen += self.counts[latency_ms]
            if seen >= rank:
                return latency_ms
        return max(self.counts)

    def summary(self) -> dict[str, int | None]:
        """The percentiles a report shows (p50, p95, p99, max) and the orders they are over."""
        return {
            "p50_ms": self.percentile(50), "p95_ms": self.percentile(95), "p99_ms": self.percentile(99),
            "max_ms": max(self.counts) if self.counts else None, "orders": self.orders,
        }


class Tick(msgspec.Struct, tag="tick"):
    """A stage process's batch, committed: records read and written, and (the sink) the
    latencies of the orders whose totals it made visible."""

    stage: str
    read: int
    written: int
    latencies: Latencies = msgspec.field(default_factory=Latencies)


class Ended(msgspec.Struct, tag="ended"):
    """A stage process's last line: what its stage function returned."""

    stage: str
    result: dict


_report = msgspec.json.Decoder(Tick | Ended)


def report_line(report: Tick | Ended) -> bytes:
    """The line a stage process prints for its supervisor, which ``read_report`` reads back."""
    return msgspec.json.encode(report) + b"\n"


def read_report(line: bytes) -> Tick | Ended | None:
    """A line of a stage process's standard output; None for anything else printed there."""
    try:
        return _report.decode(line)
    except msgspec.DecodeError:
        return None
