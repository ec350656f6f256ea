"""The stages' Prometheus metrics against a real broker: the tasks run over a known input, and
what they counted (read back from the process's registry, the tasks running in this process)
equals what the oracle makes of the input and what the topics and the store hold. A task pushes
its metrics to a gateway (an HTTP server of the test's) in its group; one whose gateway refuses
says so in one line and succeeds."""

from __future__ import annotations

import socket
import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from prometheus_client.parser import text_string_to_metric_families

from include.pipeline.metrics.catalogue import METRICS
from tests.harness.expected import assert_as_the_oracle_says, oracle_of
from tests.harness.factories import order_value
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


def samples() -> dict[tuple[str, tuple], float]:
    """Every sample of the process's metrics now, by name and labels."""
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in METRICS.registry.collect() for sample in family.samples
    }


class Gateway(BaseHTTPRequestHandler):
    """What a Pushgateway is sent: each request's method, path and body; 200 to each."""

    pushes: list = []

    def do_POST(self):
        self.pushes.append((self.command, self.path, self.rfile.read(int(self.headers["Content-Length"]))))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def gateway():
    Gateway.pushes = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), Gateway)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}", Gateway.pushes
    server.shutdown()
    server.server_close()


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

    dead = Counter()
    for (reason, _), n in expected.dead_letters.items():
        dead[reason] += n
    partials = len(pipeline.read("product-metrics"))
    read, written = "kafka_pipeline_records_read_total", "kafka_pipeline_records_written_total"
    assert grew(read, stage="process", topic="orders") == len(values) == 21
    assert grew(written, stage="process", topic="processed-orders") == len(expected.valid) == 15
    assert grew(read, stage="analyze", topic="processed-orders") == len(expected.valid)
    assert grew("kafka_pipeline_orders_counted_total", stage="analyze") == len(expected.counted) == 12
    assert grew(written, stage="analyze", topic="product-metrics") == partials
    assert grew(read, stage="sink", topic="product-metrics") == partials
    for reason, n in dead.items():
        stage = "analyze" if reason in ANALYZE_REASONS else "process"
        assert grew("kafka_pipeline_dead_letters_total", stage=stage, reason=reason) == n, reason
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
    [(method, path, body)] = pushes
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
