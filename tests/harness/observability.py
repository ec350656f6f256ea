"""What the tests of the observability stack share: Alertmanager's notifications as a webhook
(a Capture) receives them, and Prometheus' HTTP API (scripts/prometheus/local.py starts the stack)."""

from __future__ import annotations

import json
import os
import socket
import time
import urllib.parse
import urllib.request
from contextlib import ExitStack
from typing import Callable

from scripts.prometheus.local import Stack
from tests.harness.http_capture import Capture


def next_alerts(receiver: Capture, alertname: str, status: str, within: float) -> list[dict]:
    """The alerts of the next notification Alertmanager posts to ``receiver`` (a Capture) of
    ``alertname`` with ``status`` (the others skipped), arriving within ``within`` seconds."""
    deadline = time.monotonic() + within
    while True:
        body = receiver.arrivals.get(timeout=max(deadline - time.monotonic(), 0.001)).json()
        if body["groupLabels"].get("alertname") == alertname and body["status"] == status:
            return body["alerts"]


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
