"""A real Airflow for the tests: `scripts/airflow standalone` (scheduler, dag-processor, triggerer,
api-server, LocalExecutor) on free ports with its own AIRFLOW_HOME, driven through the REST API
as a user would, stopped (and started again) as a user or a service manager would, and stopped
when the block ends. Its processes are those of its session: the task processes move to process
groups of their own, but stay in the session standalone was started in.

Or the same with the CeleryExecutor: `scripts/airflow celery-stack 2` (the same components, and
two Celery workers, w1 and w2, in place of the LocalExecutor) with a throwaway Redis as broker."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from contextlib import ExitStack, contextmanager
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Iterator

import httpx
import psutil

from scripts.kafka.local import free_port, free_port_pair, throwaway_broker
from scripts.redis.local import throwaway_redis
from tests.harness import in_process
from tests.harness.pipeline import Pipeline

ROOT = Path(__file__).resolve().parents[2]
FINISHED = {"success", "failed"}


def instance_name(ti: dict) -> str:
    """A task instance of the REST API by its task id, with ``[map index]`` if it is mapped."""
    return ti["task_id"] if ti["map_index"] < 0 else f"{ti['task_id']}[{ti['map_index']}]"


class LiveAirflow:
    def __init__(self, home: Path, env: dict[str, str], workers: int = 0) -> None:
        """``workers``: 0 for standalone (LocalExecutor), else that many Celery workers."""
        self.command = ["celery-stack", str(workers)] if workers else ["standalone"]
        self.home, self.env, self.log = home, env, home / f"{self.command[0]}.log"
        self.url = f"http://127.0.0.1:{env['AIRFLOW__API__PORT']}"
        # After a start, the API server's first execution API call (a task starting) took 10-36 s
        # on a loaded CI machine, and it answered nothing else meanwhile.
        self.client = httpx.Client(base_url=self.url, timeout=90)
        self.process: subprocess.Popen | None = None
        self.workers = [f"w{i}" for i in range(1, workers + 1)]  # their logs: worker_log(name)

    def worker_log(self, name: str) -> Path:
        """The log of a Celery worker, or of another component, of `scripts/airflow celery-stack`."""
        return self.home / "celery-stack" / f"{name}.log"

    def start(self) -> None:
        """`scripts/airflow standalone` (or `celery-stack`) in a session of its own, with SIGINT's
        default action as a terminal gives it (pytest-xdist's workers ignore SIGINT, and a child
        inherits that, so bash could not trap Ctrl-C); call ``wait_until_ready`` next."""
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                [str(ROOT / "scripts/airflow"), *self.command], env=self.env, stdout=out,
                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
                preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
            )

    def processes(self) -> list[psutil.Process]:
        """Every live process of this standalone (its session), zombies left out."""
        self.process.poll()  # reap the leader once it has exited
        found = []
        for proc in psutil.process_iter(["status"]):
            try:
                if os.getsid(proc.pid) == self.process.pid and proc.info["status"] != psutil.STATUS_ZOMBIE:
                    found.append(proc)
            except (ProcessLookupError, PermissionError):
                continue
        return found

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self, sig: signal.Signals = signal.SIGTERM, within: float = 30) -> list[str]:
        """Stop it as Ctrl-C in a terminal (SIGINT) or a service manager (SIGTERM) does: ``sig`` to
        its process group (SIGKILL: to every one of its processes, as a crash would). Returns what
        still runs after ``within`` seconds, each as its pid, process group and command line
        (nothing, when it stops as it should); those are then killed."""
        if sig == signal.SIGKILL:
            for proc in self.processes():
                proc.kill()
        else:
            os.killpg(self.process.pid, sig)
        deadline = time.monotonic() + within
        while (left := self.processes()) and time.monotonic() < deadline:
            time.sleep(0.2)
        described = []
        for proc in left:
            try:
                described.append(f"{proc.pid} (group {os.getpgid(proc.pid)}): {' '.join(proc.cmdline())}")
                proc.kill()
            except (psutil.NoSuchProcess, ProcessLookupError):
                continue
        self.process.wait()
        return described

    def login(self) -> None:
        passwords = json.loads((self.home / "simple_auth_manager_passwords.json.generated").read_text())
        response = self.client.post("/auth/token", json={"username": "admin", "password": passwords["admin"]})
        response.raise_for_status()
        self.client.headers["Authorization"] = f"Bearer {response.json()['access_token']}"

    def api(self, method: str, path: str, **kwargs) -> httpx.Response:
        return self.client.request(method, f"/api/v2{path}", **kwargs)

    def get(self, path: str, **params) -> dict:
        response = self.api("GET", path, params=params)
        response.raise_for_status()
        return response.json()

    def set_paused(self, dag_id: str, paused: bool) -> None:
        self.api("PATCH", f"/dags/{dag_id}", json={"is_paused": paused}).raise_for_status()

    def trigger(self, dag_id: str, conf: dict, logical_date: str | None = None) -> str:
        response = self.api(
            "POST", f"/dags/{dag_id}/dagRuns", json={"logical_date": logical_date, "conf": conf}
        )
        assert response.status_code == 200, response.text
        return response.json()["dag_run_id"]

    def runs(self, dag_id: str) -> list[dict]:
        return self.get(f"/dags/{dag_id}/dagRuns", order_by="run_after")["dag_runs"]

    def fail_runs(self, dag_id: str, but: str | None = None) -> list[str]:
        """Mark every run of the DAG that is not finished failed (but one); returns their ids."""
        going = [
            run["dag_run_id"] for run in self.runs(dag_id)
            if run["state"] not in FINISHED and run["dag_run_id"] != but
        ]
        for run_id in going:
            self.api("PATCH", f"/dags/{dag_id}/dagRuns/{run_id}", json={"state": "failed"}).raise_for_status()
        return going

    def run_latest_hour(
        self, dag_id: str, conf: dict, timeout: float = 300, now: datetime | None = None
    ) -> tuple[str, dict]:
        """Trigger the DAG for the latest hourly interval before ``now`` and unpause it until that
        run ends (unpaused, the scheduler finds the run exists); returns its id and the run.
        Paused again after, with any run an hour that ended meanwhile got marked failed."""
        latest = (now or datetime.now(timezone.utc)).replace(minute=0, second=0, microsecond=0)
        run_id = self.trigger(dag_id, conf, logical_date=(latest - timedelta(hours=1)).isoformat())
        self.set_paused(dag_id, False)
        try:
            return run_id, self.wait_for_run(dag_id, run_id, timeout=timeout)
        finally:
            self.set_paused(dag_id, True)
            self.fail_runs(dag_id, but=run_id)

    def wait_for_run(self, dag_id: str, run_id: str, timeout: float = 120) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            run = self.get(f"/dags/{dag_id}/dagRuns/{run_id}")
            if run["state"] in FINISHED:
                return run
            time.sleep(1)
        raise AssertionError(
            f"{dag_id} {run_id} did not finish in {timeout}s: {self.tasks(dag_id, run_id)}\n{self.tail()}"
        )

    def wait_until_idle(self, dag_id: str, timeout: float = 120) -> list[dict]:
        """Every run of the DAG finished; returns them."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            runs = self.runs(dag_id)
            if all(run["state"] in FINISHED for run in runs):
                return runs
            time.sleep(1)
        raise AssertionError(
            f"{dag_id} still has unfinished runs after {timeout}s: {self.runs(dag_id)}\n{self.tail()}"
        )

    def heartbeat(self, component: str) -> datetime:
        """The last heartbeat of ``component`` (``scheduler``, ``triggerer``, ``dag_processor``)."""
        health = self.client.get("/api/v2/monitor/health").json()[component]
        return datetime.fromisoformat(health[f"latest_{component}_heartbeat"])

    def wait_for_loops(self, *components: str, timeout: float = 60) -> None:
        """A whole loop of each component, one after the other, the first begun after the call: a
        component heartbeats at the end of a loop (at most every heartbeat interval), so the loop
        ending in its second heartbeat since began after the first."""
        deadline, since = time.monotonic() + timeout, datetime.now(timezone.utc)
        for component in components:
            for _ in range(2):
                while (beat := self.heartbeat(component)) <= since:
                    assert time.monotonic() < deadline, f"no {component} loop after {since}:\n{self.tail()}"
                    time.sleep(0.2)
                since = beat

    def tasks(self, dag_id: str, run_id: str) -> dict[str, tuple[str, int]]:
        """task id (``process[1]``: a mapped task's instance) -> (state, try number)."""
        tis = self.get(f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances")["task_instances"]
        return {instance_name(ti): (ti["state"], ti["try_number"]) for ti in tis}

    def xcom(self, dag_id: str, run_id: str, task_id: str):
        """What the task pushed; a mapped task's instances', as a list in map index order."""
        tis = self.get(f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances")["task_instances"]
        indexes = sorted(ti["map_index"] for ti in tis if ti["task_id"] == task_id)
        values = [
            self.get(f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/xcomEntries/return_value",
                     map_index=index)["value"]
            for index in indexes
        ]
        return values if indexes != [-1] else values[0]

    def task_log(self, dag_id: str, run_id: str, task_id: str, try_number: int = 1) -> str:
        """The log of a task (``process[1]``: a mapped task's instance)."""
        task_id, _, index = task_id.rstrip("]").partition("[")
        path = f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/logs/{try_number}"
        response = self.api(
            "GET", path, headers={"Accept": "application/json"},
            params={"full_content": True, "map_index": int(index) if index else -1},
        )
        response.raise_for_status()
        lines = []
        for line in response.json()["content"]:
            lines.append(str(line.get("event", "")))
            lines += [str(error.get("exc_value")) for error in line.get("error_detail") or []]
        return "\n".join(lines)

    def tail(self, lines: int = 60) -> str:
        logs = [self.log]
        if self.workers:  # the stack's components log to files of their own
            components = ["api-server", "scheduler", "dag-processor", "triggerer", *self.workers]
            logs += [self.worker_log(name) for name in components]
        return "\n".join(
            f"--- {log.name}\n" + "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
            for log in logs if log.exists()
        )


    def wait_until_ready(self, dag_ids: set[str], timeout: float = 180) -> None:
        """Every component healthy and ``dag_ids`` parsed."""
        deadline = time.monotonic() + timeout
        components = ("metadatabase", "scheduler", "triggerer", "dag_processor")
        while True:
            assert self.process.poll() is None, (
                f"airflow standalone exited ({self.process.returncode}):\n{self.tail()}"
            )
            assert time.monotonic() < deadline, f"airflow standalone not ready in {timeout}s:\n{self.tail()}"
            try:
                health = self.client.get("/api/v2/monitor/health").json()
                if all(health.get(c, {}).get("status") == "healthy" for c in components) and all(
                    " ready." in self.worker_log(name).read_text(errors="replace") for name in self.workers
                ):
                    self.login()
                    if dag_ids <= {dag["dag_id"] for dag in self.get("/dags")["dags"]}:
                        return
            except (httpx.HTTPError, ValueError, FileNotFoundError):
                pass
            time.sleep(1)


def fresh_home(root: Path) -> tuple[Path, dict[str, str]]:
    """An AIRFLOW_HOME in ``root`` with a copy of the migrated metadata DB (and its pool), and
    this process's environment without Airflow API, logging or connection settings, which the
    live Airflow derives itself (scripts/airflow) or the test sets."""
    home = root / "airflow"
    in_process.airflow_home(home)
    env = {
        key: value for key, value in os.environ.items()
        if not key.startswith(("AIRFLOW__API", "AIRFLOW__LOGGING", "AIRFLOW_CONN_", "AIRFLOW__CELERY"))
        and key not in ("PIPELINE_EXECUTOR", "REDIS_URL")
    }
    return home, env


@contextmanager
def live_airflow(home: Path, env: dict[str, str], workers: int = 0) -> Iterator[LiveAirflow]:
    """Start `scripts/airflow standalone` (or, with ``workers``, `celery-stack` with that many
    Celery workers) in ``home`` (which may hold a migrated DB) on a free API port whose log-server
    ports (port + 713, port + 714, as scripts/airflow derives them) are free too; stop it when the
    block ends. Call ``wait_until_ready`` before using it."""
    env = {**env, "AIRFLOW_HOME": str(home), "AIRFLOW__API__PORT": str(free_port(713, 714))}
    airflow = LiveAirflow(home, env, workers)
    airflow.start()
    try:
        yield airflow
    finally:
        airflow.client.close()
        if airflow.process.poll() is None or airflow.processes():
            airflow.stop()


def with_bundle(name: str, folder: Path) -> dict[str, str]:
    """The environment for a live Airflow that parses ``folder`` too, as a second DAG bundle
    beside the project's DAGs folder (Airflow's default bundle, which it keeps)."""
    bundle = "airflow.dag_processing.bundles.local.LocalDagBundle"
    bundles = [
        {"name": "dags-folder", "classpath": bundle, "kwargs": {}},
        {"name": name, "classpath": bundle, "kwargs": {"path": str(folder)}},
    ]
    return {"AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_CONFIG_LIST": json.dumps(bundles)}


@contextmanager
def live_stack(
    root: Path, dag_ids: set[str], celery_workers: int = 0, **env: str,
) -> Iterator[tuple[LiveAirflow, Pipeline]]:
    """A live Airflow (home in ``root``, ``env`` added to its environment) and a throwaway broker
    it points at, both ready, with the output in ``root``/output. Airflow starts (the slow part)
    while the broker does. With ``celery_workers``: the CeleryExecutor with that many workers,
    and a throwaway Redis, started first, as its broker."""
    home, base = fresh_home(root)
    port = free_port_pair()
    base.update(PIPELINE_OUTPUT_DIR=str(root / "output"), KAFKA_BOOTSTRAP_SERVERS=f"127.0.0.1:{port}", **env)
    with ExitStack() as stack:
        if celery_workers:
            base.update(PIPELINE_EXECUTOR="celery", REDIS_URL=stack.enter_context(throwaway_redis()).url)
        airflow = stack.enter_context(live_airflow(home, base, celery_workers))
        kafka_env = stack.enter_context(throwaway_broker(root / "kafka", base, port))
        # The stack starts two processes more than standalone, each paying Airflow's start-up.
        airflow.wait_until_ready(dag_ids, timeout=300 if celery_workers else 180)
        yield airflow, Pipeline(kafka_env, root / "output")
