import copy
import json
import os
from decimal import Decimal

import pytest

from include.pipeline.domain.windows import Ledger
from include.pipeline.run import reconcile


def ranges(topic):
    return {"topic": topic, "partitions": {"0": [0, 5], "1": [2, 7]}, "lost": 0, "held": {}}


# A run's stage results as their tasks push them (results.xcom): every field, none derived.
GOOD = {
    "generate": {"generated": 10, "seconds": 0.5, "written_upto": {"orders": {"0": 5, "1": 7}}},
    "process": {"input": ranges("orders"), "read": 10, "reasons": {"unknown_product": 1, "invalid_json": 1},
                "written": {"processed-orders": 8, "orders-dlq": 2},
                "written_upto": {"orders-dlq": {"1": 30}, "processed-orders": {"0": 5, "1": 7}}, "valid": 8},
    "analyze": {"input": ranges("processed-orders"), "read": 8, "reasons": {"late": 1, "duplicate": 1},
                "written": {"product-metrics": 3, "orders-dlq": 2},
                "written_upto": {
                    "analyze-state": {"0": 9}, "orders-dlq": {"1": 32}, "product-metrics": {"1": 7},
                },
                "counted": 6, "counted_revenue": "60.005",
                "ledger_before": {"count": 4, "revenue": "40.00"},
                "ledger_after": {"count": 10, "revenue": "100.005"},
                "open_windows": 3, "remembered_order_ids": 10},
    "sink": {"input": ranges("product-metrics"), "read": 3,
             "store": "postgresql+psycopg://metrics:***@db:5432/metrics", "imported": 0, "rows_inserted": 2,
             "rows_updated": 1, "metrics": 5, "order_count": 10, "total_revenue": "100.01",
             "counted_revenue": "100.005", "ledger": None,
             "export": {"path": "output/metrics.json", "days": 7, "lines": 5}},
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
    assert reconcile.check(GOOD) == []  # a sink without a ledger kept: compared with analyze's
    assert reconcile.check(broken(("sink", "ledger"), {"count": 10, "revenue": "100.005"})) == []


def test_the_rows_totals_in_cents_are_not_what_is_compared():
    # Each window rounds once, so the rows' totals in cents need not add up to the exact revenue
    # counted (100.01 here, of 100.005): the partials' exact sum does.
    assert reconcile.check(broken(("sink", "total_revenue"), "100.02")) == []


@pytest.mark.parametrize(
    ("path", "value", "problem"),
    [
        (("process", "read"), 11, "process: read != valid + invalid: 11 != 10"),
        (("process", "written", "orders-dlq"), 1, "process: dead-lettered != invalid: 1 != 2"),
        (("analyze", "read"), 9, "analyze: read != counted + invalid + late + duplicate: 9 != 8"),
        (("analyze", "counted_revenue"), "60.00",
         "analyze: revenue added to the ledger != revenue of the orders counted: 60.005 != 60.00"),
        (("sink", "counted_revenue"), "100.01",
         "sink: revenue in the metrics (exact) != revenue counted, all runs: 100.01 != 100.005"),
        (("sink", "order_count"), 9, "sink: orders in the metrics != orders counted, all runs: 9 != 10"),
        (("analyze", "input", "lost"), 3,
         "analyze: records deleted by retention before they were read: 3 != 0"),
    ],
)
def test_each_discrepancy_is_named(path, value, problem):
    assert reconcile.check(broken(path, value)) == [problem]


# Another run's stages ran between this run's analyze and its sink (the sink failed and waited for its
# retry): 5 more orders, 50.00 more revenue, in the store and in the ledger the sink kept with its totals.
AFTER_ANOTHER_RUN = {
    "order_count": 15, "total_revenue": "150.01", "counted_revenue": "150.005",
    "ledger": {"count": 15, "revenue": "150.005"},
}


def test_a_sink_after_another_runs_stages_reconciles_with_the_ledger_it_kept():
    assert reconcile.check(broken(("sink",), {**GOOD["sink"], **AFTER_ANOTHER_RUN})) == []
    # Compared with this run's analyze ledger (what it falls back to without one: an older store),
    # the same totals would not.
    assert reconcile.check(broken(("sink",), {**GOOD["sink"], **AFTER_ANOTHER_RUN, "ledger": None})) == [
        "sink: orders in the metrics != orders counted, all runs: 15 != 10",
        "sink: revenue in the metrics (exact) != revenue counted, all runs: 150.005 != 100.005",
    ]


@pytest.mark.parametrize(
    ("field", "value", "problem"),
    [
        ("order_count", 14, "sink: orders in the metrics != orders counted, all runs: 14 != 15"),
        ("counted_revenue", "150.004",
         "sink: revenue in the metrics (exact) != revenue counted, all runs: 150.004 != 150.005"),
    ],
)
def test_totals_that_differ_from_the_ledger_kept_with_them_are_a_discrepancy(field, value, problem):
    results = broken(("sink",), {**GOOD["sink"], **AFTER_ANOTHER_RUN, field: value})
    assert reconcile.check(results) == [problem]


def test_a_store_whose_ledger_is_behind_this_runs_analyze_misses_its_records():
    # The sink applied none of what analyze wrote (product-metrics lost it): totals and the ledger
    # kept with them agree, and are those before this run.
    before = {"order_count": 4, "total_revenue": "40.00", "counted_revenue": "40.00",
              "ledger": {"count": 4, "revenue": "40.00"}}
    assert reconcile.check(broken(("sink",), {**GOOD["sink"], **before})) == [
        "sink: the store's ledger is behind this run's analyze (orders counted, all runs): 4 < 10",
    ]


@pytest.mark.parametrize(
    ("path", "value", "problem"),
    [
        (("process", "input", "partitions", "1"), [2, 6],
         "process read orders[1] up to offset 6, short of 7, where generate committed its last record in "
         "this run"),
        (("analyze", "input", "partitions", "0"), [0, 4],
         "analyze read processed-orders[0] up to offset 4, short of 5, where process committed its last "
         "record in this run"),
        (("sink", "input", "partitions"), {"0": [0, 5]},
         "sink read product-metrics[1] up to offset (not at all), short of 7, where analyze committed its "
         "last record in this run"),
    ],
)
def test_a_stage_that_read_short_of_what_its_upstream_committed_fails_the_run(path, value, problem):
    assert reconcile.check(broken(path, value)) == [problem]


def test_a_stage_whose_input_was_read_further_by_another_run_is_not_short():
    # Another run's analyze read this run's processed-orders first: this one starts past it.
    assert reconcile.check(broken(("analyze", "input", "partitions", "1"), [9, 9])) == []


def test_what_a_transaction_still_open_held_back_is_left_for_the_next_run(tmp_path, monkeypatch):
    monkeypatch.setenv("PIPELINE_OUTPUT_DIR", str(tmp_path))
    results = broken(("process", "input", "held"), {"1": [7, 12]})
    manifest = reconcile.reconcile("r", results)
    assert (manifest.reconciled, manifest.notes) == (
        True, ["process: orders[1] offsets 7..11 left for the next run (a transaction of another writer "
               "was still open)"],
    )
    assert reconcile.render(manifest).splitlines()[-1] == (
        "  left             : process: orders[1] offsets 7..11 left for the next run (a transaction of "
        "another writer was still open)"
    )


def test_a_missing_stage_cannot_reconcile():
    assert reconcile.check({**GOOD, "sink": None}) == [
        "no result from sink in this run: reconcile needs every stage to have run"
    ]


def test_a_run_without_generate_reconciles_what_others_produced():
    # kafka_pipeline_on_orders has no generate task.
    results = {stage: result for stage, result in GOOD.items() if stage != "generate"}
    assert reconcile.check(results) == []
    assert (reconcile.summarize(results).generated, reconcile.summarize(results).processed) == (0, 10)


def test_the_summary_counts_invalid_orders_by_reason_from_both_stages():
    results = broken(("analyze", "reasons"), {"late": 1, "duplicate": 1, "unknown_product": 2})
    assert reconcile.summarize(results).invalid_reasons == {"invalid_json": 1, "unknown_product": 3}


def test_reconcile_writes_the_manifest_either_way_and_names_what_failed(tmp_path, monkeypatch):
    monkeypatch.setenv("PIPELINE_OUTPUT_DIR", str(tmp_path))
    good = reconcile.reconcile("manual__2026-01-05T10:00:00+00:00", GOOD, dag_id="kafka_pipeline_on_orders")
    assert (good.reconciled, reconcile.failure(good)) == (True, None)
    bad = reconcile.reconcile("scheduled__2026-01-05T11:00:00+00:00", broken(("sink", "order_count"), 9))
    assert reconcile.failure(bad) == (
        f"run scheduled__2026-01-05T11:00:00+00:00 does not reconcile (manifest: {tmp_path}/runs/"
        "kafka_pipeline.scheduled__2026-01-05T11_00_00_00_00.json):\n  sink: orders in the metrics != "
        "orders counted, all runs: 9 != 10\nIf rows of the metrics store were deleted or edited, or "
        "product-metrics lost records, rebuild the windows from Kafka with the kafka_pipeline_replay DAG "
        "(docs/operations/replay.md)."
    )
    written = sorted(p.name for p in (tmp_path / "runs").iterdir())
    assert written == [
        "kafka_pipeline.scheduled__2026-01-05T11_00_00_00_00.json",
        "kafka_pipeline_on_orders.manual__2026-01-05T10_00_00_00_00.json",
    ]
    failed = json.loads((tmp_path / "runs" / written[0]).read_text())
    assert (failed["dag_id"], failed["reconciled"], failed["summary"]["counted"]) == (
        "kafka_pipeline", False, 6
    )
    assert (
        failed["summary"]["store"], failed["summary"]["metrics_rows"], failed["summary"]["rows_changed"]
    ) == ("postgresql+psycopg://metrics:***@db:5432/metrics", 5, 3)
    assert failed["stages"] == json.loads(json.dumps(broken(("sink", "order_count"), 9)))


def test_recent_reads_the_newest_manifests_first_and_skips_unreadable_ones(tmp_path, monkeypatch):
    monkeypatch.setenv("PIPELINE_OUTPUT_DIR", str(tmp_path))
    for hour in range(3):
        reconcile.reconcile(f"run-{hour}", GOOD)
        os.utime(reconcile.manifest_path("kafka_pipeline", f"run-{hour}"), (1000 + hour, 1000 + hour))
    reconcile.manifest_path("kafka_pipeline", "zzz-broken").write_text("{not json")
    # Written before dag_id, its analyze result as the stage returned it then: derived counts kept
    # (invalid, late, duplicate), no state counts yet.
    analyze = {
        key: value for key, value in GOOD["analyze"].items()
        if key not in ("open_windows", "remembered_order_ids")
    }
    analyze.update(invalid=0, late=1, duplicate=1)
    # and its ledgers as analyze kept them before partials, with the revenue in cents per window
    analyze.update(ledger_before={"count": 4, "revenue": "40.00", "revenue_cents": "40.00"},
                   ledger_after={"count": 10, "revenue": "100.005", "revenue_cents": "100.01"})
    old = {"run_id": "old", "reconciled": True, "problems": [], "summary": {"generated": 5},
           "stages": {"analyze": analyze}}
    old_path = tmp_path / "runs" / "old.json"  # named after the run alone: before DAGs were in names
    old_path.write_text(json.dumps(old))
    os.utime(old_path, (900, 900))
    assert [m.run_id for m in reconcile.recent(2)] == ["run-2", "run-1"]
    everything = reconcile.recent(10)
    assert [m.run_id for m in everything] == ["run-2", "run-1", "run-0", "old"]
    assert (
        everything[-1].dag_id, everything[-1].summary.generated, everything[-1].summary.invalid_reasons
    ) == ("kafka_pipeline", 5, {})
    analyzed = everything[-1].stages.analyze
    assert (analyzed.counted, analyzed.late, analyzed.duplicate, analyzed.invalid, analyzed.open_windows) == (
        6, 1, 1, 0, 0
    )
    assert everything[-1].stages.process is None
    assert (analyzed.ledger_before, analyzed.ledger_after) == (
        Ledger(4, Decimal("40.00")), Ledger(10, Decimal("100.005")),
    )


def test_the_summary_names_the_store_the_export_and_the_reasons():
    manifest = reconcile.Manifest(run_id="r", reconciled=True, problems=[], summary=reconcile.summarize(GOOD))
    assert reconcile.render(manifest).splitlines() == [
        "kafka_pipeline run r",
        "  orders generated : 10",
        "  orders processed : 10 (8 valid, 2 invalid -> orders-dlq)",
        "  invalid, by why  : invalid_json 1, unknown_product 1",
        "  orders counted   : 6 (1 late, 1 duplicate -> orders-dlq); 3 (window, product) metrics updated "
        "(3 partials written)",
        "  metrics          : 5 rows in postgresql+psycopg://metrics:***@db:5432/metrics",
        "  metrics.json     : 5 lines, the last 7 days of windows, in output/metrics.json",
        "  reconciled       : yes",
    ]
