"""A local Prometheus, Pushgateway and Alertmanager: Debian's binaries, their config generated here.

Prometheus scrapes continuous mode's stage processes (job ``kafka_pipeline_stream``, a port each
from PIPELINE_METRICS_PORT, 9464, in the supervisor's order: generate, process-N..., analyze-N...,
sink) and the Pushgateway the bounded tasks push to (honor_labels: their job ``kafka_pipeline``
and grouping labels stay), loads rules.yml and sends its alerts to the Alertmanager, which posts
them to PIPELINE_ALERT_WEBHOOK_URL when set (Alertmanager's webhook JSON), or keeps them on its
page only.

For the tests, ``throwaway_stack()``: the three on free loopback ports in a temporary directory,
scraping and evaluating every second, stopped and removed when the block ends. For users, a
long-running one (`make observability-up`, `make observability-down`):

    python3 scripts/prometheus/local.py up [--workers N]  # 127.0.0.1: Prometheus 9090, Pushgateway
                                                          # 9091, Alertmanager 9093; .observability/
    python3 scripts/prometheus/local.py down
    python3 scripts/prometheus/local.py compose           # docker-compose.yaml's configs, in compose/

Standard library only: `make observability-up` runs it with the system's Python. The configs are
written as JSON, which is YAML. Debian's `prometheus`, `prometheus-pushgateway` and
`prometheus-alertmanager` (`.ci/run` installs them); PROMETHEUS, PUSHGATEWAY and ALERTMANAGER
point at other binaries.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))  # run as a script (`make observability-up`): the package's configs

from scripts.processes import stop_daemon, terminate, wait_until  # noqa: E402
from scripts.prometheus.configs import (  # noqa: E402
    COMPOSE_DIR,
    COMPOSE_HEADER,
    METRICS_PORT,
    RULES,
    alertmanager_config,
    compose_configs,
    prometheus_config,
    shortened_rules,
    stream_targets,
)


class NotInstalled(RuntimeError):
    """A binary of the stack is not where its variable (or PATH) says."""


@dataclass(frozen=True)
class Component:
    """One server of the stack: its binary, Debian package, default port and readiness path."""

    name: str
    variable: str
    binary: str
    package: str
    port: int

    def path(self) -> str:
        """The binary to run: the variable's value or the default, a path or a name on PATH."""
        wanted = os.environ.get(self.variable, self.binary)
        found = shutil.which(wanted)
        if not found:
            raise NotInstalled(
                f"{wanted} not found: install Debian's {self.package} (`apt-get install {self.package}`) "
                f"or point {self.variable} at its binary"
            )
        return found


PROMETHEUS = Component("prometheus", "PROMETHEUS", "prometheus", "prometheus", 9090)
PUSHGATEWAY = Component(
    "pushgateway", "PUSHGATEWAY", "prometheus-pushgateway", "prometheus-pushgateway", 9091
)
ALERTMANAGER = Component(
    "alertmanager", "ALERTMANAGER", "prometheus-alertmanager", "prometheus-alertmanager", 9093
)
COMPONENTS = (PUSHGATEWAY, ALERTMANAGER, PROMETHEUS)  # Prometheus last: it sends to the others


def ready(port: int, timeout: float = 1.0) -> bool:
    """Whether a server answers 200 on 127.0.0.1:``port``/-/ready (all three have it)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/-/ready", timeout=timeout) as response:
            return response.status == 200
    except (OSError, urllib.error.URLError):
        return False


def _write(path: Path, config: dict, header: str = "") -> Path:
    path.write_text(header + json.dumps(config, indent=2) + "\n")
    return path


@dataclass
class Server:
    """One component on ``port``, its files under ``root``/<name>, in the foreground of ``start``."""

    component: Component
    root: Path
    port: int
    process: subprocess.Popen | None = field(default=None, repr=False)

    @property
    def home(self) -> Path:
        """Its data directory (and log, ``<name>.log``)."""
        return self.root / self.component.name

    @property
    def log(self) -> Path:
        """Its standard output and error."""
        return self.root / f"{self.component.name}.log"

    @property
    def url(self) -> str:
        """Its HTTP address."""
        return f"http://127.0.0.1:{self.port}"

    def command(self, config: Path | None, persist: bool) -> list[str]:
        """Its command line: listening on loopback only, its data in ``home``."""
        listen = f"--web.listen-address=127.0.0.1:{self.port}"
        if self.component is PROMETHEUS:
            return [PROMETHEUS.path(), f"--config.file={config}", f"--storage.tsdb.path={self.home}", listen]
        if self.component is ALERTMANAGER:
            # No cluster: its port (9094 by default) would clash with the next stack's.
            return [ALERTMANAGER.path(), f"--config.file={config}", f"--storage.path={self.home}", listen,
                    "--cluster.listen-address="]
        # Always named: Debian's default is one file for every Pushgateway of the machine
        # (/var/lib/prometheus/pushgateway.data), which would hand a stack the last one's pushes.
        keep = self.home / "pushed.db" if persist else ""
        return [PUSHGATEWAY.path(), listen, f"--persistence.file={keep}"]

    def start(self, config: Path | None, *, persist: bool = False, detach: bool = False) -> None:
        """Start it and wait until it is ready (``detach``: in a session of its own, to outlive us)."""
        self.home.mkdir(parents=True, exist_ok=True)
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                self.command(config, persist), stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                cwd=self.home, start_new_session=detach,
            )
        wait_ready(self.component, self.port, self.process, self.log)

    def stop(self) -> None:
        """SIGTERM (each flushes its data on the way out), then SIGKILL after 10 s."""
        terminate(self.process)


def wait_ready(
    component: Component, port: int, process: subprocess.Popen | None, log: Path, timeout: float = 30
) -> None:
    """Until /-/ready answers; a process that exits, or 30 s, raises with its log's tail."""
    wait_until(lambda: ready(port), f"{component.name} on port {port}", process, log, timeout)


@dataclass
class Stack:
    """The three servers of a started stack."""

    prometheus: Server
    pushgateway: Server
    alertmanager: Server


@contextmanager
def throwaway_stack(
    stream: list[tuple[str, str]] = (), *, webhook_url: str | None = None, interval: int = 1,
    longest_for: int | None = None,
) -> Iterator[Stack]:
    """The stack on free loopback ports, scraping ``stream`` (address, process) every ``interval``
    seconds; stopped and removed when the block ends. ``longest_for`` (seconds) shortens the rules'
    `for`s; Alertmanager waits ``interval`` before a group's first notification (30 s for users)."""
    from scripts.kafka.local import free_port  # here: `python3 scripts/prometheus/local.py` runs without it

    root = Path(tempfile.mkdtemp(prefix="kafka-pipeline-prometheus-"))
    ports = {component.name: free_port() for component in COMPONENTS}
    servers = {component.name: Server(component, root, ports[component.name]) for component in COMPONENTS}
    rules = RULES if longest_for is None else root / "rules.yml"
    if longest_for is not None:
        rules.write_text(shortened_rules(RULES.read_text(), longest_for))
    configs = {
        "alertmanager": _write(root / "alertmanager.yml", alertmanager_config(
            webhook_url, group_wait=interval, group_interval=interval)),
        "prometheus": _write(root / "prometheus.yml", prometheus_config(
            stream=list(stream), pushgateway=f"127.0.0.1:{ports['pushgateway']}",
            alertmanager=f"127.0.0.1:{ports['alertmanager']}", rules=[str(rules)], interval=interval)),
    }
    try:
        with ExitStack() as stops:
            for component in COMPONENTS:
                server = servers[component.name]
                stops.callback(server.stop)
                server.start(configs.get(component.name))
            yield Stack(**servers)
    finally:
        shutil.rmtree(root, ignore_errors=True)


# `make observability-up` / `-down`: daemons with pid files in .observability/.
HOME = ROOT / ".observability"


def _pid(component: Component) -> int | None:
    """The pid in its pid file, if that process is a live one of its binary (not a reused pid)."""
    try:
        pid = int((HOME / f"{component.name}.pid").read_text().strip())
        command = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0]
        return pid if Path(command.decode()).name == Path(component.path()).name else None
    except (OSError, ValueError):
        return None


def _port(component: Component) -> int:
    return int(os.environ.get(f"{component.variable}_PORT", component.port))


def up(workers: int) -> None:
    """Start whichever of the three is not running, each with its pid file and log in .observability/;
    one that runs reloads its config (SIGHUP), so another --workers or webhook applies at once.

    The Pushgateway persists what was pushed (.observability/pushgateway/pushed.db), so the last
    runs' verdicts (a failed reconcile) survive a restart of the stack, as they should.
    """
    HOME.mkdir(parents=True, exist_ok=True)
    webhook = os.environ.get("PIPELINE_ALERT_WEBHOOK_URL") or None
    base = int(os.environ.get("PIPELINE_METRICS_PORT", METRICS_PORT))
    configs = {
        "alertmanager": _write(HOME / "alertmanager.yml", alertmanager_config(webhook)),
        "prometheus": _write(HOME / "prometheus.yml", prometheus_config(
            stream=stream_targets("127.0.0.1", base, workers), pushgateway=f"127.0.0.1:{_port(PUSHGATEWAY)}",
            alertmanager=f"127.0.0.1:{_port(ALERTMANAGER)}", rules=[str(RULES)], interval=15)),
    }
    for component in COMPONENTS:
        server = Server(component, HOME, _port(component))
        if pid := _pid(component):
            reloaded = component.name in configs
            if reloaded:
                os.kill(pid, signal.SIGHUP)
            note = ": config reloaded" if reloaded else ""
            print(f"{component.name} already runs (pid {pid}) on {server.url}{note}")
            continue
        if ready(server.port):
            raise RuntimeError(f"port {server.port} answers, but not a {component.name} started here: "
                               f"stop it or set {component.variable}_PORT")
        server.start(configs.get(component.name), persist=True, detach=True)
        (HOME / f"{component.name}.pid").write_text(f"{server.process.pid}\n")
        print(f"{component.name} on {server.url}, pid {server.process.pid}, log {server.log}")
    targets = ", ".join(f"{name} {address}" for address, name in stream_targets("127.0.0.1", base, workers))
    print(f"Prometheus scrapes the stream ({targets}) and the Pushgateway "
          f"(PIPELINE_PUSHGATEWAY_URL=http://127.0.0.1:{_port(PUSHGATEWAY)}); alerts go to "
          f"{webhook or 'no webhook (set PIPELINE_ALERT_WEBHOOK_URL): see them on the Alertmanager page'}")


def down() -> None:
    """Stop what `up` started (by its pid files), and wait until each has exited."""
    for component in reversed(COMPONENTS):
        pid = _pid(component)
        if pid is None:
            print(f"no {component.name} started by `up` runs")
            continue
        stop_daemon(pid)
        (HOME / f"{component.name}.pid").unlink(missing_ok=True)
        print(f"{component.name} (pid {pid}) stopped")


def compose() -> None:
    """Write compose_configs() into scripts/prometheus/compose/ (tests/deploy checks they agree)."""
    COMPOSE_DIR.mkdir(exist_ok=True)
    for name, config in compose_configs().items():
        print(f"wrote {_write(COMPOSE_DIR / name, config, COMPOSE_HEADER).relative_to(ROOT)}")


def main() -> int:
    """`up` (--workers: the stream's process and analyze processes), `down` or `compose`."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("action", choices=["up", "down", "compose"])
    parser.add_argument("--workers", type=int, default=int(os.environ.get("WORKERS") or 1))
    args = parser.parse_args()
    try:
        {"up": lambda: up(args.workers), "down": down, "compose": compose}[args.action]()
    except (NotInstalled, RuntimeError, OSError) as error:
        print(f"observability {args.action}: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
