"""What the tests of the observability stack share: a webhook receiver for Alertmanager's
notifications, and Prometheus' HTTP API (scripts/prometheus/local.py starts the stack)."""

from __future__ import annotations

import json
import os
import queue
import socket
import threading
import time
import urllib.parse
import urllib.request
from contextlib import ExitStack, contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable, Iterator

from scripts.kafka.local import free_port
from scripts.prometheus.local import Stack


class Receiver(ThreadingHTTPServer):
    """A webhook receiver on localhost: each POST's JSON body into ``bodies``."""

    def __init__(self) -> None:
        self.bodies: queue.Queue[dict] = queue.Queue()
        super().__init__(("127.0.0.1", free_port()), _Handler)

    @property
    def url(self) -> str:
        """Where Alertmanager posts."""
        return f"http://127.0.0.1:{self.server_address[1]}/alerts"

    def next_alerts(self, alertname: str, status: str, within: float) -> list[dict]:
        """The alerts of the next notification of ``alertname`` with ``status`` (the others
        skipped), arriving within ``within`` seconds."""
        deadline = time.monotonic() + within
        while True:
            body = self.bodies.get(timeout=max(deadline - time.monotonic(), 0.001))
            if body["groupLabels"].get("alertname") == alertname and body["status"] == status:
                return body["alerts"]


class _Handler(BaseHTTPRequestHandler):
    def do_POST(self) -> None:  # noqa: N802 (http.server's name)
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.send_response(200)
        self.end_headers()
        self.server.bodies.put(body)

    def log_message(self, *args) -> None:
        """Quiet: pytest shows what the test asserts."""


@contextmanager
def receiving() -> Iterator[Receiver]:
    """A Receiver serving for the block."""
    server = Receiver()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


def api(stack: Stack, path: str, **params: str) -> dict:
    """The data of a Prometheus HTTP API answer (``/api/v1/<path>``), which must be a success."""
    url = f"{stack.prometheus.url}/api/v1/{path}?{urllib.parse.urlencode(params)}"
    with urllib.request.urlopen(url, timeout=5) as response:
        answer = json.load(response)
    assert answer["status"] == "success", answer
    return answer["data"]


def series(stack: Stack, query: str) -> list[tuple[dict, str]]:
    """An instant PromQL query's series: (labels, value as Prometheus writes it)."""
    return [(row["metric"], row["value"][1]) for row in api(stack, "query", query=query)["result"]]


def until(what: str, check: Callable[[], object], timeout: float = 20) -> object:
    """Poll an observable state until ``check`` returns something true; that."""
    deadline = time.monotonic() + timeout
    while not (found := check()):
        assert time.monotonic() < deadline, f"not within {timeout} s: {what}"
        time.sleep(0.2)
    return found


def free_ports(count: int) -> int:
    """The first of ``count`` consecutive ports nothing listens on now."""
    for base in range(20_000 + os.getpid() % 20_000, 65_000, count):
        with ExitStack() as held:
            try:
                for port in range(base, base + count):
                    held.enter_context(socket.socket()).bind(("127.0.0.1", port))
            except OSError:
                continue
        return base
    raise AssertionError("no free ports")
