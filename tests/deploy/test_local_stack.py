"""The local stack (scripts/prometheus/local.py) through its real servers: Debian's Prometheus,
Pushgateway and Alertmanager on free ports, a stream target and a webhook receiver served here.

Prometheus loads and evaluates every rule of rules.yml, scrapes a stream process' /metrics, sees
what a bounded task pushes, and a pushed failed reconcile reaches the webhook as
KafkaPipelineReconcileFailed through Alertmanager, then its resolution when a passing run pushes
0. The stack scrapes and evaluates every second and its rules' `for` are cut to 1 s
(``longest_for``; with rules.yml's 1 m a failed reconcile pages within about 1 m 30 s of its push:
a 15 s scrape, the minute, a 15 s evaluation, Alertmanager's 30 s group wait): the alert arrives
within seconds, bounded here by 30 s. Starting the stack takes under a second; the module ~10 s.
"""

from __future__ import annotations

import shutil
from typing import Iterator

import pytest
import yaml
from prometheus_client import CollectorRegistry, Counter, Gauge, pushadd_to_gateway, start_http_server

from scripts.kafka.local import free_port
from scripts.prometheus.local import COMPONENTS, RULES, Stack, throwaway_stack
from tests.harness.http_capture import Capture, capturing
from tests.harness.observability import api, next_alerts, series, until

pytestmark = pytest.mark.skipif(
    any(shutil.which(component.binary) is None for component in COMPONENTS),
    reason="prometheus, prometheus-pushgateway or prometheus-alertmanager not found: `apt-get install "
           "prometheus prometheus-pushgateway prometheus-alertmanager` (.ci/run installs them)",
)

ALERT_BOUND = 30  # seconds from a push to its notification at the webhook (firing, then resolved: ~4 s)
DAG_ID = "kafka_pipeline_stack_test"


@pytest.fixture(scope="module")
def receiver() -> Iterator[Capture]:
    with capturing() as server:
        yield server


@pytest.fixture(scope="module")
def stream_target() -> Iterator[str]:
    """A stream process' /metrics as the contract names it: process read 42 records of orders."""
    registry = CollectorRegistry()
    read = Counter("kafka_pipeline_records_read_total", "records a stage read", ["stage", "topic"],
                   registry=registry)
    read.labels(stage="process", topic="orders").inc(42)
    port = free_port()
    server, thread = start_http_server(port, addr="127.0.0.1", registry=registry)
    yield f"127.0.0.1:{port}"
    server.shutdown()
    server.server_close()
    thread.join()


@pytest.fixture(scope="module")
def stack(receiver, stream_target) -> Iterator[Stack]:
    with throwaway_stack([(stream_target, "process-0")], webhook_url=f"{receiver.base_url}/alerts",
                         interval=1, longest_for=1) as started:
        yield started


def _push(stack: Stack, discrepancies: int) -> None:
    """What a DAG's reconcile task pushes (the contract's job and grouping key)."""
    registry = CollectorRegistry()
    gauge = Gauge("kafka_pipeline_reconcile_discrepancies", "discrepancies the last reconcile found",
                  ["dag_id"], registry=registry)
    gauge.labels(dag_id=DAG_ID).set(discrepancies)
    pushadd_to_gateway(f"127.0.0.1:{stack.pushgateway.port}", job="kafka_pipeline", registry=registry,
                       grouping_key={"dag_id": DAG_ID, "task_id": "reconcile", "map_index": "-1"})


def test_prometheus_loads_and_evaluates_every_rule_of_rules_yml(stack):
    groups = yaml.safe_load(RULES.read_text())["groups"]
    names = [rule["alert"] for group in groups for rule in group["rules"]]

    def evaluated() -> list[dict]:
        rules = [rule for group in api(stack, "rules")["groups"] for rule in group["rules"]]
        return rules if all(rule["health"] == "ok" for rule in rules) else []

    rules = until("every rule evaluated without an error", evaluated)
    assert [(rule["name"], rule["type"], rule["duration"]) for rule in rules] == [
        (name, "alerting", 1) for name in names
    ]


def test_prometheus_scrapes_a_stream_process(stack, stream_target):
    query = 'kafka_pipeline_records_read_total{job="kafka_pipeline_stream"}'
    found = until("the stream target scraped", lambda: series(stack, query))
    assert found == [({"__name__": "kafka_pipeline_records_read_total", "job": "kafka_pipeline_stream",
                       "instance": stream_target, "stream_process": "process-0", "stage": "process",
                       "topic": "orders"}, "42")]
    # Up, so KafkaPipelineStageDown has nothing to say.
    assert series(stack, 'up{job="kafka_pipeline_stream"}')[0][1] == "1"


def test_a_pushed_failed_reconcile_reaches_prometheus_and_the_webhook_then_its_resolution(stack, receiver):
    _push(stack, 3)
    query = f'kafka_pipeline_reconcile_discrepancies{{dag_id="{DAG_ID}"}}'
    found = until("the pushed gauge scraped", lambda: series(stack, query))
    # The pushed labels, kept (honor_labels): the bounded tasks' job and grouping key, no instance.
    assert found == [({"__name__": "kafka_pipeline_reconcile_discrepancies", "job": "kafka_pipeline",
                       "dag_id": DAG_ID, "task_id": "reconcile", "map_index": "-1"}, "3")]

    (alert,) = next_alerts(receiver, "KafkaPipelineReconcileFailed", "firing", ALERT_BOUND)
    assert alert["labels"] == {"alertname": "KafkaPipelineReconcileFailed", "severity": "critical",
                               "job": "kafka_pipeline", "dag_id": DAG_ID}
    assert alert["annotations"]["summary"] == f"{DAG_ID}: the last reconcile found 3 discrepancies"

    _push(stack, 0)  # the next run reconciles
    (resolved,) = next_alerts(receiver, "KafkaPipelineReconcileFailed", "resolved", ALERT_BOUND)
    assert resolved["labels"] == alert["labels"]
