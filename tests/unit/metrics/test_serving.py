"""Continuous mode's /metrics: served from the registry as it is when read; a port taken says
which setting to change."""

import socket
from urllib.request import urlopen

import pytest

from include.pipeline.metrics import counting, serving
from include.pipeline.metrics.catalogue import Metrics


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_metrics_are_served_as_they_are_when_read():
    metrics, port = Metrics(), free_port()
    server = serving.serve("127.0.0.1", port, metrics)
    try:
        counting.store_rows("sink", 4, metrics=metrics)
        with urlopen(serving.address("127.0.0.1", port), timeout=5) as response:
            body = response.read().decode()
        assert 'kafka_pipeline_store_rows_written_total{stage="sink"} 4.0' in body.splitlines()
    finally:
        server.shutdown()
        server.server_close()


def test_a_port_in_use_names_the_setting():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        said = rf"cannot serve metrics on 127.0.0.1:{port} .*PIPELINE_METRICS_PORT"
        with pytest.raises(ValueError, match=said):
            serving.serve("127.0.0.1", port, Metrics())
