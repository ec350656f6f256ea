"""output/metrics.json: its line format, written atomically, read back line by line."""

import os
import stat
from decimal import Decimal

import pytest

from include.pipeline.domain.windows import Metric
from include.pipeline.store import export as metrics_json

A = Metric(60, 120, "prod-1", "Laptop", 1, Decimal("10.50"), Decimal("10.50"))
A2 = Metric(60, 120, "prod-1", "Laptop", 2, Decimal("21.00"), Decimal("10.50"))
B = Metric(60, 120, "prod-2", "Phone", 1, Decimal("10.50"), Decimal("10.50"))


def test_the_file_round_trips_in_the_known_line_format(tmp_path):
    path = tmp_path / "out" / "metrics.json"
    assert metrics_json.write_lines(path, [[A2], [B]]) == 2
    assert path.read_text() == (
        '{"window_start":60,"window_end":120,"product_id":"prod-1","product_name":"Laptop",'
        '"order_count":2,"total_revenue":21.00,"avg_order_value":10.50}\n'
        '{"window_start":60,"window_end":120,"product_id":"prod-2","product_name":"Phone",'
        '"order_count":1,"total_revenue":10.50,"avg_order_value":10.50}\n'
    )
    assert list(metrics_json.read_lines(path)) == [A2, B]
    assert [p.name for p in path.parent.iterdir()] == ["metrics.json"]  # no temp file left
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask  # readable by others, as files are


def test_a_corrupt_metrics_file_names_the_line(tmp_path):
    path = tmp_path / "metrics.json"
    metrics_json.write_lines(path, [[A]])
    with path.open("a") as file:
        file.write('{"window_start": 60}\n')
    with pytest.raises(
        ValueError, match=r"metrics.json:2 is not a metrics record .*window_end.*; fix or remove"
    ):
        list(metrics_json.read_lines(path))
