"""A throwaway local cluster for the tests and the benchmark: scripts/kafka/broker on free ports,
with its own data dir, stopped when the block ends."""

from __future__ import annotations

import random
import socket
import subprocess
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

BROKER = Path(__file__).with_name("broker")


def _ephemeral_start() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


EPHEMERAL_START = _ephemeral_start()


def free_port(*offsets: int) -> int:
    """A free port whose port + each offset is free too (on every interface), below the kernel's
    ephemeral range: a port from that range may go to some client's connection before the
    server binds it (tests run on several workers at once)."""
    while True:
        port = random.randrange(10_000, EPHEMERAL_START - max(offsets, default=0))
        try:
            for offset in (0, *offsets):
                with socket.socket() as s:
                    s.bind(("0.0.0.0", port + offset))
            return port
        except OSError:
            continue


def free_port_pair() -> int:
    """A free port whose successor is free too (the broker's and its controller's)."""
    return free_port(1)


@contextmanager
def throwaway_broker(
    data_dir: Path, env: dict[str, str], port: int | None = None, nodes: int = 1, security: str = "plaintext",
) -> Iterator[dict[str, str]]:
    """Start a cluster (on ``port``, or free ports) of ``nodes`` nodes, PLAINTEXT or secured
    (``sasl_ssl``: its client configs in ``data_dir/clients``); yields ``env`` plus the
    settings that point everything at it."""
    # Node n's ports: port + 3(n-1) for clients, + 1 for its controller, + 2 between brokers.
    port = port or free_port(*range(1, 3 * nodes))
    servers = ",".join(f"127.0.0.1:{port + 3 * n}" for n in range(nodes))
    env = {
        **env, "KAFKA_PORT": str(port), "KAFKA_DATA_DIR": str(data_dir), "KAFKA_BOOTSTRAP_SERVERS": servers,
        "KAFKA_NODES": str(nodes), "KAFKA_SECURITY": security,
    }
    try:
        subprocess.run([str(BROKER), "up"], env=env, check=True, timeout=300)
        yield env
    finally:  # also after a failed start: nodes that did start are stopped
        subprocess.run([str(BROKER), "down"], env=env, check=True, timeout=120)
