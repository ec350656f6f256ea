import random

import numpy as np

from include.pipeline.domain import dedup, state_codec
from include.pipeline.domain.dedup import SeenOrders, fingerprint, fingerprints, sort_order
from include.pipeline.domain.state_codec import FINGERPRINT
from include.pipeline.store import spill


def ids(start, stop):
    return [fingerprint(f"order-{i}") for i in range(start, stop)]


def test_batches_merge_into_few_sorted_runs_and_every_id_is_found():
    seen = SeenOrders()
    for start in range(0, 64_000, 1000):
        assert not seen.contains(ids(start, start + 1000)).any()
        seen.add(ids(start, start + 1000), list(range(start, start + 1000)))
    assert len(seen) == 64_000
    assert len(seen.runs) == 1  # 64 equal batches merge like a binary counter
    assert all((run.keys[:-1] < run.keys[1:]).all() for run in seen.runs)
    probe = ids(63_500, 64_500)
    assert seen.contains(probe).tolist() == [True] * 500 + [False] * 500


def test_fingerprints_with_zero_bytes_stay_distinct():
    zeros, one = b"\0" * 16, b"\0" * 15 + b"\1"
    seen = SeenOrders()
    seen.add([one], [1])
    assert seen.contains([zeros, one]).tolist() == [False, True]


def test_forget_before_drops_old_ids_and_names_the_segments_left_empty():
    seen = SeenOrders()
    [(old_key, _)] = seen.add(ids(0, 10), [100] * 10)
    [(mixed_key, _)] = seen.add(ids(10, 20), [100] * 5 + [300] * 5)
    assert seen.forget_before(200) == [old_key]
    assert seen.contains(ids(0, 20)).tolist() == [False] * 15 + [True] * 5
    assert list(seen.segments) == [mixed_key]


def test_the_changelog_restores_the_same_set_and_big_batches_split_into_segments(monkeypatch):
    monkeypatch.setattr(state_codec, "SEGMENT_IDS", 300)
    seen = SeenOrders()
    log = seen.add(ids(0, 1000), list(range(1000))) + seen.add(ids(1000, 1100), [5000] * 100)
    assert [len(value) for _, value in log] == [300 * 24] * 3 + [100 * 24] * 2
    assert seen.add(ids(1000, 1100), [5000] * 100)[0][0] == log[-1][0]  # the key is the content's hash
    log += [(key, None) for key in seen.forget_before(600)]
    restored = SeenOrders()
    for key, value in log:
        restored.note(state_codec.Segment(key, value))
    for key, value in log:
        if value is not None:
            restored.load(state_codec.Segment(key, value))
    everything = ids(0, 1100)
    assert restored.contains(everything).tolist() == [i >= 600 for i in range(1100)]
    assert restored.segments == seen.segments


def test_random_lookups_agree_with_a_python_set():
    random_lookups_agree_with_a_python_set(SeenOrders())


def random_lookups_agree_with_a_python_set(seen: SeenOrders):
    rng = random.Random(7)
    reference = set()
    for _ in range(40):
        batch = list({fingerprint(str(rng.randrange(20_000))) for _ in range(rng.randrange(1, 700))})
        assert seen.contains(batch).tolist() == [key in reference for key in batch]
        new = [key for key in batch if key not in reference]
        seen.add(new, [0] * len(new))
        reference.update(new)
    assert len(seen) == len(reference)


def spilling(monkeypatch) -> SeenOrders:
    """A set that spills to files past 1000 ids, in blocks of 16."""
    monkeypatch.setattr(dedup, "SPILL_IDS", 1000)
    monkeypatch.setattr(spill, "BLOCK", 16)
    return SeenOrders(spill.SpillFiles())


def test_spilled_ids_are_found_on_disk_and_only_filters_stay_in_memory(monkeypatch):
    seen = spilling(monkeypatch)
    for start in range(0, 5000, 500):
        seen.add(ids(start, start + 500), list(range(start, start + 500)))
    assert [run.size for run in seen.spilled] == [4000, 1000] and seen.runs == []  # files merge too
    assert len(seen) == 5000
    assert seen.contains(ids(4900, 5100)).tolist() == [True] * 100 + [False] * 100
    assert seen.contains(ids(0, 5000)).all()


def test_forgetting_drops_whole_files_hides_older_ids_in_the_rest_and_merges_leave_them_out(monkeypatch):
    seen = spilling(monkeypatch)
    seen.add(ids(0, 2000), [100] * 2000)  # a file, all old
    seen.add(ids(2000, 3000), [100] * 500 + [300] * 500)  # a second file, half old
    seen.add(ids(3000, 3100), [100] * 100)  # in memory
    old = seen.spilled[0].keys_path
    seen.forget_before(200)
    assert not old.exists() and [run.size for run in seen.spilled] == [1000]
    assert seen.contains(ids(0, 3100)).tolist() == [False] * 2500 + [True] * 500 + [False] * 100
    seen.add(ids(3100, 4100), [400] * 1000)  # spills, and the two files merge
    assert [run.size for run in seen.spilled] == [1500]
    assert seen.contains(ids(2000, 4100)).tolist() == (
        [False] * 500 + [True] * 500 + [False] * 100 + [True] * 1000
    )


def test_random_lookups_with_spills_agree_with_a_python_set(monkeypatch):
    random_lookups_agree_with_a_python_set(spilling(monkeypatch))


def test_fingerprints_sharing_their_first_8_bytes_are_still_told_apart():
    # Searches go by the first 8 bytes; two ids whose fingerprints share them need the rest.
    same_start = [bytes(8) + bytes([i]) * 8 for i in (3, 1, 2)]
    seen = SeenOrders()
    seen.add(same_start[:2], [1, 2])
    assert seen.contains(same_start).tolist() == [True, True, False]
    seen.add(same_start[2:], [3])  # merges into the run before
    assert seen.contains(same_start + [bytes(16)]).tolist() == [True, True, True, False]
    assert sort_order(np.array(same_start, dtype=FINGERPRINT)).tolist() == [1, 2, 0]


def test_fingerprints_of_many_ids_are_those_of_each():
    order_ids = ["a", "ü-1", "x" * 100]
    assert fingerprints([i.encode() for i in order_ids]).tolist() == [fingerprint(i) for i in order_ids]
