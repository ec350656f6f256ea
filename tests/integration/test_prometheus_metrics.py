"""The stages' Prometheus metrics against a real broker: the tasks run over a known input, and
what they counted (read back from the process's registry, the tasks running in this process)
equals what the oracle makes of the input and what the topics and the store hold. A task pushes
its metrics to a gateway (an HTTP server of the test's) in its group; one whose gateway refuses
says so in one line and succeeds."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from urllib.request import urlopen

import pytest
from prometheus_client.parser import text_string_to_metric_families

from include.pipeline.metrics.catalogue import METRICS
from tests.harness.expected import assert_as_the_oracle_says, oracle_of
from tests.harness.factories import order_value
from tests.harness.http_capture import capturing
from tests.harness.observability import free_ports
from tests.harness.pipeline import ROOT
from tests.oracle import partition_of

pytestmark = pytest.mark.integration

PARTITIONS = range(6)
VALID = [
    (f"m{i}".encode(), order_value(f"m{i}", f"prod-{1 + i % 3}", f"{i}.25", f"2026-01-05T10:0{i % 4}:05Z"))
    for i in range(12)
]
DUPLICATES = [VALID[0], VALID[5], VALID[5]]  # m0 once more, m5 twice more: analyze's duplicates
INVALID = [
    (b"k-text", b"not json at all"), (b"k-empty", b""), (b"k-array", b"[1, 2]"),
    (b"k-zero", order_value("z", "prod-1", "0", "2026-01-05T10:00:00Z")),
    (b"k-product", order_value("p", "prod-9", "1.00", "2026-01-05T10:00:00Z")),
    (b"k-brace", b"{"),
]
ANALYZE_REASONS = {"duplicate", "late"}
STAGES = ("process", "analyze", "sink")  # continuous mode's processes without a generator
READ, DEAD = "kafka_pipeline_records_read_total", "kafka_pipeline_dead_letters_total"
LATENCY_COUNT = ("kafka_pipeline_end_to_end_latency_seconds_count", ())


def stage_of(reason: str) -> str:
    """The stage that dead-letters for ``reason``."""
    return "analyze" if reason in ANALYZE_REASONS else "process"


def dead_letters(expected) -> Counter:
    """The oracle's dead letters by reason."""
    dead = Counter()
    for (reason, _), n in expected.dead_letters.items():
        dead[reason] += n
    return dead


def samples() -> dict[tuple[str, tuple], float]:
    """Every sample of the process's metrics now, by name and labels."""
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in METRICS.registry.collect() for sample in family.samples
    }


@pytest.fixture
def gateway():
    """A gateway's stand-in that keeps what it is pushed (a real HTTP server) and answers 200."""
    with capturing() as server:
        yield server.base_url, server.requests


def test_the_counters_are_what_the_stages_read_wrote_and_dead_lettered(pipeline, gateway):
    url, pushes = gateway
    pipeline.task("create_topics")
    values = VALID + DUPLICATES + INVALID
    pipeline.produce("orders", values)
    expected = oracle_of([value for _, value in values])
    before = samples()

    def grew(name, **labels):
        key = (name, tuple(sorted(labels.items())))
        return samples().get(key, 0) - before.get(key, 0)

    pipeline.env["PIPELINE_PUSHGATEWAY_URL"] = url
    pipeline.task("process")
    with socket.socket() as sock:  # a port nothing listens on: a gateway that refuses
        sock.bind(("127.0.0.1", 0))
        pipeline.env["PIPELINE_PUSHGATEWAY_URL"] = f"http://127.0.0.1:{sock.getsockname()[1]}"
    analyzed = pipeline.task("analyze")
    del pipeline.env["PIPELINE_PUSHGATEWAY_URL"]
    sunk = pipeline.task("sink")
    assert_as_the_oracle_says(pipeline, expected)

    dead = dead_letters(expected)
    partials = len(pipeline.read("product-metrics"))
    read, written = READ, "kafka_pipeline_records_written_total"
    assert grew(read, stage="process", topic="orders") == len(values) == 21
    assert grew(written, stage="process", topic="processed-orders") == len(expected.valid) == 15
    assert grew(read, stage="analyze", topic="processed-orders") == len(expected.valid)
    assert grew("kafka_pipeline_orders_counted_total", stage="analyze") == len(expected.counted) == 12
    assert grew(written, stage="analyze", topic="product-metrics") == partials
    assert grew(read, stage="sink", topic="product-metrics") == partials
    for reason, n in dead.items():
        assert grew(DEAD, stage=stage_of(reason), reason=reason) == n, reason
    assert sum(dead.values()) == 3 + len(INVALID)

    for stage in ("process", "analyze", "sink"):
        batches = grew("kafka_pipeline_batch_seconds_count", stage=stage)
        assert batches >= 1
        if stage != "sink":  # the sink's batches commit to the store, not in Kafka transactions
            assert grew("kafka_pipeline_transactions_total", stage=stage, outcome="committed") == batches
            assert grew("kafka_pipeline_transactions_total", stage=stage, outcome="aborted") == 0
    # analyze's partials came in one transaction: the sink reads them as one batch, each row written once.
    assert grew("kafka_pipeline_batch_seconds_count", stage="sink") == 1
    assert grew("kafka_pipeline_store_rows_written_total", stage="sink") == len(expected.metrics())

    now = samples()
    for stage, topic in (("process", "orders"), ("analyze", "processed-orders"), ("sink", "product-metrics")):
        for p in PARTITIONS:  # each read to its end
            labels = (("partition", str(p)), ("stage", stage), ("topic", topic))
            assert now[("kafka_pipeline_consumer_lag_records", labels)] == 0, labels
    windows = {(partition_of(o.order_id, 6), o.window_start, o.product_id) for o in expected.counted}
    assert now[("kafka_pipeline_open_windows", (("stage", "analyze"),))] == len(windows)
    assert now[("kafka_pipeline_remembered_order_ids", (("stage", "analyze"),))] == len(expected.counted)

    # process pushed its metrics, in its group (tasks test runs a mapped stage as instance 0).
    [(method, path, _, body)] = pushes
    group = "/metrics/job/kafka_pipeline/dag_id/kafka_pipeline/map_index/0/task_id/process"
    assert (method, path) == ("POST", group)
    pushed = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(body.decode()) for s in family.samples
    }
    key = (read, (("stage", "process"), ("topic", "orders")))
    assert pushed[key] == before.get(key, 0) + len(values)
    # analyze's gateway refused: one line, and the task succeeded; sink had none configured.
    assert analyzed.output.count("metrics not pushed to the Pushgateway") == 1
    assert "metrics not pushed" not in sunk.output


def scrape(address: str) -> dict[tuple[str, tuple], float]:
    with urlopen(address, timeout=5) as response:
        text = response.read().decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text) for s in family.samples
    }


def test_continuous_modes_stage_processes_serve_what_they_counted(pipeline):
    base = free_ports(3)
    pipeline.env["PIPELINE_METRICS_PORT"] = str(base)
    command = [sys.executable, "-m", "include.pipeline.stream", "--rate", "0", "--seconds", "120"]
    stream = subprocess.Popen(
        command, env=pipeline.env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL, text=True, start_new_session=True,
    )
    try:
        for line in stream.stdout:
            if "metrics (PIPELINE_METRICS_PORT): " in line:
                break
        else:
            pytest.fail(f"the stream ended without saying where its metrics are (exit {stream.wait()})")
        addresses = dict(part.split(" ") for part in line.strip().split(": ", 1)[1].split(", "))
        assert addresses == {
            stage: f"http://127.0.0.1:{base + index}/metrics" for index, stage in enumerate(STAGES)
        }
        # Produced now, after the stream's start: each valid order's latency is measured.
        values = VALID + DUPLICATES + INVALID
        pipeline.produce("orders", values)
        expected = oracle_of([value for _, value in values])
        deadline = time.monotonic() + 60
        while not _settled(scraped := {stage: _scraped(address) for stage, address in addresses.items()},
                           len(values), len(expected.valid), len(pipeline.read("product-metrics")),
                           len(expected.counted)):
            assert time.monotonic() < deadline, f"the stages did not get through the input: {scraped}"
            time.sleep(0.5)
    finally:
        os.killpg(stream.pid, signal.SIGINT)
        stream.wait(90)
    process, analyze, sink = (scraped[stage] for stage in STAGES)
    assert process[(READ, (("stage", "process"), ("topic", "orders")))] == len(values) == 21
    for reason, n in dead_letters(expected).items():
        stage = stage_of(reason)
        assert scraped[stage][(DEAD, (("reason", reason), ("stage", stage)))] == n, reason
    assert analyze[(READ, (("stage", "analyze"), ("topic", "processed-orders")))] == len(expected.valid)
    assert analyze[("kafka_pipeline_orders_counted_total", (("stage", "analyze"),))] == len(expected.counted)
    assert sink[LATENCY_COUNT] == len(expected.counted) == 12  # each order measured once
    assert sink[("kafka_pipeline_end_to_end_latency_seconds_bucket", (("le", "60.0"),))] == 12
    partials = len(pipeline.read("product-metrics"))
    assert sink[(READ, (("stage", "sink"), ("topic", "product-metrics")))] == partials
    assert len(lags(sink)) == 6  # and each 0 (_settled)


def lags(scraped: dict) -> list[float]:
    return [value for (name, _), value in scraped.items() if name == "kafka_pipeline_consumer_lag_records"]


def _settled(scraped: dict[str, dict], orders: int, valid: int, partials: int, counted: int) -> bool:
    """Whether each stage has read its whole input (analyze's written partials too, past their
    commit markers) and the sink has measured the orders of what it read; scraped from the
    stages in turn, analyze's partials read from their topic after."""
    return bool(
        scraped["process"].get((READ, (("stage", "process"), ("topic", "orders"))), 0) >= orders
        and scraped["analyze"].get((READ, (("stage", "analyze"), ("topic", "processed-orders"))), 0) >= valid
        and scraped["sink"].get((READ, (("stage", "sink"), ("topic", "product-metrics"))), 0) >= partials > 0
        and scraped["sink"].get(LATENCY_COUNT, 0) >= counted and not any(lags(scraped["sink"]))
    )


def _scraped(address: str) -> dict[tuple[str, tuple], float]:
    """What ``address`` serves; nothing while its process is still starting."""
    try:
        return scrape(address)
    except OSError:
        return {}
