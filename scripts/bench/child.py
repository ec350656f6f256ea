"""One measured step in a fresh process (``python -m scripts.bench --child <what>``), so that its
peak RSS is its own: a stage, a client baseline, reconcile or the Order metrics page's read; or
a broker's warm-up (timed, but not reported). It prints its Step as a JSON line, the last of its
output."""

from __future__ import annotations

import cProfile
import os
import pstats
import resource
import time
from datetime import datetime, timezone

import msgspec

from scripts.bench.baselines import baseline
from scripts.bench.results import Step

START = datetime(2026, 1, 5, 9, tzinfo=timezone.utc)  # the generated orders' hour
END = datetime(2026, 1, 5, 10, tzinfo=timezone.utc)


def child(
    what: str, n: int, store_url: str, profile: str | None, share: str | None = None,
    invalid_ratio: float | None = None,
) -> None:
    """Run one measured step in this (fresh) process (``share`` "i/n": as worker i of n; under
    cProfile, its top functions to ``profile``; generate: ``invalid_ratio`` of the orders invalid,
    the DAG's default if None); print its Step."""
    from include.pipeline.kafka_io.client import Kafka
    from include.pipeline.run.params import CATALOGUE
    from include.pipeline.stages.calls import CALLS
    from include.pipeline.store.metrics_store import MetricsStore

    kafka = Kafka.from_env()
    profiler = cProfile.Profile() if profile else None
    if profiler:
        profiler.enable()
    index, workers = map(int, (share or "0/1").split("/"))
    started, started_at, cpu_started = time.perf_counter(), time.time(), time.process_time()
    written = 0
    if call := CALLS.get(what):
        # The DAG's defaults but for n orders, the same ones each time.
        params = {name: param.default for name, param in CATALOGUE.items()} | {"orders": n, "seed": 1}
        if invalid_ratio is not None:
            params["invalid_ratio"] = invalid_ratio
        kwargs = call.kwargs(params)
        if what == "generate":
            kwargs.update(start=START, end=END)
        elif what == "sink":  # only the sink's is a URL ("-" for the others)
            kwargs.update(store=MetricsStore(store_url, "bench"))
        if call.mapped:
            kwargs.update(workers=workers, worker=index)
        result = call.run(kafka, **kwargs)
        if what == "generate":
            records = written = result.generated
        else:
            records = result.read
            written = result.written.get(call.stage.outputs[0], 0) if call.stage.outputs else 0
    elif what == "warm-up":
        from scripts.bench.warm_up import warm_up

        warm_up(os.environ, n)
        records = n
    elif what == "reconcile":
        records = reconcile_at(MetricsStore(store_url, "bench"))
    elif what == "page":
        from include.pipeline.view import dashboard

        records = len(dashboard.metrics(MetricsStore(store_url, "bench", read_only=True)).series[0].windows)
    else:
        records = baseline(kafka, what)
    seconds, cpu_seconds = time.perf_counter() - started, time.process_time() - cpu_started
    if profiler:
        profiler.disable()
        with open(profile, "w") as file:
            pstats.Stats(profiler, stream=file).sort_stats("tottime").print_stats(25)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    step = Step(seconds=seconds, records=records, written=written, peak_rss_mb=round(peak_mb, 1),
                started=started_at, ended=started_at + seconds, cpu_seconds=cpu_seconds)
    print(msgspec.json.encode(step).decode())


def reconcile_at(store) -> int:
    """What the reconcile task does after a sink: the sink's totals against the analyze ledger
    (here made equal to them; the stages' other counts are zero). Returns the rows covered."""
    from include.pipeline.domain.windows import Ledger
    from include.pipeline.run import reconcile
    from include.pipeline.run.results import AnalyzeResult, ProcessResult, RunResults, SinkResult

    totals = store.totals()
    ledger = Ledger(totals.order_count, totals.counted_revenue)
    results = RunResults(
        process=ProcessResult(), analyze=AnalyzeResult(ledger_before=ledger, ledger_after=ledger),
        sink=SinkResult(
            metrics=totals.rows, order_count=totals.order_count, total_revenue=totals.total_revenue,
            counted_revenue=totals.counted_revenue,
            store=store.name,
        ),
    )
    reconcile.reconcile("bench", results)
    return totals.rows
