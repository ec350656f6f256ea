"""A real Airflow for the tests: `scripts/airflow standalone` (scheduler, dag-processor, triggerer,
api-server, LocalExecutor) on free ports with its own AIRFLOW_HOME, driven through the REST API
as a user would, and stopped when the block ends."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import httpx

from scripts.kafka.local import free_port

ROOT = Path(__file__).resolve().parents[2]
FINISHED = {"success", "failed"}


class LiveAirflow:
    def __init__(self, url: str, home: Path, log: Path, process: subprocess.Popen) -> None:
        self.url, self.home, self.log, self.process = url, home, log, process
        self.client = httpx.Client(base_url=url, timeout=30)

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
        response = self.api("POST", f"/dags/{dag_id}/dagRuns", json={"logical_date": logical_date, "conf": conf})
        assert response.status_code == 200, response.text
        return response.json()["dag_run_id"]

    def runs(self, dag_id: str) -> list[dict]:
        return self.get(f"/dags/{dag_id}/dagRuns", order_by="run_after")["dag_runs"]

    def wait_for_run(self, dag_id: str, run_id: str, timeout: float = 120) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            run = self.get(f"/dags/{dag_id}/dagRuns/{run_id}")
            if run["state"] in FINISHED:
                return run
            time.sleep(1)
        raise AssertionError(f"{dag_id} {run_id} did not finish in {timeout}s: {self.tasks(dag_id, run_id)}\n{self.tail()}")

    def wait_until_idle(self, dag_id: str, timeout: float = 120) -> list[dict]:
        """Every run of the DAG finished; returns them."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            runs = self.runs(dag_id)
            if all(run["state"] in FINISHED for run in runs):
                return runs
            time.sleep(1)
        raise AssertionError(f"{dag_id} still has unfinished runs after {timeout}s: {self.runs(dag_id)}\n{self.tail()}")

    def tasks(self, dag_id: str, run_id: str) -> dict[str, tuple[str, int]]:
        """task id -> (state, try number)."""
        tis = self.get(f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances")["task_instances"]
        return {ti["task_id"]: (ti["state"], ti["try_number"]) for ti in tis}

    def xcom(self, dag_id: str, run_id: str, task_id: str):
        return self.get(f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/xcomEntries/return_value")["value"]

    def task_log(self, dag_id: str, run_id: str, task_id: str, try_number: int = 1) -> str:
        path = f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/logs/{try_number}"
        response = self.api("GET", path, headers={"Accept": "application/json"}, params={"full_content": True})
        response.raise_for_status()
        lines = []
        for line in response.json()["content"]:
            lines.append(str(line.get("event", "")))
            lines += [str(error.get("exc_value")) for error in line.get("error_detail") or []]
        return "\n".join(lines)

    def tail(self, lines: int = 60) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])


    def wait_until_ready(self, dag_ids: set[str], timeout: float = 120) -> None:
        """Every component healthy and ``dag_ids`` parsed."""
        deadline = time.monotonic() + timeout
        components = ("metadatabase", "scheduler", "triggerer", "dag_processor")
        while True:
            assert self.process.poll() is None, f"airflow standalone exited ({self.process.returncode}):\n{self.tail()}"
            assert time.monotonic() < deadline, f"airflow standalone not ready in {timeout}s:\n{self.tail()}"
            try:
                health = self.client.get("/api/v2/monitor/health").json()
                if all(health.get(c, {}).get("status") == "healthy" for c in components):
                    self.login()
                    if dag_ids <= {dag["dag_id"] for dag in self.get("/dags")["dags"]}:
                        return
            except (httpx.HTTPError, ValueError, FileNotFoundError):
                pass
            time.sleep(1)


def fresh_home(root: Path, migrated_db: Path) -> tuple[Path, dict[str, str]]:
    """An AIRFLOW_HOME in ``root`` with a copy of the migrated metadata DB (and its pool), and
    this process's environment without Airflow API, logging or connection settings, which the
    live Airflow derives itself (scripts/airflow) or the test sets."""
    home = root / "airflow"
    home.mkdir()
    shutil.copy(migrated_db, home / "airflow.db")
    shutil.copy(migrated_db.with_name(".pool-kafka_pipeline-4"), home)
    env = {
        key: value for key, value in os.environ.items()
        if not key.startswith(("AIRFLOW__API", "AIRFLOW__LOGGING", "AIRFLOW_CONN_"))
    }
    return home, env


@contextmanager
def live_airflow(home: Path, env: dict[str, str]) -> Iterator[LiveAirflow]:
    """Start `scripts/airflow standalone` in ``home`` (which may hold a migrated DB) on a free API
    port whose log-server ports (port + 713, port + 714, as scripts/airflow derives them) are
    free too; stop it when the block ends. Call ``wait_until_ready`` before using it."""
    env = {**env, "AIRFLOW_HOME": str(home), "AIRFLOW__API__PORT": str(free_port(713, 714))}
    log = home / "standalone.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [str(ROOT / "scripts/airflow"), "standalone"], env=env, stdout=out, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, start_new_session=True,
        )
    airflow = LiveAirflow(f"http://127.0.0.1:{env['AIRFLOW__API__PORT']}", home, log, process)
    try:
        yield airflow
    finally:
        airflow.client.close()
        _stop(process)


def _stop(process: subprocess.Popen) -> None:
    """SIGTERM to the whole process group (standalone and its components), then SIGKILL. (On
    SIGINT, standalone's dag-processor and scheduler do not exit.)"""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        deadline = time.monotonic() + 30
        try:
            os.killpg(process.pid, sig)
            while time.monotonic() < deadline:
                process.poll()  # reap the leader, or the group never looks empty
                os.killpg(process.pid, 0)
                time.sleep(0.2)
        except ProcessLookupError:
            return
