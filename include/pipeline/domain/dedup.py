"""The dedup horizon: the order ids counted so far, in memory that does not grow with them.

Each id is kept as a 16-byte BLAKE2b fingerprint with its event time. Two different ids share a
fingerprint with probability 2**-128 per pair (about 1e-21 for a billion ids): far below any
hardware error rate.

New fingerprints collect in sorted runs in memory, merged like a binary counter. Past
``SPILL_IDS`` they are written (``spill``: to a temporary directory) as one sorted run, of which memory
keeps a Bloom filter (1.3 to 2.5 bytes an id) and every ``BLOCK``-th key: a lookup reads a 4 KB
block only when the filter says the id may be there. Files merge the same way, streamed a chunk
at a time, so there are O(log n) of them. A batch of orders is looked up in all runs at once.

The changelog (the analyze-state topic) is what lasts: one segment record per batch of newly
counted ids, keyed by a hash of its content. The files are a cache, rebuilt from it by a restart.
"""

from __future__ import annotations

from hashlib import blake2b
from typing import Callable, Iterable, Iterator, Protocol

import numpy as np

from include.pipeline.domain import state_codec
from include.pipeline.domain.state_codec import EVENT_US, FINGERPRINT, Record

SPILL_IDS = 1 << 16  # ids held in memory before they go to a file (1.5 MB)
PROBES = 7


def fingerprint(order_id: str) -> bytes:
    """The 16-byte fingerprint an order id is remembered by."""
    return blake2b(order_id.encode("utf-8", "surrogatepass"), digest_size=16).digest()


_EMPTY = blake2b(digest_size=16)


def fingerprints(order_ids: list[bytes]) -> np.ndarray:
    """fingerprint() of each id (UTF-8), as an array of FINGERPRINT."""
    new = _EMPTY.copy  # a copy of a hash with its parameters set costs less than making one
    digests = []
    add = digests.append
    for order_id in order_ids:
        digest = new()
        digest.update(order_id)
        add(digest.digest())
    return np.frombuffer(b"".join(digests), FINGERPRINT) if digests else np.empty(0, FINGERPRINT)


class Run:
    """Fingerprints in ascending order, with the event time (epoch us) of each."""

    __slots__ = ("keys", "event_us", "_high")

    def __init__(self, keys: np.ndarray, event_us: np.ndarray) -> None:
        self.keys, self.event_us = keys, event_us
        self._high: np.ndarray | None = None

    @property
    def high(self) -> np.ndarray:
        """The keys' first 8 bytes as integers, in the same order: searched far faster."""
        if self._high is None:
            self._high = high_halves(self.keys)
        return self._high

    @classmethod
    def of(cls, keys: np.ndarray, event_us: np.ndarray) -> Run:
        """A run of these entries, sorted."""
        order = sort_order(keys)
        return cls(keys[order], event_us[order])

    def __len__(self) -> int:
        return len(self.keys)

    def contains(self, query: np.ndarray, query_high: np.ndarray | None = None) -> np.ndarray:
        """Which of ``query`` (with its ``high_halves``, if at hand) are in the run."""
        if not len(self):
            return np.zeros(len(query), bool)
        at = _positions(self, query, high_halves(query) if query_high is None else query_high)
        at[at == len(self)] = 0
        return self.keys[at] == query

    def merge(self, other: Run) -> Run:
        """Both runs as one, in order."""
        # Linear: each of other's keys goes where searchsorted says, self's fill the rest.
        slots = _positions(self, other.keys, other.high) + np.arange(len(other))
        rest = np.ones(len(self) + len(other), dtype=bool)
        rest[slots] = False
        keys = np.empty(len(rest), dtype=FINGERPRINT)
        event_us = np.empty(len(rest), dtype=EVENT_US)
        keys[slots], event_us[slots] = other.keys, other.event_us
        keys[rest], event_us[rest] = self.keys, self.event_us
        return Run(keys, event_us)

    def since(self, cutoff_us: int) -> Run:
        """The entries at or after cutoff_us (this run itself if that is all of them)."""
        keep = self.event_us >= cutoff_us
        return self if keep.all() else Run(self.keys[keep], self.event_us[keep])


class Spilled(Protocol):
    """A run written out (``store.spill.SpilledRun``): memory keeps what finds an id in it."""

    size: int
    bits: int  # of its Bloom filter
    newest: int  # its newest event time (epoch us)

    def chunks(self) -> Iterator[Run]:
        """The run read back in order, a chunk at a time."""

    def contains(self, query: np.ndarray, probes: np.ndarray, cutoff_us: int) -> np.ndarray:
        """Which of query (with its ``probes`` for this run's filter) are in it from cutoff_us on."""

    def delete(self) -> None:
        """Remove what it was written to."""


# Writes ascending chunks of a run of at most so many ids (``store.spill.SpillFiles``).
Spill = Callable[[Iterable[Run], int], Spilled]


class SeenOrders:
    """Fingerprints of counted order ids, with their changelog segments.

    :param spill: where runs go past ``SPILL_IDS`` ids in memory (``store.spill.SpillFiles``);
        None keeps them all in memory (small sets, tests).
    """

    def __init__(self, spill: Spill | None = None) -> None:
        self.runs: list[Run] = []
        self.spilled: list[Spilled] = []
        self._spill = spill
        self.segments: dict[bytes, int] = {}  # changelog key -> newest event time in the segment
        self.cutoff_us = -(2**63)  # ids before this are forgotten
        self._live: set[bytes] = set()  # restoring: the segments no later tombstone deletes

    def __len__(self) -> int:
        return sum(len(run) for run in self.runs) + sum(run.size for run in self.spilled)

    def contains(self, fingerprints: np.ndarray) -> np.ndarray:
        """Which of ``fingerprints`` (FINGERPRINT) were counted before (a bool per fingerprint)."""
        query = np.asarray(fingerprints, dtype=FINGERPRINT)
        found = np.zeros(len(query), dtype=bool)
        query_high = high_halves(query)
        for run in self.runs:
            found |= run.contains(query, query_high)
        probes: dict[int, np.ndarray] = {}  # per filter size
        for spilled in self.spilled:
            if spilled.bits not in probes:
                probes[spilled.bits] = bloom_probes(query, spilled.bits)
            found |= spilled.contains(query, probes[spilled.bits], self.cutoff_us)
        return found

    def add(self, fingerprints: np.ndarray, event_us: np.ndarray) -> list[Record]:
        """Remember newly counted ids (FINGERPRINT, EVENT_US); returns the changelog records that
        save them."""
        self.remember(fingerprints, event_us)
        return self.saved(fingerprints, event_us)

    def remember(self, fingerprints: np.ndarray, event_us: np.ndarray) -> None:
        """Newly counted ids, found by contains() from now on; ``saved`` makes their records."""
        keys = np.asarray(fingerprints, dtype=FINGERPRINT)
        if len(keys):
            self._push(Run.of(keys, np.asarray(event_us, dtype=EVENT_US)))

    def saved(self, fingerprints: np.ndarray, event_us: np.ndarray) -> list[Record]:
        """The changelog records that save ids remembered since the last call (one batch's)."""
        keys = np.asarray(fingerprints, dtype=FINGERPRINT)
        records: list[Record] = []
        for key, value, newest in state_codec.segment_records(keys, np.asarray(event_us, dtype=EVENT_US)):
            self.segments[key] = newest
            records.append((key, value))
        return records

    def forget_before(self, cutoff_us: int) -> list[bytes]:
        """Forget the ids whose event time is before ``cutoff_us``; returns the keys of the
        changelog segments that hold nothing else any more (to tombstone)."""
        self.cutoff_us = max(self.cutoff_us, cutoff_us)
        self.runs = [kept for run in self.runs if len(kept := run.since(self.cutoff_us))]
        for spilled in [s for s in self.spilled if s.newest < self.cutoff_us]:
            self.spilled.remove(spilled)
            spilled.delete()
        gone = [key for key, newest in self.segments.items() if newest < self.cutoff_us]
        for key in gone:
            del self.segments[key]
        return gone

    # Restoring reads the changelog twice: first which segments are live, then only those, so
    # the ids are never all in memory as raw records.

    def note(self, segment: state_codec.Segment) -> None:
        """Restoring, first pass: whether a segment is live (no later tombstone)."""
        if segment.value is None:
            self._live.discard(segment.key)
        else:
            self._live.add(segment.key)

    def load(self, segment: state_codec.Segment) -> None:
        """Restoring, second pass: the ids of a live segment."""
        if segment.key in self._live and segment.key not in self.segments:
            keys, event_us = state_codec.segment_ids(segment.value)
            self.segments[segment.key] = int(event_us.max())
            self._push(Run.of(keys, event_us))

    def _push(self, run: Run) -> None:
        self.runs.append(run)
        while len(self.runs) > 1 and len(self.runs[-2]) < 2 * len(self.runs[-1]):
            newer = self.runs.pop()
            self.runs.append(self.runs.pop().merge(newer))
        if self._spill is None or sum(len(run) for run in self.runs) < SPILL_IDS:
            return
        merged = self.runs.pop()
        while self.runs:
            merged = self.runs.pop().merge(merged)
        self.spilled.append(self._spill([merged], len(merged)))
        # Files merge like the runs in memory, streamed a chunk at a time, so there are
        # O(log n) of them to look in; forgotten ids are left out on the way.
        while len(self.spilled) > 1 and self.spilled[-2].size < 2 * self.spilled[-1].size:
            newer, older = self.spilled.pop(), self.spilled.pop()
            chunks = (chunk.since(self.cutoff_us) for chunk in _merged(older.chunks(), newer.chunks()))
            self.spilled.append(self._spill(chunks, older.size + newer.size))
            older.delete()
            newer.delete()


def _merged(a: Iterator[Run], b: Iterator[Run]) -> Iterator[Run]:
    """Two ascending streams of runs as one."""
    streams = [a, b]
    heads = [next(a, None), next(b, None)]
    while heads[0] is not None and heads[1] is not None:
        # Everything up to the smaller of the two last keys is final.
        first = 0 if heads[0].keys[-1:] <= heads[1].keys[-1:] else 1
        other = 1 - first
        cut = int(np.searchsorted(heads[other].keys, heads[first].keys[-1:], side="right")[0])
        yield heads[first].merge(Run(heads[other].keys[:cut], heads[other].event_us[:cut]))
        rest = Run(heads[other].keys[cut:], heads[other].event_us[cut:])
        heads[other] = rest if len(rest) else next(streams[other], None)
        heads[first] = next(streams[first], None)
    for head, stream in zip(heads, streams):
        while head is not None:
            yield head
            head = next(stream, None)


def high_halves(keys: np.ndarray) -> np.ndarray:
    """The first 8 bytes of each fingerprint as an unsigned integer (big-endian, so that they
    sort as the fingerprints do)."""
    return np.ascontiguousarray(keys).view(">u8")[0::2].astype(np.uint64)


def sort_order(keys: np.ndarray) -> np.ndarray:
    """np.argsort(keys, kind="stable") of fingerprints, sorting integers (far faster)."""
    halves = np.ascontiguousarray(keys).view(">u8").astype(np.uint64)
    return np.lexsort((halves[1::2], halves[0::2]))


def _positions(run: Run, query: np.ndarray, query_high: np.ndarray) -> np.ndarray:
    """np.searchsorted(run.keys, query), searching the high halves (integers compare in one
    step, 16-byte strings do not); exact where a key of the run shares a query's high half."""
    at = np.searchsorted(run.high, query_high)
    shared = np.zeros(len(query), bool)
    inside = at < len(run)
    shared[inside] = run.high[at[inside]] == query_high[inside]
    if shared.any():  # an id seen before, or (once in 2**64) two with the same first 8 bytes
        at[shared] = np.searchsorted(run.keys, query[shared])
    return at


def bloom_probes(keys: np.ndarray, bits: int) -> np.ndarray:
    """PROBES bit positions per key, by double hashing its two 64-bit halves (already uniform)."""
    halves = np.ascontiguousarray(keys).view(np.uint64).reshape(-1, 2)
    step = halves[:, 1:] | np.uint64(1)
    return (halves[:, :1] + step * np.arange(PROBES, dtype=np.uint64)) & np.uint64(bits - 1)
