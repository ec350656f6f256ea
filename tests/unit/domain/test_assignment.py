import pytest

from include.pipeline.domain.assignment import Assignment, TooManyWorkers, check


@pytest.mark.parametrize("count", range(1, 13))
def test_the_workers_own_every_partition_once_for_any_workers_and_partitions(count):
    for workers in range(1, count + 1):
        owned = [Assignment(workers, index).partitions(count) for index in range(workers)]
        assert sorted(p for share in owned for p in share) == list(range(count))
        assert max(map(len, owned)) - min(map(len, owned)) <= 1  # as even as it gets


def test_six_partitions_split_evenly_round_robin():
    assert [Assignment(2, i).partitions(6) for i in range(2)] == [[0, 2, 4], [1, 3, 5]]
    assert [Assignment(3, i).partitions(6) for i in range(3)] == [[0, 3], [1, 4], [2, 5]]
    assert Assignment().partitions(6) == [0, 1, 2, 3, 4, 5]


def test_the_transactional_id_is_the_stages_for_one_worker_and_the_instances_for_more():
    assert Assignment().transactional_id("kafka-pipeline-process") == "kafka-pipeline-process"
    assert Assignment(3, 1).transactional_id("kafka-pipeline-process") == "kafka-pipeline-process-1of3"


@pytest.mark.parametrize("count", [1, 2, 3, 6, 7])
def test_rivals_are_exactly_the_instances_of_other_splits_sharing_a_partition(count):
    everyone = {Assignment(w, i) for w in range(1, count + 1) for i in range(w)}
    for me in everyone:
        mine = set(me.partitions(count))
        expected = {a for a in everyone if a != me and mine & set(a.partitions(count))}
        assert set(me.rivals(count)) == expected
        # Its own split's other instances share nothing: they run together, never fenced.
        assert not [a for a in me.rivals(count) if a.workers == me.workers]


def test_more_workers_than_partitions_is_refused_with_what_to_do():
    with pytest.raises(TooManyWorkers) as refused:
        check(4, 3, "orders")
    assert str(refused.value) == (
        "workers=4 but orders has 3 partitions: a worker would have nothing to read; run with workers <= 3"
    )
    with pytest.raises(TooManyWorkers):
        Assignment(7, 0).partitions(6)
    with pytest.raises(ValueError, match="workers must be at least 1, got 0"):
        check(0, 3)
    with pytest.raises(ValueError, match=r"worker index must be in \[0, 2\), got 2"):
        Assignment(2, 2)
