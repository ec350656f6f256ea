"""The stage results: what a task pushes as its XCom, what is derived, and reading them back."""

from decimal import Decimal

import pytest

from include.pipeline.domain.windows import Ledger
from include.pipeline.run.results import (
    AnalyzeResult,
    InputRanges,
    ProcessResult,
    SinkResult,
    combined,
    run_results,
    xcom,
)


def test_the_xcom_is_json_types_only():
    result = ProcessResult(
        input=InputRanges(topic="orders", partitions={"0": (0, 5)}), read=5, valid=4,
        reasons={"invalid_json": 1}, written={"processed-orders": 4, "orders-dlq": 1},
    )
    assert xcom(result) == {
        "input": {"topic": "orders", "partitions": {"0": [0, 5]}, "lost": 0, "held": {}}, "read": 5,
        "reasons": {"invalid_json": 1}, "written": {"processed-orders": 4, "orders-dlq": 1},
        "written_upto": {}, "valid": 4,
    }
    assert type(xcom(result)["input"]["partitions"]["0"]) is list  # a tuple would reach Airflow's serializer
    assert run_results({"process": xcom(result)}).process == ProcessResult(
        input=InputRanges(topic="orders", partitions={"0": (0, 5)}), read=5, valid=4,
        reasons={"invalid_json": 1}, written={"processed-orders": 4, "orders-dlq": 1},
    )


def test_derived_counts_come_from_the_measured_ones():
    reasons = {"late": 2, "duplicate": 3, "unknown_product": 1}
    analyzed = AnalyzeResult(reasons=reasons, written={"product-metrics": 7})
    assert (analyzed.rejected, analyzed.late, analyzed.duplicate, analyzed.invalid) == (6, 2, 3, 1)
    assert (analyzed.invalid_reasons, analyzed.metrics_written) == ({"unknown_product": 1}, 7)
    assert ProcessResult(reasons={"empty": 2, "tombstone": 1}).invalid == 3
    assert SinkResult(rows_inserted=2, rows_updated=5, total_revenue=Decimal("1.10")).rows_changed == 7


def test_a_mapped_stages_instances_read_back_as_one_result():
    instances = [
        {"input": {"topic": "orders", "partitions": {"2": [4, 9], "0": [0, 5]}, "lost": 1}, "read": 10,
         "reasons": {"invalid_json": 1}, "written": {"processed-orders": 9, "orders-dlq": 1}, "valid": 9},
        {"input": {"topic": "orders", "partitions": {"1": [3, 3]}, "lost": 0}, "read": 0,
         "reasons": {}, "written": {"processed-orders": 0, "orders-dlq": 0}, "valid": 0},
        {"input": {"topic": "orders", "partitions": {"3": [0, 7]}, "lost": 0}, "read": 7,
         "reasons": {"invalid_json": 2, "empty": 1}, "written": {"processed-orders": 4, "orders-dlq": 3},
         "valid": 4},
    ]
    assert run_results({"process": instances}).process == ProcessResult(
        input=InputRanges(
            topic="orders", partitions={"0": (0, 5), "1": (3, 3), "2": (4, 9), "3": (0, 7)}, lost=1,
        ),
        read=17, valid=13, reasons={"invalid_json": 3, "empty": 1},
        written={"processed-orders": 13, "orders-dlq": 4},
    )
    # An instance without a result (stopped, failed) leaves the stage without one: never a part
    # taken for the whole.
    assert run_results({"process": [instances[0], None]}).process is None


ANALYZE_INSTANCES = [  # two analyze workers, each its share of the partitions of processed-orders
    {"input": {"topic": "processed-orders", "partitions": {"2": [0, 4], "0": [3, 9]}, "lost": 0}, "read": 10,
     "reasons": {"late": 1, "duplicate": 2}, "written": {"product-metrics": 4, "orders-dlq": 3},
     "written_upto": {"product-metrics": {"3": 40, "0": 12}, "orders-dlq": {"1": 7}},
     "counted": 7, "counted_revenue": "0.005", "ledger_before": {"count": 3, "revenue": "10.005"},
     "ledger_after": {"count": 10, "revenue": "10.010"}, "open_windows": 2, "remembered_order_ids": 10},
    {"input": {"topic": "processed-orders", "partitions": {"1": [5, 8]}, "lost": 2,
               "held": {"1": [8, 11]}},
     "read": 3, "reasons": {"duplicate": 1, "invalid_json": 1},
     "written": {"product-metrics": 1, "orders-dlq": 2},
     "written_upto": {"product-metrics": {"3": 41, "5": 2}},
     "counted": 1, "counted_revenue": "0.005", "ledger_before": {"count": 0, "revenue": "0"},
     "ledger_after": {"count": 1, "revenue": "0.005"}, "open_windows": 1, "remembered_order_ids": 1},
]
ANALYZE_WHOLE = AnalyzeResult(
    input=InputRanges(
        topic="processed-orders", partitions={"0": (3, 9), "1": (5, 8), "2": (0, 4)}, lost=2,
        held={"1": (8, 11)},
    ),
    read=13, reasons={"late": 1, "duplicate": 3, "invalid_json": 1},
    written={"product-metrics": 5, "orders-dlq": 5},
    # Both instances wrote partials to partition 3: the further end is where a reader must get to.
    written_upto={"orders-dlq": {"1": 7}, "product-metrics": {"0": 12, "3": 41, "5": 2}},
    counted=8, counted_revenue=Decimal("0.010"),
    ledger_before=Ledger(3, Decimal("10.005")), ledger_after=Ledger(11, Decimal("10.015")),
    open_windows=3, remembered_order_ids=11,
)


def test_a_mapped_analyzes_instances_combine_as_one_their_ledgers_summed_exactly():
    parts = [run_results({"analyze": instance}).analyze for instance in ANALYZE_INSTANCES]
    whole = combined(parts)
    assert whole == ANALYZE_WHOLE
    assert (str(whole.counted_revenue), str(whole.ledger_after.revenue)) == ("0.010", "10.015")
    assert (whole.late, whole.duplicate, whole.invalid, whole.metrics_written) == (1, 3, 1, 5)
    assert run_results({"analyze": ANALYZE_INSTANCES}).analyze == ANALYZE_WHOLE
    assert run_results({"analyze": [ANALYZE_INSTANCES[0], None]}).analyze is None
    assert combined(parts[:1]) == parts[0]


def test_a_stage_that_runs_one_instance_has_none_to_combine():
    with pytest.raises(ValueError, match="SinkResult has no mapped instances to combine"):
        combined([SinkResult(), SinkResult()])


def test_a_sinks_ledger_is_the_partitions_as_one_and_reads_back():
    result = SinkResult(order_count=4, total_revenue=Decimal("0.01"), counted_revenue=Decimal("0.010"),
                        ledger=Ledger(4, Decimal("0.010")))
    assert xcom(result)["ledger"] == {"count": 4, "revenue": "0.010"}
    assert xcom(result)["counted_revenue"] == "0.010"
    assert run_results({"sink": xcom(result)}).sink == result
    assert run_results({"sink": xcom(SinkResult())}).sink.ledger is None
