"""The dedup set's runs on disk (``domain.dedup.SeenOrders``'s spill): each in two files of a
temporary directory, with its Bloom filter and block fences in memory."""

from __future__ import annotations

import itertools
import tempfile
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

from include.pipeline.domain.dedup import Run, bloom_probes
from include.pipeline.domain.state_codec import EVENT_US, FINGERPRINT

BLOCK = 256  # ids per block of a file: one 4 KB read
MERGE_CHUNK = 1 << 14  # ids read at a time when files merge
BLOOM_CHUNK = 1 << 13  # ids hashed into a filter at a time
BLOOM_BITS = 10  # per id; with 7 probes, about 1% of absent ids cost a block read


class SpillFiles:
    """Writes runs to files of a temporary directory, made when the first is written."""

    def __init__(self) -> None:
        self._directory: tempfile.TemporaryDirectory | None = None
        self._files = itertools.count()

    def __call__(self, chunks: Iterable[Run], capacity: int) -> SpilledRun:
        """A run of ``chunks`` (ascending), at most ``capacity`` ids, written to a new pair of files."""
        if self._directory is None:
            self._directory = tempfile.TemporaryDirectory(prefix="kafka-pipeline-dedup-")
        return SpilledRun.write(Path(self._directory.name) / f"run-{next(self._files)}", chunks, capacity)


class SpilledRun:
    """A run in two files (keys, event times); memory keeps its Bloom filter, the first key of
    each block and its newest event time."""

    def __init__(self, path: Path, capacity: int) -> None:
        self.keys_path, self.times_path = path.with_suffix(".keys"), path.with_suffix(".times")
        self.size, self.newest = 0, -(2**63)
        self.bits = 1 << max(int(capacity * BLOOM_BITS - 1).bit_length(), 6)
        self.bloom = np.zeros(self.bits // 8, dtype=np.uint8)
        self.fences = np.empty(0, dtype=FINGERPRINT)

    @classmethod
    def write(cls, path: Path, chunks: Iterable[Run], capacity: int) -> SpilledRun:
        """A run of ``chunks`` (ascending, also from one chunk to the next), at most capacity ids."""
        run = cls(path, capacity)
        fences = []
        with open(run.keys_path, "wb") as keys, open(run.times_path, "wb") as times:
            for chunk in chunks:
                if not len(chunk):
                    continue
                chunk.keys.tofile(keys)
                chunk.event_us.tofile(times)
                # A copy, not a view: a view would keep the whole chunk in memory.
                fences.append(chunk.keys[-run.size % BLOCK::BLOCK].copy())
                for first in range(0, len(chunk), BLOOM_CHUNK):  # bounds the probes' memory
                    probes = bloom_probes(chunk.keys[first:first + BLOOM_CHUNK], run.bits).ravel()
                    np.bitwise_or.at(run.bloom, probes >> 3, np.left_shift(1, probes & 7, dtype=np.uint8))
                run.size += len(chunk)
                run.newest = max(run.newest, int(chunk.event_us.max()))
        run.fences = np.concatenate(fences) if fences else run.fences
        return run

    def chunks(self) -> Iterator[Run]:
        """The run read back in order, MERGE_CHUNK entries at a time."""
        with open(self.keys_path, "rb") as keys, open(self.times_path, "rb") as times:
            for first in range(0, self.size, MERGE_CHUNK):
                n = min(MERGE_CHUNK, self.size - first)
                yield Run(np.fromfile(keys, FINGERPRINT, n), np.fromfile(times, EVENT_US, n))

    def contains(self, query: np.ndarray, probes: np.ndarray, cutoff_us: int) -> np.ndarray:
        """Which of query (with its probes for this run's filter size) are in this run with an
        event time at or after cutoff_us."""
        maybe = np.flatnonzero(((self.bloom[probes >> 3] >> (probes & 7)) & 1).all(axis=1))
        found = np.zeros(len(query), dtype=bool)
        blocks = np.searchsorted(self.fences, query[maybe], side="right") - 1
        with open(self.keys_path, "rb") as keys, open(self.times_path, "rb") as times:
            for block in np.unique(blocks[blocks >= 0]).tolist():
                first, n = block * BLOCK, min(BLOCK, self.size - block * BLOCK)
                keys.seek(first * FINGERPRINT.itemsize)
                times.seek(first * EVENT_US.itemsize)
                run = Run(np.fromfile(keys, FINGERPRINT, n), np.fromfile(times, EVENT_US, n))
                wanted = maybe[blocks == block]
                at = np.searchsorted(run.keys, query[wanted])
                at[at == n] = 0
                found[wanted] = (run.keys[at] == query[wanted]) & (run.event_us[at] >= cutoff_us)
        return found

    def delete(self) -> None:
        """Remove its files."""
        self.keys_path.unlink()
        self.times_path.unlink()
