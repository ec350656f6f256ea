"""The oracle (tests/oracle.py) itself: standard library only, and right on hand-worked cases."""

import ast
import subprocess
import sys
from collections import Counter
from decimal import Decimal
from pathlib import Path

import pytest

from tests import oracle
from tests.harness.factories import order_value
from tests.oracle import Oracle, parse

ROOT = Path(__file__).resolve().parents[2]
ORACLE = ROOT / "tests" / "oracle.py"
TEN = "2026-01-05T10:00:00Z"


def imported_modules(source: str) -> set[str]:
    """The top-level names of every module the source imports, wherever the import statement is."""
    names = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            names.add("." if node.level else node.module.split(".")[0])
        elif isinstance(node, ast.Call) and getattr(node.func, "id", getattr(node.func, "attr", "")) in (
            "__import__", "import_module",
        ):
            names.add("<dynamic import>")
    return names


def test_the_oracle_imports_only_the_standard_library():
    # Anything else (include/, plugins/, dags/, a test module that uses them, a third-party
    # parser) could make the oracle agree with the code by sharing its mistakes.
    others = imported_modules(ORACLE.read_text()) - set(sys.stdlib_module_names) - {"__future__"}
    assert not others, f"tests/oracle.py imports more than the standard library: {sorted(others)}"


def test_importing_the_oracle_loads_no_module_outside_the_standard_library():
    script = (
        "import sys; before = set(sys.modules); import tests.oracle; "
        "print('\\n'.join(sorted(set(sys.modules) - before)))"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, check=True,
    ).stdout.split()
    outside = [name for name in loaded if name.split(".")[0] not in sys.stdlib_module_names | {"tests"}]
    assert outside == [] and set(loaded) & {"tests", "tests.oracle"}, loaded


def test_the_check_sees_an_import_of_the_project():
    planted = ORACLE.read_text().replace("import json\n", "import json\nfrom include.pipeline import money\n")
    assert imported_modules(planted) - set(sys.stdlib_module_names) == {"include"}
    assert "<dynamic import>" in imported_modules("import importlib\nimportlib.import_module('include')")


@pytest.mark.parametrize(("value", "reason"), [
    (None, "tombstone"), (b"", "empty"), (b" " * 65537, "too_large"), (b"{" * 65537, "too_large"),
    (b'{"order_id":"\xff"', "bad_utf8"), (b'{,"order_id":"\xff"}', "invalid_json"),
    (b'"\\udc00\xff"', "invalid_json"), (b"\xef\xbb\xbf{}", "invalid_json"), (b"NaN", "invalid_json"),
    (b"[1]", "not_an_object"), (b"{}", "missing_field"), (b'{"order_id":1}', "missing_field"),
    (order_value(order_id=""), "invalid_order_id"), (order_value(product_id="prod-6"), "unknown_product"),
    (order_value(amount="0"), "invalid_amount"), (order_value(amount="-1"), "invalid_amount"),
    (order_value(amount="1e309"), "invalid_amount"), (order_value(amount="4e-324"), "invalid_amount"),
    (order_value(amount='"1"'), "invalid_amount"), (order_value(amount="9" * 4301), "invalid_json"),
    (order_value(timestamp="2026-01-05"), "invalid_timestamp"),
    (order_value(timestamp="0001-01-01T00:00:00+01:00"), "invalid_timestamp"),
    (b"[" * 1001 + b"]" * 1001, "invalid_json"),
])
def test_reasons_of_hand_picked_values(value, reason):
    assert parse(value) == reason


def test_values_nested_between_500_and_1000_levels_are_left_undecided():
    with pytest.raises(oracle.Undecided):
        parse(b"[" * 700 + b"]" * 700)


def test_timestamps_in_utc_microseconds_and_windows_floored():
    at = {t: parse(order_value(timestamp=t)).event_us for t in (
        "2026-01-05T10:00:00Z", "2026-01-05T09:00:00-01:00", "2026-01-05 10:00:00",
        "20260105T103000+0030", "2026-01-05T10:00:00.1234567",
    )}
    assert set(at.values()) == {1767607200_000000, 1767607200_123456}
    before_1970 = parse(order_value(timestamp="1969-12-31T23:59:59.5Z"))
    assert (before_1970.event_us, before_1970.window_start) == (-500_000, -60)
    # 00:30 at -01:00 is 01:30 UTC: the window of 01:30, not of 00:30 or 23:30.
    assert parse(order_value(timestamp="2026-01-05T00:30:10-01:00")).window_start == 1767576600


def test_the_partitioner_is_crc32_of_the_id():
    assert oracle.partition_of("123456789", 2**32) == 0xCBF43926  # CRC-32's check value


def test_a_run_counts_rounds_half_up_once_and_dead_letters_late_and_duplicate():
    grace = 60
    o = Oracle(partitions=1, grace_seconds=grace, horizon_seconds=3600)
    o.run([
        order_value("a", "prod-1", "0.005", TEN), order_value("b", "prod-1", "0.005", TEN),
        order_value("c", "prod-1", "0.001", TEN),  # 0.011
        order_value("a", "prod-1", "5", TEN),  # a duplicate
        order_value("d", "prod-1", "1.00", "2026-01-05T10:03:00Z"),  # the watermark: 10:03
        # window ends 10:02 = 10:03 - grace: counts
        order_value("e", "prod-1", "1.00", "2026-01-05T10:01:59.999Z"),
        order_value("f", "prod-1", "1.00", "2026-01-05T10:00:59Z"),  # window ended 10:01 < 10:02: late
        b"x",
    ])
    assert o.metrics() == [
        {"window_start": 1767607200, "window_end": 1767607260, "product_id": "prod-1",
         "product_name": "Laptop", "order_count": 3, "total_revenue": Decimal("0.01"),
         "avg_order_value": Decimal("0.00")},  # 0.011 / 3 = 0.00366...
        {"window_start": 1767607260, "window_end": 1767607320, "product_id": "prod-1",
         "product_name": "Laptop", "order_count": 1, "total_revenue": Decimal("1.00"),
         "avg_order_value": Decimal("1.00")},
        {"window_start": 1767607380, "window_end": 1767607440, "product_id": "prod-1",
         "product_name": "Laptop", "order_count": 1, "total_revenue": Decimal("1.00"),
         "avg_order_value": Decimal("1.00")},
    ]
    assert o.dead_letters == Counter({("duplicate", "a"): 1, ("late", "f"): 1, ("invalid_json", None): 1})
    # The next run: a late copy of f is still late; g, 2 hours on, makes the first ids forgotten.
    o.run([order_value("f", "prod-1", "1.00", "2026-01-05T10:00:59Z"),
           order_value("g", "prod-1", "1.00", "2026-01-05T12:03:01Z")])
    o.run([order_value("a", "prod-1", "0.015", "2026-01-05T12:03:01Z")])
    assert o.metrics()[-1]["order_count"] == 2 and o.metrics()[-1]["total_revenue"] == Decimal("1.02")
    assert o.metrics()[-1]["avg_order_value"] == Decimal("0.51")  # 1.015 / 2 = 0.5075
    assert o.dead_letters[("late", "f")] == 2
