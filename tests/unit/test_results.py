"""The stage results: what a task pushes as its XCom, what is derived, and reading them back."""

from decimal import Decimal

from include.pipeline.results import AnalyzeResult, InputRanges, ProcessResult, SinkResult, run_results, xcom


def test_the_xcom_is_json_types_only():
    result = ProcessResult(
        input=InputRanges(topic="orders", partitions={"0": (0, 5)}), read=5, valid=4,
        reasons={"invalid_json": 1}, written={"processed-orders": 4, "orders-dlq": 1},
    )
    assert xcom(result) == {
        "input": {"topic": "orders", "partitions": {"0": [0, 5]}, "lost": 0}, "read": 5,
        "reasons": {"invalid_json": 1}, "written": {"processed-orders": 4, "orders-dlq": 1}, "valid": 4,
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
