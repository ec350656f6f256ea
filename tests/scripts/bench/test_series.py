from scripts.bench.results import Figure, Step
from scripts.bench.series import stage_report


def step(records: int, seconds: float, written: int = 0, rss: float = 100.0) -> Step:
    # CPU: the step's own 5 us a record read, the broker's 2 us.
    return Step(
        seconds=seconds, records=records, written=written, peak_rss_mb=rss, started=0.0, ended=seconds,
        cpu_seconds=records * 5e-6, broker_cpu_seconds=records * 2e-6,
    )


def run(process_seconds: float, copy_seconds: float, sink_partials: int, rss: float) -> dict[str, Step]:
    """A repetition over 1,200 orders, 60 of them invalid."""
    return {
        "generate": step(1_200, 1.0, 1_200, rss), "consume": step(1_200, 2.0, rss=rss),
        "consume_produce": step(1_200, copy_seconds, rss=rss),
        "process": step(1_200, process_seconds, 1_140, rss),
        "analyze": step(1_140, 3.0, sink_partials, rss), "sink": step(sink_partials, 0.5, rss=rss),
    }


def test_each_figure_is_over_the_repetitions_and_each_ratio_against_its_own_repetitions_baseline():
    runs = [
        (run(12.0, 6.0, 40, 101.0), run(1.2, 0.6, 4, 90.0)),  # process 100/s, consume -> produce 200/s: 0.5
        (run(12.0 * 10 / 9, 12.0, 44, 103.0), run(1.2, 0.6, 4, 91.0)),  # 90/s, 100/s: 0.9
        (run(10.0, 8.0, 42, 102.0), run(1.2, 0.6, 4, 92.0)),  # 120/s, 150/s: 0.8
    ]
    series = stage_report(0.05, runs)
    assert series.invalid_ratio == 0.05
    process = series.stages["process"]
    assert process.records_per_s == Figure(median=100, min=90, max=120)
    # 0.8, not the ratio of the medians (100 / 150, 0.67).
    assert process.ratio == Figure(median=0.8, min=0.5, max=0.9)
    assert (process.records_read, process.records_written) == (Figure.of([1_200] * 3), Figure.of([1_140] * 3))
    assert process.seconds == Figure(median=12.0, min=10.0, max=13.33)
    assert process.peak_rss_mb == Figure(median=102.0, min=101.0, max=103.0)
    assert process.peak_rss_mb_small == Figure(median=91.0, min=90.0, max=92.0)
    assert series.baseline["consume_produce"].records_per_s == Figure(median=150, min=100, max=200)
    assert series.stages["analyze"].ratio == Figure(median=0.63, min=0.63, max=0.63)  # 380/s against 600/s
    assert series.stages["generate"].ratio is None and series.stages["sink"].ratio is None
    assert series.stages["sink"].records_read == Figure(median=42, min=40, max=44)
    assert series.stages["sink"].records_per_s == Figure(median=84, min=80, max=88)
    # process, analyze and sink: 12 + 3 + 0.5, 13.33 + 3 + 0.5, 10 + 3 + 0.5
    assert series.stage_seconds_process_analyze_sink == Figure(median=15.5, min=13.5, max=16.83)


def test_each_rows_cpu_is_a_record_read_the_steps_own_and_the_brokers():
    runs = [(run(12.0, 6.0, 40, 101.0), run(1.2, 0.6, 4, 90.0))] * 2
    slow = run(12.0, 6.0, 40, 101.0)
    slow["process"].cpu_seconds, slow["process"].broker_cpu_seconds = 1_200 * 8e-6, 1_200 * 3e-6
    series = stage_report(0.05, [*runs, (slow, runs[0][1])])
    assert series.stages["process"].cpu_us_per_record == Figure(median=5.0, min=5.0, max=8.0)
    assert series.stages["process"].broker_cpu_us_per_record == Figure(median=2.0, min=2.0, max=3.0)
    for row in (series.stages["sink"], series.baseline["consume"]):
        assert (row.cpu_us_per_record.median, row.broker_cpu_us_per_record.median) == (5.0, 2.0)
