"""Continuous mode's /metrics: each stage process serves its metrics on a port of its own, for
Prometheus to scrape (job ``kafka_pipeline_stream``)."""

from __future__ import annotations

import threading
import time
from typing import Iterator
from wsgiref.simple_server import WSGIServer

from prometheus_client.core import Metric
from prometheus_client.exposition import start_http_server
from prometheus_client.registry import Collector, CollectorRegistry

from include.pipeline.metrics.catalogue import METRICS, Metrics

FINAL_SCRAPE_SECONDS = 30.0  # at most this long a stopping stage waits for its final scrape


def address(host: str, port: int) -> str:
    """Where the metrics served on ``host``:``port`` are read."""
    return f"http://{host}:{port}/metrics"


class Scraped(Collector):
    """``registry``'s metrics, noting when each scrape read them: a stage that ends waits for one
    scrape after its last count (``final_scrape``), or Prometheus keeps the one before it."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.times: list[float] = []  # monotonic: the last two scrapes
        self.scraped = threading.Condition()
        self.server: WSGIServer | None = None

    def collect(self) -> Iterator[Metric]:
        """The registry's metrics, this read noted as a scrape."""
        yield from self.registry.collect()
        with self.scraped:
            self.times = [*self.times[-1:], time.monotonic()]
            self.scraped.notify_all()

    def close(self) -> None:
        """Stop serving (a test; a stage process serves until it ends)."""
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()

    def restricted_registry(self, names):
        """For a scrape that names the metrics it wants (``name[]``)."""
        return self.registry.restricted_registry(names)

    def final_scrape(self, most: float = FINAL_SCRAPE_SECONDS) -> bool:
        """Wait until a scrape reads the metrics as they are now: twice the time between the last
        two scrapes (a second at least), at most ``most`` seconds; not at all when nothing has
        scraped them. True when one did."""
        with self.scraped:
            if not self.times:
                return False
            asked = time.monotonic()
            between = self.times[-1] - self.times[0] if len(self.times) == 2 else most
            return self.scraped.wait_for(lambda: self.times[-1] > asked, min(max(2 * between, 1.0), most))


def serve(host: str, port: int, metrics: Metrics = METRICS) -> Scraped:
    """Serve ``metrics`` on ``host``:``port``/metrics from a thread of this process, until it
    ends (a stage process); a port that cannot be had raises ValueError, naming the setting to
    change. Returns what notes the scrapes."""
    scraped = Scraped(metrics.registry)
    try:
        scraped.server, _ = start_http_server(port, host, registry=scraped)
        return scraped
    except (OSError, OverflowError) as exc:  # taken or not ours to have; past 65535
        why = getattr(exc, "strerror", None) or exc
        raise ValueError(
            f"cannot serve metrics on {host}:{port} ({why}): set PIPELINE_METRICS_PORT "
            "to the first of free ports (one a stage process), or to 0 for none"
        ) from None
