from scripts.bench.results import Figure, Step
from scripts.bench.scaling import scaling_report


def step(records: int, seconds: float, cpu: float = 0.0, broker: float = 0.0, rss: float = 100.0) -> Step:
    return Step(
        seconds=seconds, records=records, written=records, peak_rss_mb=rss, started=0.0, ended=seconds,
        cpu_seconds=cpu, broker_cpu_seconds=broker,
    )


def run(process: Step, analyze: Step) -> dict[str, Step]:
    return {"consume": step(1_000, 0.5), "process": process, "analyze": analyze}


def test_the_cpu_a_record_is_the_workers_and_the_brokers_over_the_records_read_each_repetition():
    analyze = step(900, 1.0, cpu=0.009, broker=0.0018)  # 10 us and 2 us a record
    runs = {
        1: [
            run(step(1_000, 10.0, cpu=0.020, broker=0.008), analyze),  # 20 us and 8 us a record
            run(step(1_000, 8.0, cpu=0.024, broker=0.010), analyze),  # 24 and 10
            run(step(1_000, 9.0, cpu=0.022, broker=0.012), analyze),  # 22 and 12
        ],
        2: [run(step(1_000, 5.0, cpu=0.030, broker=0.009), analyze)] * 3,  # 30 and 9
    }
    report = scaling_report(runs, [run(step(100, 1.0, rss=90.0), analyze)] * 3, partitions=6, cores=2)
    assert (report.partitions, report.cores) == (6, 2)
    one = report.process[1]
    assert one.records_per_s == Figure(median=111, min=100, max=125)
    assert one.cpu_us_per_record == Figure(median=22.0, min=20.0, max=24.0)
    assert one.broker_cpu_us_per_record == Figure(median=10.0, min=8.0, max=12.0)
    assert report.process[2].cpu_us_per_record == Figure(median=30.0, min=30.0, max=30.0)
    assert report.process[2].peak_rss_mb_per_worker_small == Figure(median=90.0, min=90.0, max=90.0)
    assert report.analyze[1].cpu_us_per_record == Figure(median=10.0, min=10.0, max=10.0)
    assert report.analyze[1].broker_cpu_us_per_record == Figure(median=2.0, min=2.0, max=2.0)
