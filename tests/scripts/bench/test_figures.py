import json
import statistics

import msgspec
import pytest

from scripts.bench.results import MIXES, Figure, Scaling, Step


def test_a_figure_is_the_middle_sample_and_the_smallest_and_largest():
    assert Figure.of([310.0, 290.0, 305.0]) == Figure(median=305, min=290, max=310)


def test_an_even_number_of_samples_has_the_mean_of_the_middle_two_as_median():
    assert Figure.of([4.0, 1.0, 3.0, 2.0], 1) == Figure(median=2.5, min=1.0, max=4.0)


def test_each_value_is_rounded_to_the_digits_asked_and_to_a_whole_number_without():
    figure = Figure.of([1.23456, 1.98765, 1.5], 2)
    assert (figure.median, figure.min, figure.max) == (1.5, 1.23, 1.99)
    whole = Figure.of([151_301.6, 121_219.2, 160_000.4])
    assert (whole.median, whole.min, whole.max) == (151_302, 121_219, 160_000)
    assert all(type(value) is int for value in (whole.median, whole.min, whole.max))


def test_one_sample_is_its_own_median_and_spread():
    assert Figure.of([7.0], 1) == Figure(median=7.0, min=7.0, max=7.0)


def test_no_sample_is_no_figure():
    with pytest.raises(statistics.StatisticsError):
        Figure.of([])


def test_bench_json_keeps_the_median_and_the_spread():
    assert msgspec.to_builtins(Figure.of([3.0, 1.0, 2.0])) == {"median": 2, "min": 1, "max": 3}


def test_a_rate_is_the_records_read_a_second_not_the_orders_asked_for():
    step = Step(seconds=4.0, records=950, written=900, peak_rss_mb=100.0, started=0.0, ended=4.0)
    assert step.rate == 237.5


def test_the_cpu_a_record_is_in_microseconds_over_the_records_read():
    step = Step(
        seconds=4.0, records=950, written=900, peak_rss_mb=100.0, started=0.0, ended=4.0,
        cpu_seconds=0.0019, broker_cpu_seconds=0.00095,
    )
    assert (step.cpu_us_per_record, step.broker_cpu_us_per_record) == (pytest.approx(2.0), pytest.approx(1.0))


def test_a_step_printed_before_the_cpu_was_measured_still_decodes():
    old = {"seconds": 4.0, "records": 950, "written": 900, "peak_rss_mb": 100.0, "started": 0.0, "ended": 4.0}
    step = msgspec.json.decode(json.dumps(old), type=Step)
    assert (step.cpu_seconds, step.broker_cpu_seconds) == (0.0, 0.0)


def test_a_bench_json_from_before_the_cpu_figures_still_decodes():
    row = {"records_per_s": {"median": 1, "min": 1, "max": 1}, "seconds": {"median": 1, "min": 1, "max": 1},
           "peak_rss_mb_per_worker": {"median": 1, "min": 1, "max": 1}}
    scaling = msgspec.json.decode(json.dumps({"process": {"1": row}, "analyze": {"1": row}}), type=Scaling)
    assert scaling.process[1].cpu_us_per_record is None and scaling.partitions is None


def test_the_mixes_are_the_dags_default_share_of_invalid_orders_and_none():
    assert MIXES == {"default": 0.05, "best_case": 0.0}
