"""The whole kafka_pipeline run of N orders with `airflow dags test --use-executor` (the
LocalExecutor, its task instances in parallel, and an API server for them), at 1 and 2 workers:
its wall time, and how much of it is Airflow rather than the stages."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from include.pipeline import settings
from scripts.bench.results import DagRun
from scripts.kafka.local import free_port, throwaway_broker

AIRFLOW = str(settings.PROJECT_ROOT / "scripts/airflow")
DAG_RUN_WORKERS = (1, 2)  # the whole DAG run: one worker, and the 2 of this 2-core machine


def dag_runs(env: dict, work: Path, n: int) -> dict[int, DagRun]:
    """The whole DAG run at 1 and 2 workers (``dag_run``), by workers."""
    return {workers: dag_run(env, work, n, workers) for workers in DAG_RUN_WORKERS}


def dag_run_seconds(runs: dict[int, DagRun]) -> dict[int, float]:
    """The scaling part's ``dag_run_seconds``: workers -> the run's seconds."""
    return {workers: run.dag_seconds for workers, run in runs.items()}


def dag_run(env: dict, work: Path, n: int, workers: int = 1) -> DagRun:
    """A whole kafka_pipeline run of ``n`` orders with ``workers`` (airflow dags test, its tasks on
    the LocalExecutor, so mapped instances run side by side as under a scheduler): its seconds,
    the stages' share of them, and Airflow's. Its whole output goes to
    output/bench-dag-run-<workers>.log."""
    # Its own Airflow and its own store: a store holds one cluster's metrics, and each run has a broker.
    home = {
        **env, "AIRFLOW_HOME": str(work / f"airflow-{workers}"),
        "PIPELINE_OUTPUT_DIR": str(work / f"output-dag-{workers}"),
    }
    broker = throwaway_broker(work / f"kafka-dag-{workers}", home)
    with broker as kafka_env, api_server(kafka_env) as airflow_env:
        started = time.perf_counter()
        result = subprocess.run(
            [AIRFLOW, "dags", "test", "kafka_pipeline", "2026-01-05T10:00:00+00:00", "--use-executor",
             "--conf", json.dumps({"orders": n, "invalid_ratio": 0.0, "seed": 1, "workers": workers})],
            env=airflow_env, capture_output=True, text=True,
        )
        dag_seconds = time.perf_counter() - started
    output = result.stdout + result.stderr
    log = settings.output_dir() / f"bench-dag-run-{workers}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    log.write_text(output)
    if result.returncode != 0 or "state=success" not in output:
        sys.exit(f"bench: the DAG run at {workers} workers failed (all of its output in {log}):\n"
                 + output[-3000:])
    # Each stage logs "<what>: <count> in <seconds>s" (progress.Progress.done); the rest is Airflow.
    # A mapped stage's instances run side by side: the stage takes as long as its slowest.
    slowest: dict[str, float] = {}
    for seconds, task in re.findall(r": \d+ in ([0-9.]+)s \(.* task_id=(\w+)", output):
        slowest[task] = max(slowest.get(task, 0.0), float(seconds))
    stage_seconds = sum(slowest.values())
    return DagRun(
        dag_seconds=round(dag_seconds, 1), dag_stage_seconds=round(stage_seconds, 1),
        dag_airflow_overhead_seconds=round(dag_seconds - stage_seconds, 1),
    )


@contextmanager
def api_server(env: dict) -> Iterator[dict]:
    """`scripts/airflow api-server` on free ports, whose execution API an executor's task
    processes call; yields ``env`` pointing at it."""
    env = {**env, "AIRFLOW__API__PORT": str(free_port(713, 714))}  # and its two log servers'
    # Migrates the metadata DB and writes airflow.cfg with its secrets (the JWT key the executor
    # signs with and the server checks) once, before the two processes read them.
    subprocess.run([AIRFLOW, "config", "get-value", "core", "executor"], env=env, check=True,
                   capture_output=True)
    home = Path(env["AIRFLOW_HOME"])
    with (home / "api-server.log").open("wb") as log:
        server = subprocess.Popen([AIRFLOW, "api-server"], env=env, stdout=log, stderr=subprocess.STDOUT,
                                  start_new_session=True)
    try:
        health = f"http://127.0.0.1:{env['AIRFLOW__API__PORT']}/api/v2/monitor/health"
        deadline = time.monotonic() + 180
        while not answers(health):
            if server.poll() is not None or time.monotonic() > deadline:
                sys.exit(f"bench: the API server did not start; its log: {home / 'api-server.log'}")
            time.sleep(1)
        yield env
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()


def answers(url: str) -> bool:
    """Whether ``url`` answers with a success."""
    try:
        with urllib.request.urlopen(url, timeout=2):
            return True
    except OSError:
        return False
