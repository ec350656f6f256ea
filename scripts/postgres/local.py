"""A throwaway PostgreSQL server for the tests and the benchmark: `initdb` in a temporary
directory and `pg_ctl` on a free loopback port, password (SCRAM) logins, a `metrics` database
owned by a `metrics` login; stopped and removed when the block ends. PostgreSQL 15 from Debian's
`postgresql` package (`.ci/run` installs it); PG_BIN points at another build."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import psycopg

from scripts.kafka.local import free_port

PG_BIN = Path(os.environ.get("PG_BIN", "/usr/lib/postgresql/15/bin"))
SUPERUSER, SUPERUSER_PASSWORD = "postgres", "throwaway-admin"
USER, PASSWORD, DATABASE = "metrics", "throwaway-metrics", "metrics"


class Postgres:
    """One throwaway server: its directory ``root`` (the data in ``root/data``) and its loopback port."""

    def __init__(self, root: Path, port: int) -> None:
        self.root, self.port, self.data = root, port, root / "data"

    def _run(self, *command: str) -> None:
        # initdb and postgres refuse to run as root: as root, they run as the postgres user.
        prefix = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        result = subprocess.run(prefix + list(command), capture_output=True, text=True, timeout=120)
        if result.returncode != 0:
            raise RuntimeError(
                f"{' '.join(command)} failed ({result.returncode}):\n{result.stdout}{result.stderr}"
            )

    def init(self) -> None:
        """Create the cluster in the data directory, its superuser logging in by password (SCRAM)."""
        if os.geteuid() == 0:
            shutil.chown(self.root, "postgres", "postgres")
        (self.root / "pwfile").write_text(SUPERUSER_PASSWORD + "\n")
        self._run(
            str(PG_BIN / "initdb"), "-D", str(self.data), "-U", SUPERUSER, "--auth=scram-sha-256",
            f"--pwfile={self.root / 'pwfile'}", "--encoding=UTF8", "--locale=C.UTF-8",
        )

    def start(self) -> None:
        """Start the server on 127.0.0.1 and its port (its socket in ``root``), and wait until it is up."""
        options = f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.root} -c fsync=on"
        self._run(
            str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-l", str(self.root / "log"), "-o", options,
            "-w", "start",
        )

    def stop(self) -> None:
        """A fast shutdown: open sessions are ended and their transactions rolled back."""
        self._run(str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop")

    def running(self) -> bool:
        """Whether the server may be running: its postmaster.pid is there."""
        return (self.data / "postmaster.pid").exists()

    def connect(self, database: str = "postgres", user: str = SUPERUSER, password: str = SUPERUSER_PASSWORD):
        """An autocommit connection to ``database``, as the superuser unless told otherwise."""
        return psycopg.connect(
            host="127.0.0.1", port=self.port, dbname=database, user=user, password=password, autocommit=True
        )

    def connection(self, password: str = PASSWORD) -> dict:
        """The metrics database as an Airflow connection (AIRFLOW_CONN_METRICS_DB, JSON)."""
        return {"conn_type": "postgres", "host": "127.0.0.1", "port": self.port, "login": USER,
                "password": password, "schema": DATABASE}

    def url(self) -> str:
        """The metrics database as a SQLAlchemy URL, logging in as the metrics user."""
        return f"postgresql+psycopg://{USER}:{PASSWORD}@127.0.0.1:{self.port}/{DATABASE}"


@contextmanager
def throwaway_postgres() -> Iterator[Postgres]:
    """A started server with the metrics login and database; stopped and removed when the block ends."""
    root = Path(tempfile.mkdtemp(prefix="kafka-pipeline-postgres-"))  # not under a 0700 pytest dir
    server = Postgres(root, free_port())
    try:
        server.init()
        server.start()
        with server.connect() as admin:
            admin.execute(f"CREATE ROLE {USER} LOGIN PASSWORD '{PASSWORD}'")
            admin.execute(f"CREATE DATABASE {DATABASE} OWNER {USER}")
        yield server
    finally:
        if server.running():
            server.stop()
        shutil.rmtree(root, ignore_errors=True)
