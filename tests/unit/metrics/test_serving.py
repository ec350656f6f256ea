"""Continuous mode's /metrics: served from the registry as it is when read; a stage that ends
waits for the scrape of its final counts; a port taken says which setting to change."""

import socket
import threading
import time
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
    served = serving.serve("127.0.0.1", port, metrics)
    try:
        counting.store_rows("sink", 4, metrics=metrics)
        assert 'kafka_pipeline_store_rows_written_total{stage="sink"} 4.0' in scrape(port).splitlines()
    finally:
        served.close()


def scrape(port: int) -> str:
    with urlopen(serving.address("127.0.0.1", port), timeout=5) as response:
        return response.read().decode()


def test_a_stage_that_ends_waits_for_the_scrape_of_its_final_counts():
    metrics, port = Metrics(), free_port()
    served = serving.serve("127.0.0.1", port, metrics)
    try:
        assert served.final_scrape(most=5) is False  # never scraped: nothing to wait for
        scrape(port)
        scrape(port)
        counting.store_rows("sink", 7, metrics=metrics)
        later = threading.Timer(0.3, scrape, args=(port,))
        later.start()
        assert served.final_scrape(most=5) is True  # the one after its last count
        later.join()
        # A scraper that went away: waited for at most twice the time between its last two scrapes.
        started = time.monotonic()
        assert served.final_scrape(most=5) is False
        assert time.monotonic() - started < 2.5
    finally:
        served.close()


def test_a_port_in_use_names_the_setting():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        said = rf"cannot serve metrics on 127.0.0.1:{port} .*PIPELINE_METRICS_PORT"
        with pytest.raises(ValueError, match=said):
            serving.serve("127.0.0.1", port, Metrics())
