"""A real HTTP server on a free localhost port that keeps what it is sent: the webhooks,
Pushgateways and Alertmanager receivers of the tests (the code under test makes real requests)."""

from __future__ import annotations

import json
import queue
import threading
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Iterator, NamedTuple


class Request(NamedTuple):
    """One request the server was sent."""

    method: str
    path: str
    content_type: str | None
    body: bytes

    def json(self):
        """The body as JSON."""
        return json.loads(self.body)


class Capture(ThreadingHTTPServer):
    """Keeps each request in ``requests`` (and ``arrivals``, to wait on) and answers ``status``."""

    def __init__(self, status: int = 200) -> None:
        self.requests: list[Request] = []
        self.arrivals: queue.Queue[Request] = queue.Queue()
        self.status = status
        super().__init__(("127.0.0.1", 0), _Keep)

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:<port>``."""
        return f"http://127.0.0.1:{self.server_address[1]}"


class _Keep(BaseHTTPRequestHandler):
    def _keep(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        request = Request(self.command, self.path, self.headers.get("Content-Type"), body)
        self.server.requests.append(request)
        self.server.arrivals.put(request)
        self.send_response(self.server.status)
        self.end_headers()

    do_POST = do_PUT = _keep  # noqa: N815 (http.server's names)

    def log_message(self, *args) -> None:
        """Quiet: pytest shows what the test asserts."""


@contextmanager
def capturing(status: int = 200) -> Iterator[Capture]:
    """A Capture serving for the block."""
    server = Capture(status)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
