"""A bounded task's push: none without PIPELINE_PUSHGATEWAY_URL; to a gateway (a real HTTP server
of the test's), the task's group with the families that have samples; a gateway that refuses, does
not answer or cannot be a URL: one line, no exception."""

import logging
import socket
import time

import pytest
from prometheus_client.parser import text_string_to_metric_families

from include.pipeline.metrics import counting, push
from include.pipeline.metrics.catalogue import Metrics
from tests.harness.http_capture import capturing


@pytest.fixture
def metrics():
    found = Metrics()
    counting.batch("process", 0.2, ("orders", 7), ("processed-orders", 5), {"empty": 2}, metrics=found)
    return found


@pytest.fixture
def gateway():
    """A gateway's stand-in that keeps what it is pushed (a real HTTP server) and answers 200."""
    with capturing() as server:
        yield server.base_url, server.requests


def refused_port() -> int:
    """A port nothing listens on: bound, then let go."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_unset_no_push_and_nothing_said(metrics, monkeypatch, caplog):
    monkeypatch.delenv("PIPELINE_PUSHGATEWAY_URL", raising=False)
    with caplog.at_level(logging.DEBUG):
        assert push.push("kafka_pipeline", "process", 0, "process", metrics) is False
    assert caplog.records == []


def test_a_push_is_the_tasks_group_with_the_families_that_have_samples(metrics, gateway, monkeypatch):
    url, pushes = gateway
    monkeypatch.setenv("PIPELINE_PUSHGATEWAY_URL", url)
    assert push.push("kafka_pipeline", "process", -1, "process", metrics) is True
    [(method, path, _, pushed)] = pushes
    body = pushed.decode()
    group = "/metrics/job/kafka_pipeline/dag_id/kafka_pipeline/map_index/-1/task_id/process"
    assert (method, path) == ("POST", group)
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(body) for s in family.samples
    }
    assert samples[("kafka_pipeline_records_read_total", (("stage", "process"), ("topic", "orders")))] == 7
    assert samples[("kafka_pipeline_dead_letters_total", (("reason", "empty"), ("stage", "process")))] == 2
    names = {name for name, _ in samples}
    # No reconcile ran here: its last success must not replace the one an earlier push left.
    assert "kafka_pipeline_reconcile_last_success_timestamp_seconds" not in body
    assert "kafka_pipeline_kafka_unavailable_seconds_total" not in names  # no stage started here


def test_a_task_pushes_its_own_samples_only_of_a_process_that_ran_others(gateway, monkeypatch):
    """`airflow dags test` runs every task in one process: each pushes its stage's, reconcile its run's."""
    url, pushes = gateway
    monkeypatch.setenv("PIPELINE_PUSHGATEWAY_URL", url)
    metrics = Metrics()
    counting.batch("generate", 0.1, None, ("orders", 9), {}, metrics=metrics)
    counting.batch("process", 0.2, ("orders", 9), ("processed-orders", 8), {"empty": 1}, metrics=metrics)
    metrics.end_to_end_latency.observe({0.2: 3})
    metrics.reconcile_discrepancies.labels(dag_id="kafka_pipeline").set(0)
    metrics.reconcile_discrepancies.labels(dag_id="kafka_pipeline_on_orders").set(2)
    for task_id, stage in (("process", "process"), ("sink", "sink"), ("reconcile", None)):
        assert push.push("kafka_pipeline", task_id, -1, stage, metrics) is True
    pushed = {
        path.rsplit("/", 1)[1]: {
            (s.name, tuple(sorted(s.labels.items())))
            for family in text_string_to_metric_families(body.decode()) for s in family.samples
        }
        for _, path, _, body in pushes
    }
    read = ("kafka_pipeline_records_read_total", (("stage", "process"), ("topic", "orders")))
    assert read in pushed["process"]
    assert all(dict(labels)["stage"] == "process" for _, labels in pushed["process"])
    assert {name for name, _ in pushed["sink"]} <= {
        "kafka_pipeline_end_to_end_latency_seconds_bucket", "kafka_pipeline_end_to_end_latency_seconds_count",
        "kafka_pipeline_end_to_end_latency_seconds_sum",
    }
    assert pushed["sink"]
    discrepancies = ("kafka_pipeline_reconcile_discrepancies", (("dag_id", "kafka_pipeline"),))
    assert pushed["reconcile"] == {discrepancies}


@pytest.mark.parametrize("url", [
    "http://127.0.0.1:{refused}", "127.0.0.1:{refused}", "http://[::1", "http://127.0.0.1:nan", "not a url",
])
def test_a_gateway_that_refuses_or_a_malformed_url_is_one_line_not_a_raise(metrics, monkeypatch, caplog, url):
    monkeypatch.setenv("PIPELINE_PUSHGATEWAY_URL", url.format(refused=refused_port()))
    with caplog.at_level(logging.DEBUG):
        assert push.push("kafka_pipeline", "process", 0, "process", metrics) is False
    [line] = caplog.records
    assert line.levelno == logging.WARNING and line.exc_info is None
    assert "metrics not pushed to the Pushgateway" in line.getMessage()
    assert "(PIPELINE_PUSHGATEWAY_URL)" in line.getMessage()


def test_a_gateway_that_does_not_answer_holds_the_task_for_the_timeout_only(metrics, monkeypatch, caplog):
    with socket.socket() as silent:  # listens (the kernel accepts connections), never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        monkeypatch.setenv("PIPELINE_PUSHGATEWAY_URL", f"http://127.0.0.1:{silent.getsockname()[1]}")
        started = time.monotonic()
        assert push.push("kafka_pipeline", "process", 0, "process", metrics) is False
        took = time.monotonic() - started
    assert push.TIMEOUT <= took < push.TIMEOUT + 1
    [line] = caplog.records
    assert "timed out" in line.getMessage() and line.exc_info is None
