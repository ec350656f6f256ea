from scripts.bench.render import render_scaling
from scripts.bench.results import Figure, Scaling, ScalingRow


def figure(median: float) -> Figure:
    return Figure(median=median, min=median, max=median)


def row(rate: float, cpu: float, broker: float) -> ScalingRow:
    return ScalingRow(
        records_per_s=figure(rate), seconds=figure(1.0), peak_rss_mb_per_worker=figure(110.0),
        peak_rss_mb_per_worker_small=figure(100.0), cpu_us_per_record=figure(cpu),
        broker_cpu_us_per_record=figure(broker),
    )


def test_the_scaling_table_has_each_rows_cpu_and_the_model_against_the_same_runs_rates():
    scaling = Scaling(
        partitions=6, cores=2,
        process={1: row(150_000, 5.0, 2.0), 2: row(260_000, 5.5, 2.1), 3: row(280_000, 6.0, 2.2)},
        analyze={1: row(100_000, 10.0, 4.0), 2: row(140_000, 11.0, 4.0), 3: row(150_000, 12.0, 4.0)},
        consume_baseline_records_per_s={w: figure(500_000) for w in (1, 2, 3)},
    )
    lines = render_scaling(scaling).splitlines()
    assert lines[0].split()[-4:] == ["CPU", "us", "broker", "us"]
    assert lines[2].split()[:2] == ["2", "process"] and lines[2].split()[-2:] == ["5.50", "2.10"]
    model = lines[lines.index("") + 1:]
    assert model[0].startswith("model vs measured: the broker and the workers on 2 shared cores")
    # The model from one worker's medians (s 5, b 2): 2 cores / 7 us at 2 workers, against 260,000.
    assert model[3].split() == ["2", "process", "285,714", "shared", "cores", "260,000", "0.91"]
