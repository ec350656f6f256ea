import copy
import json

import pytest

from include.pipeline import reconcile


def ranges(topic):
    return {"topic": topic, "partitions": {"0": [0, 5]}, "lost": 0}


GOOD = {
    "generate": {"generated": 10},
    "process": {"input": ranges("orders"), "read": 10, "valid": 8, "invalid": 2,
                "written": {"processed-orders": 8, "orders-dlq": 2}},
    "analyze": {"input": ranges("processed-orders"), "read": 8, "counted": 6, "counted_revenue": "60.005",
                "invalid": 0, "late": 1, "duplicate": 1, "written": {"product-metrics": 3, "orders-dlq": 2},
                "ledger_before": {"count": 4, "revenue": "40.00", "revenue_cents": "40.00"},
                "ledger_after": {"count": 10, "revenue": "100.005", "revenue_cents": "100.01"}},
    "sink": {"input": ranges("product-metrics"), "read": 3, "metrics": 5, "order_count": 10,
             "total_revenue": "100.01", "store": "postgresql+psycopg://metrics:***@db:5432/metrics",
             "rows_changed": 3, "export": {"path": "output/metrics.json", "days": 7, "lines": 5}},
}


def broken(path, value):
    results = copy.deepcopy(GOOD)
    *parents, last = path
    target = results
    for key in parents:
        target = target[key]
    target[last] = value
    return results


def test_consistent_counts_reconcile():
    assert reconcile.check(GOOD) == []


@pytest.mark.parametrize(
    ("path", "value", "problem"),
    [
        (("process", "read"), 11, "process: read != valid + invalid: 11 != 10"),
        (("process", "written", "orders-dlq"), 1, "process: dead-lettered != invalid: 1 != 2"),
        (("analyze", "read"), 9, "analyze: read != counted + invalid + late + duplicate: 9 != 8"),
        (("analyze", "counted_revenue"), "60.00", "analyze: revenue added to the ledger != revenue of the orders counted: 60.005 != 60.00"),
        (("sink", "total_revenue"), "100.00", "sink: revenue in the metrics != revenue counted (in cents per window), all runs: 100.00 != 100.01"),
        (("sink", "order_count"), 9, "sink: orders in the metrics != orders counted, all runs: 9 != 10"),
        (("analyze", "input", "lost"), 3, "analyze: records deleted by retention before they were read: 3 != 0"),
    ],
)
def test_each_discrepancy_is_named(path, value, problem):
    assert reconcile.check(broken(path, value)) == [problem]


def test_a_missing_stage_cannot_reconcile():
    assert reconcile.check({**GOOD, "sink": None}) == [
        "no result from sink in this run: reconcile needs every stage to have run"
    ]


def test_a_run_without_generate_reconciles_what_others_produced():
    # kafka_pipeline_on_orders has no generate task.
    results = {stage: result for stage, result in GOOD.items() if stage != "generate"}
    assert reconcile.check(results) == []
    assert reconcile.summarize(results)["generated"] == 0
    assert reconcile.summarize(results)["processed"] == 10


def test_reconcile_writes_the_manifest_and_fails_loudly(tmp_path, monkeypatch):
    monkeypatch.setenv("PIPELINE_OUTPUT_DIR", str(tmp_path))
    manifest = reconcile.reconcile("manual__2026-01-05T10:00:00+00:00", GOOD)
    assert manifest["reconciled"] is True
    with pytest.raises(reconcile.ReconciliationError, match="sink: orders in the metrics"):
        reconcile.reconcile("scheduled__2026-01-05T11:00:00+00:00", broken(("sink", "order_count"), 9))
    written = sorted(p.name for p in (tmp_path / "runs").iterdir())
    assert written == ["manual__2026-01-05T10_00_00_00_00.json", "scheduled__2026-01-05T11_00_00_00_00.json"]
    failed = json.loads((tmp_path / "runs" / written[1]).read_text())
    assert (failed["reconciled"], failed["summary"]["counted"]) == (False, 6)
    assert (failed["summary"]["store"], failed["summary"]["metrics_rows"], failed["summary"]["rows_changed"]) == (
        "postgresql+psycopg://metrics:***@db:5432/metrics", 5, 3,
    )


def test_the_summary_names_the_store_and_the_export():
    text = reconcile.render({
        "run_id": "r", "reconciled": True, "problems": [], "summary": reconcile.summarize(GOOD),
    })
    assert "  metrics          : 5 rows in postgresql+psycopg://metrics:***@db:5432/metrics (3 changed by this run)" in text
    assert "  metrics.json     : 5 lines, the last 7 days of windows, in output/metrics.json" in text
