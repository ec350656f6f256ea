"""The dedup horizon: the order ids counted so far, kept compact so that memory stays small.

Each id is kept as a 16-byte BLAKE2b fingerprint with its event time, 24 bytes in numpy arrays
instead of ~150 in a dict of strings. Two different ids share a fingerprint with probability
2**-128 per pair (about 1e-21 for a billion ids): far below any hardware error rate.

Fingerprints sit in sorted runs, merged like a binary counter so there are O(log n) of them;
a batch of orders is looked up in all runs at once. The changelog keeps one segment record per
batch of newly counted ids (keyed by a hash of its content) instead of a record per id.
"""

from __future__ import annotations

from hashlib import blake2b
import numpy as np

FINGERPRINT = np.dtype("S16")
EVENT_US = np.dtype("<i8")
SEGMENT_KEY = b"orders:"
SEGMENT_IDS = 20_000  # ids per changelog record: 480 KB, under the broker's 1 MB default


def fingerprint(order_id: str) -> bytes:
    return blake2b(order_id.encode("utf-8", "surrogatepass"), digest_size=16).digest()


class Run:
    """Fingerprints in ascending order, with the event time (epoch us) of each."""

    __slots__ = ("keys", "event_us")

    def __init__(self, keys: np.ndarray, event_us: np.ndarray) -> None:
        self.keys, self.event_us = keys, event_us

    @classmethod
    def of(cls, keys: np.ndarray, event_us: np.ndarray) -> Run:
        order = np.argsort(keys, kind="stable")
        return cls(keys[order], event_us[order])

    def __len__(self) -> int:
        return len(self.keys)

    def contains(self, query: np.ndarray) -> np.ndarray:
        at = np.searchsorted(self.keys, query)
        at[at == len(self.keys)] = 0
        return self.keys[at] == query

    def merge(self, other: Run) -> Run:
        # Linear: each of other's keys goes where searchsorted says, self's fill the rest.
        slots = np.searchsorted(self.keys, other.keys) + np.arange(len(other))
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


class SeenOrders:
    """Fingerprints of counted order ids, with their changelog segments."""

    def __init__(self) -> None:
        self.runs: list[Run] = []
        self.segments: dict[bytes, int] = {}  # changelog key -> newest event time in the segment
        self._restored: dict[bytes, bytes] = {}

    def __len__(self) -> int:
        return sum(len(run) for run in self.runs)

    def contains(self, fingerprints: list[bytes]) -> np.ndarray:
        """Which of ``fingerprints`` were counted before (a bool per fingerprint)."""
        query = np.array(fingerprints, dtype=FINGERPRINT)
        found = np.zeros(len(query), dtype=bool)
        for run in self.runs:
            found |= run.contains(query)
        return found

    def add(self, fingerprints: list[bytes], event_us: list[int]) -> list[tuple[bytes, bytes]]:
        """Remember newly counted ids; returns the changelog records that save them."""
        if not fingerprints:
            return []
        keys = np.array(fingerprints, dtype=FINGERPRINT)
        times = np.array(event_us, dtype=EVENT_US)
        self._push(Run.of(keys, times))
        records = []
        for start in range(0, len(keys), SEGMENT_IDS):
            value = keys[start:start + SEGMENT_IDS].tobytes() + times[start:start + SEGMENT_IDS].tobytes()
            key = SEGMENT_KEY + blake2b(value, digest_size=16).hexdigest().encode()
            self.segments[key] = int(times[start:start + SEGMENT_IDS].max())
            records.append((key, value))
        return records

    def forget_before(self, cutoff_us: int) -> list[bytes]:
        """Forget the ids whose event time is before ``cutoff_us``; returns the keys of the
        changelog segments that hold nothing else any more (to tombstone)."""
        self.runs = [kept for run in self.runs if len(kept := run.since(cutoff_us))]
        gone = [key for key, newest in self.segments.items() if newest < cutoff_us]
        for key in gone:
            del self.segments[key]
        return gone

    def restore(self, key: bytes, value: bytes | None) -> None:
        """Apply one changelog segment record (None: a tombstone); ``restored()`` finishes."""
        if value is None:
            self._restored.pop(key, None)
            self.segments.pop(key, None)
        else:
            self._restored[key] = value

    def restored(self) -> None:
        parts = {key: _decode(value) for key, value in self._restored.items()}
        self._restored = {}
        for key, (_, event_us) in parts.items():
            self.segments[key] = int(event_us.max())
        if parts:
            keys, event_us = zip(*parts.values())
            self.runs = [Run.of(np.concatenate(keys), np.concatenate(event_us))]

    def _push(self, run: Run) -> None:
        self.runs.append(run)
        while len(self.runs) > 1 and len(self.runs[-2]) < 2 * len(self.runs[-1]):
            newer = self.runs.pop()
            self.runs.append(self.runs.pop().merge(newer))


def _decode(value: bytes) -> tuple[np.ndarray, np.ndarray]:
    n = len(value) // (FINGERPRINT.itemsize + EVENT_US.itemsize)
    split = n * FINGERPRINT.itemsize
    return np.frombuffer(value, FINGERPRINT, n), np.frombuffer(value, EVENT_US, n, offset=split)
