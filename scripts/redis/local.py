"""A local Redis server, the Celery executor's broker (PIPELINE_EXECUTOR=celery in scripts/airflow).

For the tests, ``throwaway_redis()``: a redis-server on a free loopback port in a temporary
directory, stopped and removed when the block ends. For users, a long-running one (`make redis-up`,
`make redis-down`):

    python3 scripts/redis/local.py up      # 127.0.0.1:6379 (REDIS_PORT), files in .redis/<port>/
    python3 scripts/redis/local.py down

Neither persists anything (no RDB snapshots, no AOF): the broker holds only queued task messages,
which the scheduler sends again for tasks still queued after a restart. Debian's `redis-server`
(`.ci/run` installs it); REDIS_SERVER points at another binary.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # run as a script (make redis-up)
from scripts.processes import stop_daemon, terminate, wait_until  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
REDIS_SERVER = os.environ.get("REDIS_SERVER", "redis-server")
# No persistence, loopback only; the config comes from the command line (no config file).
OPTIONS = ["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]


class RedisNotInstalled(RuntimeError):
    """No redis-server binary where REDIS_SERVER (or PATH) says."""


def server_binary() -> str:
    """The redis-server to run: REDIS_SERVER, a path or a name on PATH."""
    found = shutil.which(REDIS_SERVER)
    if not found:
        raise RedisNotInstalled(
            f"{REDIS_SERVER} not found: install Debian's Redis (`apt-get install redis-server`) "
            "or point REDIS_SERVER at a redis-server binary"
        )
    return found


def answers(port: int, timeout: float = 1.0) -> bool:
    """Whether a Redis server answers PING on 127.0.0.1:``port``."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


def url(port: int, db: int = 0) -> str:
    """The server as a Celery broker URL."""
    return f"redis://127.0.0.1:{port}/{db}"


def _wait(port: int, process: subprocess.Popen | None, log: Path, timeout: float = 30) -> None:
    wait_until(lambda: answers(port), f"redis-server on port {port}", process, log, timeout)


class Redis:
    """A redis-server in the foreground, in ``root`` (its log: ``root``/redis.log)."""

    def __init__(self, root: Path, port: int) -> None:
        self.root, self.port, self.log = root, port, root / "redis.log"
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        """The broker URL of database 0."""
        return url(self.port)

    def start(self) -> None:
        """Start it and wait until it answers PING."""
        command = [server_binary(), "--port", str(self.port), "--dir", str(self.root), *OPTIONS]
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                command, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
            )
        _wait(self.port, self.process, self.log)

    def stop(self) -> None:
        """SIGTERM (it saves nothing on the way out), then SIGKILL after 10 s."""
        terminate(self.process)


@contextmanager
def throwaway_redis() -> Iterator[Redis]:
    """A started server on a free loopback port; stopped and removed when the block ends."""
    from scripts.kafka.local import free_port  # here: `python3 scripts/redis/local.py` runs without it

    root = Path(tempfile.mkdtemp(prefix="kafka-pipeline-redis-"))
    server = Redis(root, free_port())
    try:
        server.start()
        yield server
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)


def _pid(pid_file: Path) -> int | None:
    """The pid in the file, if that process is a live redis-server (not a reused pid)."""
    try:
        pid = int(pid_file.read_text().strip())
        return pid if b"redis-server" in Path(f"/proc/{pid}/cmdline").read_bytes() else None
    except (OSError, ValueError):
        return None


def up(port: int) -> None:
    """Start a daemonized server on ``port`` with its pid file and log in .redis/<port>/."""
    home = ROOT / ".redis" / str(port)
    pid_file, log = home / "redis.pid", home / "redis.log"
    if answers(port):
        owner = f"pid {_pid(pid_file)}" if _pid(pid_file) else "not started here"
        print(f"Redis already answers on 127.0.0.1:{port} ({owner})")
        return
    home.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [server_binary(), "--port", str(port), "--dir", str(home), *OPTIONS, "--daemonize", "yes",
         "--pidfile", str(pid_file), "--logfile", str(log)],
        check=True, stdin=subprocess.DEVNULL,
    )
    _wait(port, None, log)
    print(f"Redis on 127.0.0.1:{port} ({url(port)}), pid {_pid(pid_file)}, log {log}")


def down(port: int) -> None:
    """Stop the server that `up` started on ``port`` (by its pid file), and wait until it has exited."""
    pid_file = ROOT / ".redis" / str(port) / "redis.pid"
    pid = _pid(pid_file)
    if pid is None:
        print(f"no Redis started by `up` runs on port {port}")
        return
    stop_daemon(pid)
    pid_file.unlink(missing_ok=True)
    print(f"Redis on 127.0.0.1:{port} stopped")


def main() -> int:
    """`up` or `down` on REDIS_PORT (6379) or --port."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("action", choices=["up", "down"])
    parser.add_argument("--port", type=int, default=int(os.environ.get("REDIS_PORT", "6379")))
    args = parser.parse_args()
    try:
        (up if args.action == "up" else down)(args.port)
    except (RedisNotInstalled, RuntimeError, subprocess.CalledProcessError) as error:
        print(f"redis {args.action}: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
