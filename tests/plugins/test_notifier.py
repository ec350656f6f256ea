"""The failure notification's body (a stage's failure, reconcile's discrepancies, a run past its
deadline) and its delivery to a webhook: a real HTTP server on localhost, one that takes the POST
and one that never answers."""

import json
import socket
from types import SimpleNamespace

import pytest
from airflow.sdk.exceptions import AirflowFailException

from kafka_stages.checks import ReconcileFailed
from kafka_stages.notifier import PipelineNotifier, failure_message, overrun_message, post
from tests.harness.http_capture import capturing

RUN = "scheduled__2026-01-05T10:00:00+00:00"


def context(task_id: str, error: BaseException, map_index: int = -1, try_number: int = 3) -> dict:
    ti = SimpleNamespace(dag_id="kafka_pipeline", run_id=RUN, task_id=task_id, map_index=map_index,
                         try_number=try_number)
    return {"ti": ti, "exception": error}


def test_a_stage_failure_names_the_dag_the_run_the_task_and_the_error():
    error = AirflowFailException("sink: cannot use the metrics store sqlite:////o/metrics.db: disk I/O error")
    assert failure_message(context("sink", error)) == {
        "text": f"kafka_pipeline: task sink failed in run {RUN} (try 3)\n"
                "sink: cannot use the metrics store sqlite:////o/metrics.db: disk I/O error",
        "dag_id": "kafka_pipeline", "run_id": RUN, "task_id": "sink", "map_index": -1, "try_number": 3,
        "error": "sink: cannot use the metrics store sqlite:////o/metrics.db: disk I/O error",
        "discrepancies": [],
    }
    # A mapped instance is named with its index.
    assert failure_message(context("process", ValueError("x"), map_index=1))["text"].startswith(
        f"kafka_pipeline: task process[1] failed in run {RUN} (try 3)\n"
    )


def test_a_reconcile_failure_lists_each_discrepancy_and_the_manifest():
    problems = ["process: read != valid + invalid: 10 != 9", "sink: orders in the metrics != orders counted, "
                "all runs: 1910 != 1911"]
    error = ReconcileFailed(f"run {RUN} does not reconcile ...", problems, "/o/runs/kafka_pipeline.x.json")
    assert failure_message(context("reconcile", error, try_number=1)) == {
        "text": f"kafka_pipeline: run {RUN} does not reconcile (2 discrepancies):\n"
                "• process: read != valid + invalid: 10 != 9\n"
                "• sink: orders in the metrics != orders counted, all runs: 1910 != 1911\n"
                "manifest: /o/runs/kafka_pipeline.x.json",
        "dag_id": "kafka_pipeline", "run_id": RUN, "task_id": "reconcile", "map_index": -1, "try_number": 1,
        "error": f"run {RUN} does not reconcile ...", "discrepancies": problems,
    }


def test_a_run_past_its_deadline():
    deadline = {"dag_run": {"dag_id": "kafka_pipeline_stream", "dag_run_id": RUN, "state": "running",
                            "queued_at": "2026-01-05T11:00:02Z"},
                "deadline": {"id": "1", "deadline_time": "2026-01-05T12:05:02Z"}}
    assert overrun_message(deadline) == {
        "text": f"kafka_pipeline_stream: run {RUN} is still running at its deadline 2026-01-05T12:05:02Z "
                "(queued at 2026-01-05T11:00:02Z)",
        "dag_id": "kafka_pipeline_stream", "run_id": RUN, "task_id": None, "map_index": -1,
        "try_number": None, "error": None, "discrepancies": [],
    }


HOOK = "/hooks/T0/B0/secret"


def received(server) -> list[tuple]:
    return [(r.path, r.content_type, r.json()) for r in server.requests]


@pytest.fixture
def receiver():
    with capturing() as server:
        yield server


def test_the_body_reaches_the_webhook_as_json(receiver):
    body = {"text": "kafka_pipeline: task sink failed", "discrepancies": []}
    assert post(receiver.base_url + HOOK, body, timeout=5) is None
    assert received(receiver) == [(HOOK, "application/json", body)]
    receiver.status = 500
    assert post(receiver.base_url + HOOK, body, timeout=5) == "answered HTTP 500"


def test_a_webhook_that_never_answers_costs_the_timeout_and_one_line(monkeypatch, capsys):
    silent = socket.create_server(("127.0.0.1", 0))  # accepts (the backlog), never answers
    port = silent.getsockname()[1]
    url = f"http://127.0.0.1:{port}/hooks/T0/B0/secret"
    monkeypatch.setenv("AIRFLOW_CONN_PIPELINE_ALERTS", json.dumps(
        {"conn_type": "http", "host": url, "extra": {"timeout": 0.3}}
    ))
    try:
        sent = PipelineNotifier().send({"text": "kafka_pipeline: task sink failed\nmore"})
    finally:
        silent.close()
    assert sent is False
    # Airflow's logging (structlog) prints to stdout: one line, the secret path left out.
    (line,) = capsys.readouterr().out.splitlines()
    assert line.split(" ", 1)[1].rsplit(" loc=", 1)[0] == (
        f"[warning  ] notification not sent: the webhook of connection pipeline_alerts "
        f"(http://127.0.0.1:{port}) did not answer within 0.3 s; what it said: kafka_pipeline: task sink "
        "failed [kafka_stages.notifier.PipelineNotifier]"
    )


def test_no_connection_no_notification(monkeypatch, capsys):
    monkeypatch.delenv("AIRFLOW_CONN_PIPELINE_ALERTS", raising=False)
    assert PipelineNotifier().send({"text": "x"}) is False
    assert capsys.readouterr().out == ""


def test_the_uri_form_of_the_connection(monkeypatch, receiver):
    port = receiver.server_address[1]
    monkeypatch.setenv("AIRFLOW_CONN_PIPELINE_ALERTS", f"http://127.0.0.1:{port}/hooks%2FT0")
    assert PipelineNotifier().send({"text": "x"}) is True
    assert received(receiver) == [("/hooks/T0", "application/json", {"text": "x"})]
