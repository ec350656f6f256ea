"""Continuous mode's /metrics: each stage process serves its metrics on a port of its own, for
Prometheus to scrape (job ``kafka_pipeline_stream``)."""

from __future__ import annotations

from wsgiref.simple_server import WSGIServer

from prometheus_client.exposition import start_http_server

from include.pipeline.metrics.catalogue import METRICS, Metrics


def address(host: str, port: int) -> str:
    """Where the metrics served on ``host``:``port`` are read."""
    return f"http://{host}:{port}/metrics"


def serve(host: str, port: int, metrics: Metrics = METRICS) -> WSGIServer:
    """Serve ``metrics`` on ``host``:``port``/metrics from a thread of this process, until it
    ends (a stage process) or the server returned is shut down (a test); a port that cannot be
    had raises ValueError, naming the setting to change."""
    try:
        server, _ = start_http_server(port, host, registry=metrics.registry)
        return server
    except (OSError, OverflowError) as exc:  # taken or not ours to have; past 65535
        why = getattr(exc, "strerror", None) or exc
        raise ValueError(
            f"cannot serve metrics on {host}:{port} ({why}): set PIPELINE_METRICS_PORT "
            "to the first of free ports (one a stage process), or to 0 for none"
        ) from None
