import json
import math

import pytest

from scripts.bench.model import (
    BROKER_CORES,
    PARTITIONS,
    SHARED_CORES,
    WORKER_CORES,
    WORKERS,
    Cluster,
    Costs,
    MissingFigures,
    costs_at_one_worker,
    main,
    predict,
    versus_measured,
)

# s 5 us, b 2 us of CPU a record, one worker alone 150,000 records a second.
COSTS = Costs(stage_cpu_us=5.0, broker_cpu_us=2.0, one_worker_per_s=150_000.0)


def shared(workers: int, partitions: int = 6) -> Cluster:
    """This machine's shape: the broker and the workers on 2 cores."""
    return Cluster(workers=workers, partitions=partitions, shared_cores=2)


def hosts(
    workers: int, partitions: int = 6, brokers: int = 3, broker_cores: float = 8, worker_cores: float = 2,
) -> Cluster:
    """Hosts of their own: by default 3 brokers of 8 cores, 2 cores a worker."""
    return Cluster(
        workers=workers, partitions=partitions, brokers=brokers, broker_cores=broker_cores,
        worker_cores=worker_cores,
    )


def test_one_worker_on_the_shared_cores_runs_at_its_own_rate():
    prediction = predict(COSTS, shared(1))
    assert (prediction.records_per_s, prediction.bound) == (150_000, WORKERS)
    # 2 cores at 5 + 2 us a record: 2,000,000 / 7.
    assert prediction.bounds[SHARED_CORES] == pytest.approx(285_714.2857)


def test_two_workers_on_the_shared_cores_are_held_by_the_cores_not_by_their_rate():
    prediction = predict(COSTS, shared(2))
    assert prediction.bounds[WORKERS] == 300_000
    assert (prediction.records_per_s, prediction.bound) == (pytest.approx(285_714.2857), SHARED_CORES)


def test_a_third_worker_on_the_shared_cores_adds_nothing():
    prediction = predict(COSTS, shared(3))
    assert prediction.bounds == {WORKERS: 450_000, SHARED_CORES: pytest.approx(285_714.2857)}
    assert prediction.bound == SHARED_CORES


def test_the_busiest_worker_sets_the_pace_when_the_partitions_do_not_split_evenly():
    # 4 workers over 6 partitions: two hold 2, so they do the work of 6 / 2 = 3 workers.
    prediction = predict(COSTS, hosts(4))
    assert (prediction.records_per_s, prediction.bound) == (450_000, WORKERS)
    # 3 workers' worth at 2 cores / 5 us each; 3 brokers each leading 2 partitions, 8 cores / 2 us each.
    assert prediction.bounds[WORKER_CORES] == pytest.approx(1_200_000)
    assert prediction.bounds[BROKER_CORES] == pytest.approx(12_000_000)


def test_workers_past_the_partitions_add_nothing_and_the_partitions_are_named():
    prediction = predict(COSTS, hosts(8))
    assert (prediction.records_per_s, prediction.bound) == (900_000, PARTITIONS)  # 6 x 150,000


def test_eight_workers_gain_nothing_from_12_partitions_over_6_but_do_from_16():
    assert predict(COSTS, hosts(8, partitions=12)).records_per_s == 900_000  # 4 workers hold 2: 12 / 2
    sixteen = predict(COSTS, hosts(8, partitions=16))  # 2 each: 8 workers' worth
    assert (sixteen.records_per_s, sixteen.bound) == (1_200_000, WORKERS)


def test_a_worker_slower_on_its_own_cores_than_alone_is_held_by_its_cores():
    costly = Costs(stage_cpu_us=20.0, broker_cpu_us=2.0, one_worker_per_s=150_000.0)
    prediction = predict(costly, hosts(3, worker_cores=1))
    # 1 core at 20 us a record is 50,000 a second a worker, 3 of them.
    assert (prediction.records_per_s, prediction.bound) == (pytest.approx(150_000), WORKER_CORES)
    assert prediction.bounds[WORKERS] == 450_000


def test_the_brokers_cores_hold_many_workers_back():
    heavy = Costs(stage_cpu_us=5.0, broker_cpu_us=10.0, one_worker_per_s=150_000.0)
    prediction = predict(heavy, hosts(6, brokers=1, broker_cores=2))
    # One broker, 2 cores at 10 us a record: 200,000 a second, against 6 x 150,000 for the workers.
    assert (prediction.records_per_s, prediction.bound) == (pytest.approx(200_000), BROKER_CORES)


def test_a_fourth_broker_over_6_partitions_does_no_more_than_three():
    # 4 brokers: two lead 2 partitions each, so they do the work of 3 brokers: 3 x 4 cores / 2 us.
    for brokers in (4, 3):
        prediction = predict(COSTS, hosts(6, brokers=brokers, broker_cores=4))
        assert prediction.bounds[BROKER_CORES] == pytest.approx(6_000_000)


def test_the_worked_example_of_the_docs():
    # docs/performance.md, Scaling past this machine: analyze, 3 brokers of 4 cores, 8 workers of 2.
    analyze = Costs(stage_cpu_us=5.25, broker_cpu_us=1.68, one_worker_per_s=192_392.0)
    six, twelve = (predict(analyze, hosts(8, partitions, broker_cores=4)) for partitions in (6, 12))
    assert (six.records_per_s, six.bound) == (1_154_352, PARTITIONS)  # 6 x 192,392
    assert (twelve.records_per_s, twelve.bound) == (1_154_352, WORKERS)
    assert six.bounds[WORKER_CORES] == pytest.approx(2_285_714.29)  # 6 x 2 cores / 5.25 us
    assert six.bounds[BROKER_CORES] == pytest.approx(7_142_857.14)  # 3 x 4 cores / 1.68 us
    # With RF 3 estimated as 3 times the broker's CPU, 5.04 us: 3 x 4 cores / 5.04 us.
    rf3 = Costs(stage_cpu_us=5.25, broker_cpu_us=5.04, one_worker_per_s=192_392.0)
    assert predict(rf3, hosts(8, 12, broker_cores=4)).bounds[BROKER_CORES] == pytest.approx(2_380_952.38)


def test_a_cost_measured_as_nothing_is_no_bound_rather_than_a_division_by_zero():
    free = Costs(stage_cpu_us=5.0, broker_cpu_us=0.0, one_worker_per_s=150_000.0)
    assert predict(free, hosts(1)).bounds[BROKER_CORES] == math.inf


@pytest.mark.parametrize("shape", [
    pytest.param({"workers": 2}, id="no-cores"),
    pytest.param({"workers": 2, "broker_cores": 4}, id="no-worker-cores"),
    pytest.param({"workers": 2, "shared_cores": 2, "worker_cores": 2}, id="both-shapes"),
    pytest.param({"workers": 2, "shared_cores": 0}, id="no-shared-core"),
    pytest.param({"workers": 0, "shared_cores": 2}, id="no-worker"),
    pytest.param({"workers": 2, "partitions": 0, "shared_cores": 2}, id="no-partition"),
])
def test_a_shape_that_is_not_one_of_the_two_is_refused(shape):
    with pytest.raises(ValueError):
        Cluster(**shape)


def test_negative_costs_and_no_rate_are_refused():
    with pytest.raises(ValueError):
        Costs(stage_cpu_us=-1.0, broker_cpu_us=2.0, one_worker_per_s=150_000.0)
    with pytest.raises(ValueError):
        Costs(stage_cpu_us=5.0, broker_cpu_us=2.0, one_worker_per_s=0.0)


def figure(median: float) -> dict:
    return {"median": median, "min": median, "max": median}


def scaling_part(cpu: bool = True) -> dict:
    """bench.json's scaling part: process at s 5, b 2, 150,000 a second alone; 260,000 and 280,000
    at 2 and 3 workers; analyze at s 10, b 4 (so half of process' shared-cores bound)."""
    def row(rate: float, s: float, b: float) -> dict:
        extra = {"cpu_us_per_record": figure(s), "broker_cpu_us_per_record": figure(b)} if cpu else {}
        return {"records_per_s": figure(rate), "seconds": figure(1.0), **extra}

    return {
        "partitions": 6, "cores": 2,
        "process": {"1": row(150_000, 5, 2), "2": row(260_000, 6, 2.5), "3": row(280_000, 7, 3)},
        "analyze": {"1": row(100_000, 10, 4), "2": row(140_000, 11, 4), "3": row(150_000, 12, 5)},
    }


def test_the_costs_are_the_medians_at_one_worker():
    assert costs_at_one_worker(scaling_part(), "process") == COSTS


def test_a_bench_without_cpu_figures_names_what_it_lacks():
    with pytest.raises(MissingFigures, match="no cpu_us_per_record for process at 1 worker"):
        costs_at_one_worker(scaling_part(cpu=False), "process")


def test_model_against_measured_on_the_bench_machine():
    lines = versus_measured(scaling_part()).splitlines()
    rows = [line.split() for line in lines[2:8]]
    # process: 150,000 alone; then the 2 cores at 7 us: 285,714, measured 260,000 and 280,000.
    # analyze: 100,000 alone (2 cores at 14 us: 142,857), then 142,857 against 140,000 and 150,000.
    assert [(r[0], r[1], r[2], r[3], r[-1]) for r in rows] == [
        ("1", "process", "150,000", "workers", "1.00"),
        ("2", "process", "285,714", "shared", "0.91"),
        ("3", "process", "285,714", "shared", "0.98"),
        ("1", "analyze", "100,000", "workers", "1.00"),
        ("2", "analyze", "142,857", "shared", "0.98"),
        ("3", "analyze", "142,857", "shared", "1.05"),
    ]
    assert "2 shared cores, 6 partitions" in lines[0]


def test_the_command_line_predicts_each_stage_on_the_cluster_asked(tmp_path, capsys):
    bench = tmp_path / "bench.json"
    bench.write_text(json.dumps({"n": 1_000, "scaling": scaling_part()}))
    cluster = ["--workers", "8", "--brokers", "3", "--broker-cores", "4", "--worker-cores", "2"]
    assert main(["--bench", str(bench), *cluster, "--partitions", "12"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("8 worker(s) a stage over 12 partitions, the busiest holding 2: the work of 6")
    # process: 6 x 150,000; analyze: 6 x 100,000 (its worker cores: 6 x 2 cores / 10 us = 1,200,000).
    assert lines[3].split()[:6] == ["process", "5.00", "2.00", "150,000", "900,000", "workers"]
    assert lines[4].split()[:6] == ["analyze", "10.00", "4.00", "100,000", "600,000", "workers"]
    assert "worker cores 1,200,000, broker cores 3,000,000" in lines[4]  # 3 brokers x 4 cores / 4 us


def test_the_command_line_defaults_to_the_bench_machines_cores_and_partitions(tmp_path, capsys):
    bench = tmp_path / "bench.json"
    bench.write_text(json.dumps({"scaling": scaling_part() | {"cores": 3, "partitions": 4}}))
    assert main(["--bench", str(bench), "--workers", "3"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[:2] == [
        "3 worker(s) a stage over 4 partitions, the busiest holding 2: the work of 2 at one worker's pace",
        "the brokers and the workers on 3 shared cores",
    ]
    # process: 2 x 150,000, under 3 cores / 7 us (428,571).
    assert lines[3].split()[4:] == ["300,000", "workers", "workers", "300,000,", "shared", "cores", "428,571"]


@pytest.mark.parametrize("content, message", [
    pytest.param(None, "cannot read", id="no-file"),
    pytest.param("not json", "is not JSON", id="not-json"),
    pytest.param(json.dumps({"n": 1_000}), "no scaling part", id="no-scaling"),
    pytest.param(
        json.dumps({"scaling": scaling_part(cpu=False)}), "no cpu_us_per_record for process at 1 worker",
        id="no-cpu-figures",
    ),
])
def test_the_command_line_says_what_is_wrong_without_a_traceback(tmp_path, content, message):
    bench = tmp_path / "bench.json"
    if content is not None:
        bench.write_text(content)
    with pytest.raises(SystemExit) as stopped:
        main(["--bench", str(bench), "--workers", "8"])
    code = stopped.value.code
    assert isinstance(code, str) and code.startswith("model: ") and message in code and str(bench) in code


def test_the_command_line_refuses_a_shape_of_neither_kind(tmp_path):
    bench = tmp_path / "bench.json"
    bench.write_text(json.dumps({"scaling": scaling_part()}))
    with pytest.raises(SystemExit, match="give shared cores, or broker cores and worker cores"):
        main(["--bench", str(bench), "--workers", "8", "--broker-cores", "4"])
