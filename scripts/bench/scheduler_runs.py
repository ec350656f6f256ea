"""The whole kafka_pipeline run as a user waits for it: `scripts/airflow standalone` (scheduler,
dag-processor, triggerer, API server, LocalExecutor) on a throwaway broker, runs triggered through
the REST API one after another, each from its start to its end as the API reports them and from
the POST to its success, with where its time went per task (``airflow_time``).

  python -m scripts.bench.scheduler_runs --orders 0 1000000 --workers 2 --repeat 3
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

from scripts.bench.airflow_time import RunTime, render, run_time
from scripts.kafka.local import throwaway_broker
from tests.harness.live_airflow import FINISHED, live_airflow

DAG_ID = "kafka_pipeline"


def timed_run(airflow, orders: int, workers: int, hour: datetime) -> tuple[float, RunTime]:
    """One run of ``orders`` with ``workers`` for the hour before ``hour``: the seconds from its
    POST to its success, and its phases."""
    conf = {"orders": orders, "workers": workers, "seed": 1}
    posted = time.monotonic()
    run_id = airflow.trigger(DAG_ID, conf, logical_date=(hour - timedelta(hours=1)).isoformat())
    while (run := airflow.get(f"/dags/{DAG_ID}/dagRuns/{run_id}"))["state"] not in FINISHED:
        time.sleep(0.1)
    waited = time.monotonic() - posted
    if run["state"] != "success":
        raise SystemExit(f"bench: run {run_id} ended {run['state']}: {airflow.tasks(DAG_ID, run_id)}")
    return waited, run_time(airflow.home, DAG_ID, run_id)


def main() -> int:
    """Time the runs of each --orders, --repeat times, and print their medians and the median run."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--orders", type=int, nargs="+", default=[0, 1_000_000])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="kafka-bench-scheduler-") as tmp:
        work = Path(tmp)
        env = {
            key: value for key, value in os.environ.items()
            if not key.startswith(("AIRFLOW__API", "AIRFLOW__LOGGING", "AIRFLOW_CONN_", "AIRFLOW__CELERY"))
        }
        env["PIPELINE_OUTPUT_DIR"] = str(work / "output")
        (work / "airflow").mkdir()
        with throwaway_broker(work / "kafka", env) as kafka_env, \
                live_airflow(work / "airflow", kafka_env) as airflow:
            airflow.wait_until_ready({DAG_ID})
            airflow.set_paused(DAG_ID, False)  # its scheduled run of the latest hour runs first, untimed
            airflow.wait_until_idle(DAG_ID, timeout=600)
            hour = datetime.now(timezone.utc).replace(minute=0, second=0, microsecond=0) - timedelta(days=30)
            # Untimed: the API server's first task start, the broker's JIT and the topics.
            timed_run(airflow, max(args.orders), args.workers, hour)
            for orders in args.orders:
                runs = []
                for _ in range(args.repeat):
                    hour += timedelta(hours=1)
                    runs.append(timed_run(airflow, orders, args.workers, hour))
                waits = [waited for waited, _ in runs]
                median = sorted(runs, key=lambda r: r[1].seconds)[len(runs) // 2][1]
                print(f"\n{orders:,} orders, {args.workers} worker(s), {args.repeat} runs:")
                print(f"  POST to success: median {statistics.median(waits):.2f}s "
                      f"({min(waits):.2f}-{max(waits):.2f})")
                seconds = [r.seconds for _, r in runs]
                airflow_share = [r.airflow_seconds() for _, r in runs]
                print(f"  start to end: median {statistics.median(seconds):.2f}s ({min(seconds):.2f}-"
                      f"{max(seconds):.2f}); Airflow's share {statistics.median(airflow_share):.2f}s "
                      f"({min(airflow_share):.2f}-{max(airflow_share):.2f})")
                print("  the median run:\n" + render(median))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
