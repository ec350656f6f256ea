"""The whole kafka_pipeline run of N orders with `airflow dags test --use-executor` (the
LocalExecutor, its task instances in parallel, and an API server for them), of the DAG's input
mix at 1 and 2 workers and of the best case at 1, each on a fresh, warmed broker, repeated: its
wall time, and how much of it is Airflow rather than the stages."""

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
from scripts.bench.counts import check, dag_run_problems
from scripts.bench.results import MIXES, DagRun, Figure
from scripts.bench.warm_up import warmed_broker
from scripts.kafka.local import free_port

AIRFLOW = str(settings.PROJECT_ROOT / "scripts/airflow")
DAG_RUN_WORKERS = (1, 2)  # the whole DAG run: one worker, and the 2 of this 2-core machine
# (input mix, workers): the DAG's mix at each (scaling's), the best case beside the main row's.
SCALING_DAG_RUNS = tuple(("default", workers) for workers in DAG_RUN_WORKERS)
DAG_RUNS = (*SCALING_DAG_RUNS, ("best_case", 1))


def dag_runs(
    env: dict, work: Path, n: int, repeats: int, runs: tuple[tuple[str, int], ...] = DAG_RUNS,
) -> dict[tuple[str, int], DagRun]:
    """Each of ``runs`` (input mix, workers) ``repeats`` times, taking turns; by (mix, workers)."""
    samples: dict[tuple[str, int], list[tuple[float, float]]] = {run: [] for run in runs}
    for repeat in range(repeats):
        for mix, workers in runs:
            run_dir = work / f"dag-{mix}-{workers}-{repeat}"
            samples[mix, workers].append(dag_run(env, run_dir, n, mix, workers))
    return {
        run: DagRun(
            dag_seconds=Figure.of((seconds for seconds, _ in times), 1),
            dag_stage_seconds=Figure.of((stages for _, stages in times), 1),
            dag_airflow_overhead_seconds=Figure.of((seconds - stages for seconds, stages in times), 1),
        )
        for run, times in samples.items()
    }


def dag_run(env: dict, work: Path, n: int, mix: str, workers: int = 1) -> tuple[float, float]:
    """A whole kafka_pipeline run of ``n`` orders of ``mix`` with ``workers`` (airflow dags test,
    its tasks on the LocalExecutor, so mapped instances run side by side as under a scheduler):
    its seconds and the stages' share of them; its counts checked against its manifest. Its whole
    output goes to output/bench-dag-run-<mix>-<workers>.log (the last repetition's)."""
    # Its own Airflow and its own store: a store holds one cluster's metrics, and each run has a broker.
    home = {**env, "AIRFLOW_HOME": str(work / "airflow"), "PIPELINE_OUTPUT_DIR": str(work / "output")}
    conf = {"orders": n, "invalid_ratio": MIXES[mix], "seed": 1, "workers": workers}
    # Warmed before the DAG's create_topics makes the pipeline's topics: they start empty.
    with warmed_broker(work / "kafka", home, n) as kafka_env, api_server(kafka_env) as airflow_env:
        started = time.perf_counter()
        result = subprocess.run(
            [AIRFLOW, "dags", "test", "kafka_pipeline", "2026-01-05T10:00:00+00:00", "--use-executor",
             "--conf", json.dumps(conf)],
            env=airflow_env, capture_output=True, text=True,
        )
        dag_seconds = time.perf_counter() - started
    output = result.stdout + result.stderr
    log = settings.output_dir() / f"bench-dag-run-{mix}-{workers}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    log.write_text(output)
    if result.returncode != 0 or "state=success" not in output:
        sys.exit(f"bench: the DAG run of {mix} at {workers} worker(s) failed (all of its output in {log}):\n"
                 + output[-3000:])
    (manifest,) = (work / "output" / "runs").glob("kafka_pipeline.*.json")
    check(f"the DAG run of {mix} at {workers} worker(s)",
          dag_run_problems(n, json.loads(manifest.read_text())["summary"]))
    # Each stage logs "<what>: <count> in <seconds>s" (progress.Progress.done); the rest is Airflow.
    # A mapped stage's instances run side by side: the stage takes as long as its slowest.
    slowest: dict[str, float] = {}
    for seconds, task in re.findall(r": \d+ in ([0-9.]+)s \(.* task_id=(\w+)", output):
        slowest[task] = max(slowest.get(task, 0.0), float(seconds))
    return dag_seconds, sum(slowest.values())


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
