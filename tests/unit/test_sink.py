from decimal import Decimal

import pytest

from include.pipeline import sink

A = {"window_start": 60, "window_end": 120, "product_id": "prod-1", "product_name": "Laptop",
     "order_count": 1, "total_revenue": Decimal("10.50"), "avg_order_value": Decimal("10.50")}
B = {**A, "product_id": "prod-2", "product_name": "Phone"}


def test_upsert_keeps_one_line_per_window_and_product(tmp_path):
    path = tmp_path / "out" / "metrics.json"
    store = {}
    for record in (B, A, {**A, "order_count": 2, "total_revenue": Decimal("21.00")}, B):
        sink.upsert(store, record)
    sink.write(path, store)
    assert path.read_text() == (
        '{"window_start":60,"window_end":120,"product_id":"prod-1","product_name":"Laptop",'
        '"order_count":2,"total_revenue":21.00,"avg_order_value":10.50}\n'
        '{"window_start":60,"window_end":120,"product_id":"prod-2","product_name":"Phone",'
        '"order_count":1,"total_revenue":10.50,"avg_order_value":10.50}\n'
    )
    assert sink.load(path) == store
    assert [p.name for p in path.parent.iterdir()] == ["metrics.json"]  # no temp file left


def test_a_record_without_the_contract_fields_is_refused():
    with pytest.raises(ValueError, match="needs the fields"):
        sink.upsert({}, {"window_start": 60})


def test_a_corrupt_metrics_file_names_the_line(tmp_path):
    path = tmp_path / "metrics.json"
    path.write_text('{"window_start": 60}\n')
    with pytest.raises(ValueError, match="metrics.json:1 is not a metrics record"):
        sink.load(path)
