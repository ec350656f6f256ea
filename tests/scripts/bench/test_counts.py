import pytest

from scripts.bench.counts import check, dag_run_problems, series_problems
from scripts.bench.results import Step

N = 1_000


def step(records: int, written: int = 0) -> Step:
    return Step(seconds=1.0, records=records, written=written, peak_rss_mb=1.0, started=0.0, ended=1.0)


def series(**changed: Step) -> dict[str, Step]:
    """A series of N orders of which 50 were dead-lettered, read as it should be, but for ``changed``."""
    steps = {
        "generate": step(N, N), "consume": step(N), "consume_produce": step(N), "process": step(N, 950),
        "analyze": step(950, 120), "sink": step(120),
    }
    return steps | changed


def test_a_series_that_read_every_record_has_no_problem():
    assert series_problems(N, series()) == []


def test_each_step_that_read_other_than_it_should_is_named_with_both_counts():
    steps = series(
        generate=step(999, 999), consume=step(1_001), consume_produce=step(0), process=step(998, 950),
    )
    assert series_problems(N, steps) == [
        "generate wrote 999 records, not 1,000",
        "consume read 1,001 records, not 1,000",
        "consume_produce read 0 records, not 1,000",
        "process read 998 records, not 1,000",
    ]


def test_analyze_must_read_what_process_wrote_and_the_sink_what_analyze_wrote():
    assert series_problems(N, series(analyze=step(N, 120))) == ["analyze read 1,000 records, not 950"]
    assert series_problems(N, series(sink=step(119))) == ["sink read 119 records, not 120"]
    # The sink against what analyze wrote, whatever analyze read.
    assert series_problems(N, series(analyze=step(949, 130), sink=step(130))) == [
        "analyze read 949 records, not 950",
    ]


def test_steps_left_out_are_not_checked_and_without_process_analyze_is_not():
    assert series_problems(N, {"process": step(N, 950), "analyze": step(950, 3)}) == []
    assert series_problems(N, {"analyze": step(5), "consume": step(N)}) == []


def test_a_dag_run_must_have_generated_and_processed_n_orders():
    assert dag_run_problems(N, {"generated": N, "processed": N, "valid": 950}) == []
    assert dag_run_problems(N, {"generated": N, "processed": 990}) == ["processed 990 orders, not 1,000"]
    assert dag_run_problems(N, {}) == ["generated 0 orders, not 1,000", "processed 0 orders, not 1,000"]


def test_a_problem_stops_the_bench_with_a_message_and_none_lets_it_go_on():
    check("the series", [])
    with pytest.raises(SystemExit) as stopped:
        check("the warm-up", ["copied 9 records, not 10"])
    assert stopped.value.code == "bench: the warm-up: copied 9 records, not 10"
    with pytest.raises(SystemExit) as stopped:
        check("the series", ["process read 998 records, not 1,000", "sink read 1 records, not 2"])
    assert stopped.value.code == (
        "bench: the series: process read 998 records, not 1,000; sink read 1 records, not 2"
    )
