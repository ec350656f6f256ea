import os
import stat
from decimal import Decimal

import pytest

from include.pipeline import sink
from include.pipeline.windows import Metric

A = Metric(60, 120, "prod-1", "Laptop", 1, Decimal("10.50"), Decimal("10.50"))
A2 = Metric(60, 120, "prod-1", "Laptop", 2, Decimal("21.00"), Decimal("10.50"))
B = Metric(60, 120, "prod-2", "Phone", 1, Decimal("10.50"), Decimal("10.50"))


def test_the_newest_record_per_window_wins_and_moves_the_totals():
    totals = sink.Totals(rows=1, order_count=1, total_revenue=Decimal("10.50"))
    changes = sink.changes([B, A2, B], {A.key: A}, totals)
    assert changes.upserts == [B, A2]
    assert (changes.inserted, changes.updated) == (1, 1)
    assert totals == sink.Totals(rows=2, order_count=3, total_revenue=Decimal("31.50"))


def test_records_equal_to_their_rows_change_nothing():
    totals = sink.Totals(rows=2, order_count=3, total_revenue=Decimal("31.50"))
    changes = sink.changes([A2, B], {A2.key: A2, B.key: B}, totals)
    assert (changes.upserts, changes.inserted, changes.updated) == ([], 0, 0)
    assert totals == sink.Totals(rows=2, order_count=3, total_revenue=Decimal("31.50"))


def test_totals_stay_exact_past_what_a_float_holds():
    huge = Metric(60, 120, "prod-1", "Laptop", 1, Decimal("9" * 40 + ".99"), Decimal("9" * 40 + ".99"))
    totals = sink.Totals()
    sink.changes([huge], {}, totals)
    sink.changes([A], {huge.key: huge}, totals)
    assert totals == sink.Totals(rows=1, order_count=1, total_revenue=Decimal("10.50"))


def test_the_file_round_trips_in_the_known_line_format(tmp_path):
    path = tmp_path / "out" / "metrics.json"
    assert sink.write_lines(path, [[A2], [B]]) == 2
    assert path.read_text() == (
        '{"window_start":60,"window_end":120,"product_id":"prod-1","product_name":"Laptop",'
        '"order_count":2,"total_revenue":21.00,"avg_order_value":10.50}\n'
        '{"window_start":60,"window_end":120,"product_id":"prod-2","product_name":"Phone",'
        '"order_count":1,"total_revenue":10.50,"avg_order_value":10.50}\n'
    )
    assert list(sink.read_lines(path)) == [A2, B]
    assert [p.name for p in path.parent.iterdir()] == ["metrics.json"]  # no temp file left
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask  # readable by others, as files are


def test_a_corrupt_metrics_file_names_the_line(tmp_path):
    path = tmp_path / "metrics.json"
    sink.write_lines(path, [[A]])
    with path.open("a") as file:
        file.write('{"window_start": 60}\n')
    with pytest.raises(ValueError, match=r"metrics.json:2 is not a metrics record .*window_end.*; fix or remove"):
        list(sink.read_lines(path))
