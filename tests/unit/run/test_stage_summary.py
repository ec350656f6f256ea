"""The lines each stage's task log ends with, from the stage's result."""

import msgspec

from include.pipeline.run import summary as stage_summary
from include.pipeline.run.results import (
    AnalyzeResult,
    CreateTopicsResult,
    Export,
    GenerateResult,
    ProcessResult,
    ReplayResult,
    Result,
    SinkResult,
)


def source(topic, partitions, lost=0):
    return {"topic": topic, "partitions": partitions, "lost": lost}


def test_process_names_its_offsets_and_every_reason():
    result = msgspec.convert({
        "input": source("orders", {"0": [0, 667], "1": [650, 650], "2": [10, 11]}), "read": 668, "valid": 600,
        "reasons": {"unknown_product": 30, "invalid_json": 20, "tombstone": 9, "bad_utf8": 3,
                                   "missing_field": 6},
        "written": {"processed-orders": 600, "orders-dlq": 68},
    }, ProcessResult)
    assert stage_summary.lines("process", result) == [
        "process summary",
        "  read      : 668 from orders, offsets p0 0..666, p1 nothing new (at 650), p2 10..10",
        "  valid     : 600 -> processed-orders",
        "  invalid   : 68 -> orders-dlq (bad_utf8 3, invalid_json 20, missing_field 6, tombstone 9,",
        "              unknown_product 30)",  # wrapped: no line runs off a log viewer's edge
    ]


def test_analyze_names_what_it_counted_and_rejected():
    result = msgspec.convert({
        "input": source("processed-orders", {"0": [5, 9]}, lost=2), "read": 4, "counted": 2,
        "counted_revenue": "21.50", "reasons": {"late": 1, "duplicate": 1},
        "written": {"product-metrics": 2, "orders-dlq": 2},
        "ledger_after": {"count": 12}, "open_windows": 3, "remembered_order_ids": 12,
    }, AnalyzeResult)
    assert stage_summary.lines("analyze", result) == [
        "analyze summary",
        "  read      : 4 from processed-orders, offsets p0 5..8; 2 deleted by retention before they were",
        "              read",
        "  counted   : 2 orders, revenue 21.50 -> 2 (window, product) updates on product-metrics",
        "  rejected  : 2 -> orders-dlq (duplicate 1, late 1)",
        "  state     : 3 open (window, product) aggregates, 12 order ids remembered; 12 counted, all runs",
    ]


def test_sink_names_the_store_its_totals_and_the_export():
    result = msgspec.convert({
        "input": source("product-metrics", {"0": [0, 3]}), "read": 3, "store": "sqlite:////data/metrics.db",
        "imported": 0, "rows_inserted": 2, "rows_updated": 1, "metrics": 40, "order_count": 99,
        "total_revenue": "1234.56", "export": None,
    }, SinkResult)
    assert stage_summary.lines("sink", result) == [
        "sink summary",
        "  read      : 3 from product-metrics, offsets p0 0..2",
        "  rows      : 2 inserted, 1 updated",
        "  store     : sqlite:////data/metrics.db",
        "  holds     : 40 rows, 99 orders, revenue 1234.56",
        "  export    : none (metrics_json_days is 0)",
    ]
    exported = msgspec.structs.replace(
        result, imported=7, export=Export(path="output/metrics.json", days=7, lines=40),
    )
    assert stage_summary.lines("sink", exported)[2:] == [
        "  rows      : 2 inserted, 1 updated, 7 lines imported from metrics.json",
        "  store     : sqlite:////data/metrics.db",
        "  holds     : 40 rows, 99 orders, revenue 1234.56",
        "  export    : 40 lines, the last 7 days, in output/metrics.json",
    ]


def test_the_other_stages_and_an_unknown_one():
    assert stage_summary.lines("create_topics", CreateTopicsResult()) == [
        "create_topics summary", "  created   : none, all exist",
    ]
    assert stage_summary.lines("generate", GenerateResult(generated=2000, seconds=0.234)) == [
        "generate summary", "  generated : 2000 orders -> orders in 0.2s",
    ]
    replayed = ReplayResult(
        range=("2026-01-05T09:00:00+00:00", "2026-01-05T10:00:00+00:00"), read=50, skipped_rejected=4,
        windows=12, order_count=40,
    )
    assert stage_summary.lines("replay", replayed) == [
        "replay summary",
        "  range     : windows starting in [2026-01-05T09:00:00+00:00, 2026-01-05T10:00:00+00:00)",
        "  read      : 50 from processed-orders, 4 dead-lettered ones skipped",
        "  published : 12 (window, product) totals, 40 orders -> product-metrics",
    ]
    assert stage_summary.lines("something_else", Result()) == []
