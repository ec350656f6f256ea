"""The pipeline under its observability stack, all real: continuous mode (as `make stream` runs
it) and the DAGs' bounded tasks, with Debian's Prometheus, Pushgateway and Alertmanager
(scripts/prometheus/local.py) scraping the stream and the Pushgateway every second, and
Alertmanager posting to a webhook receiver served here.

- PromQL through Prometheus' HTTP API: once the stream has ended by itself (the generator after
  its seconds, then each stage told to finish), the orders generated equal what the generator
  committed to `orders`, and the orders counted the store's, to the order: a stage that ends
  waits for the scrape of its final counts.
- The broker stopped under the stream fires KafkaPipelineKafkaUnavailable at the receiver within
  OUTAGE_ALERT_BOUND (35 s measured): a stage says Kafka does not answer once a call has waited
  5 s (OUTAGE_NOTICE_SECONDS) past the client's own timeouts, the rate over a minute exceeds 0.5
  two scrapes later, then the rule's `for` (cut here to FOR_SECONDS, 1 m in rules.yml) and
  Alertmanager's group wait (1 s here, 30 s for users). With rules.yml's own figures a user is
  paged within about 2 minutes of an outage.
- A bounded run pushes its tasks' metrics, which Prometheus shows with the DAG, task and map index
  as labels; a run that does not reconcile (its stages marked success, not run) fires
  KafkaPipelineReconcileFailed for its DAG.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from contextlib import closing

import pytest

from include.pipeline.metrics.catalogue import METRICS
from scripts.prometheus.configs import stream_targets
from scripts.prometheus.local import COMPONENTS, throwaway_stack
from tests.harness import in_process
from tests.harness.faults import Watch, end_of
from tests.harness.http_capture import capturing
from tests.harness.observability import free_ports, next_alerts, series, until
from tests.harness.pipeline import ROOT

pytestmark = pytest.mark.skipif(
    any(shutil.which(component.binary) is None for component in COMPONENTS),
    reason="prometheus, prometheus-pushgateway or prometheus-alertmanager not found: `apt-get install "
           "prometheus prometheus-pushgateway prometheus-alertmanager` (.ci/run installs them)",
)

FOR_SECONDS = 5  # every rule's `for`, cut from its minutes
OUTAGE_ALERT_BOUND = 90  # s from the broker's stop to the alert at the receiver (measured: 35 s)
RATE = 200  # orders a second
GENERATE_SECONDS = 45
DATE = "2026-01-05T10:00:00+00:00"


def value(stack, query: str) -> float:
    """The one series' value of an instant query (0 when there is none)."""
    found = series(stack, query)
    assert len(found) <= 1, found
    return float(found[0][1]) if found else 0.0


def test_prometheus_and_alertmanager_see_the_stream_and_the_bounded_runs(pipeline, tmp_path):
    base = free_ports(4)
    targets = stream_targets("127.0.0.1", base, 1)
    with capturing() as receiver, throwaway_stack(
        targets, webhook_url=f"{receiver.base_url}/alerts", interval=1, longest_for=FOR_SECONDS,
    ) as stack:
        env = {**pipeline.env, "PIPELINE_METRICS_PORT": str(base)}
        command = [sys.executable, "-m", "include.pipeline.stream", "--rate", str(RATE), "--workers", "1",
                   "--generate-seconds", str(GENERATE_SECONDS), "--status-seconds", "3600",
                   "--seconds", "600"]
        stream_log = tmp_path / "stream.log"
        log = stream_log.open("w")
        stream = subprocess.Popen(command, env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                                  stdin=subprocess.DEVNULL, start_new_session=True)
        try:
            until("every stream process scraped", lambda: [v for _, v in series(
                stack, 'up{job="kafka_pipeline_stream"}')] == ["1"] * 4, timeout=90)
            until("orders counted", lambda: value(stack, "sum(kafka_pipeline_orders_counted_total)") > 0,
                  timeout=90)

            pipeline.broker("down")
            stopped = time.monotonic()
            try:
                (alert, *_) = next_alerts(receiver,
                    "KafkaPipelineKafkaUnavailable", "firing", OUTAGE_ALERT_BOUND
                )
                print(f"KafkaPipelineKafkaUnavailable at the receiver {time.monotonic() - stopped:.1f} s "
                      f"after the broker stopped")
            finally:
                pipeline.broker("up")
            assert alert["labels"]["severity"] == "critical"
            assert alert["labels"]["stage"] in {"generate", "process", "analyze", "sink"}

            # The generator ends after GENERATE_SECONDS; then each stage, its input complete, is told
            # to finish, and the stream ends by itself once all have: each stage's final counts
            # scraped before it went.
            assert stream.wait(300) == 0, stream_log.read_text()[-3000:]
        finally:
            if stream.poll() is None:
                os.killpg(stream.pid, signal.SIGINT)
                stream.wait(90)
            log.close()
        with closing(Watch(pipeline)) as watch:
            for stage in ("process", "analyze", "sink"):
                assert watch.committed(stage) == end_of(pipeline, stage), stage
        final = "sum(last_over_time({}[10m]))"
        stored = sum(row["order_count"] for row in pipeline.store_rows())
        assert stored > 0
        until("the orders counted, in Prometheus", lambda: value(
            stack, final.format("kafka_pipeline_orders_counted_total")) == stored)
        generated = 'kafka_pipeline_records_written_total{job="kafka_pipeline_stream", stage="generate"}'
        assert value(stack, final.format(generated)) == len(pipeline.read("orders"))

        # A bounded run pushes its tasks' metrics; one that does not reconcile fires its alert.
        pushed = {**pipeline.env, "PIPELINE_PUSHGATEWAY_URL": f"http://127.0.0.1:{stack.pushgateway.port}"}
        read_before = len(pipeline.read("orders"))
        ran = time.time()
        # The DAG runs in this process, whose counters other tests' runs may have counted into.
        counted_before = METRICS.registry.get_sample_value(
            "kafka_pipeline_records_read_total", {"stage": "process", "topic": "orders"}) or 0
        run = in_process.run_dag(pushed, "kafka_pipeline", DATE, {"orders": 2000, "seed": 7})
        assert run.ok, run.output[-3000:]
        process = 'kafka_pipeline_records_read_total{job="kafka_pipeline", dag_id="kafka_pipeline", ' \
                  'task_id="process", map_index="0", stage="process", topic="orders"}'
        # Each task pushes as it ends: a scrape between process's push and reconcile's has the one.
        until("process's pushed count", lambda: value(stack, process) == counted_before + 2000)
        last_success = 'kafka_pipeline_reconcile_last_success_timestamp_seconds{dag_id="kafka_pipeline"}'
        until("reconcile's pushed success", lambda: value(stack, last_success) > ran)
        assert len(pipeline.read("orders")) - read_before == 2000
        discrepancies = series(stack, 'kafka_pipeline_reconcile_discrepancies{dag_id="kafka_pipeline"}')
        assert [found for _, found in discrepancies] == ["0"], discrepancies

        failed = in_process.run_dag(
            pushed, "kafka_pipeline", "2026-01-05T11:00:00+00:00", {},
            mark_success="^(create_topics|generate|wait_for_orders|process|analyze|sink)$",
        )
        assert failed.state == "failed"
        (alert, *_) = next_alerts(receiver, "KafkaPipelineReconcileFailed", "firing", 30)
        assert alert["labels"]["dag_id"] == "kafka_pipeline" and alert["labels"]["severity"] == "critical"
