from decimal import Decimal

import pytest

from include.pipeline import money


@pytest.mark.parametrize(
    ("value", "cents"),
    [("0.005", "0.01"), ("0.004", "0.00"), ("2.675", "2.68"), ("1.125", "1.13"), ("10", "10.00"),
     ("123456789012345678901234567890.005", "123456789012345678901234567890.01")],
)
def test_cents_round_half_up(value, cents):
    assert str(money.to_cents(Decimal(value))) == cents


def test_sums_are_exact_where_floats_are_not():
    assert money.total([Decimal("0.1")] * 10) == Decimal("1.0")
    assert sum([0.1] * 10) != 1.0  # what a float sum would have got wrong


def test_sums_never_round_even_beyond_28_digits():
    total = money.total([Decimal("0.000001")], Decimal("1e30"))
    assert str(total) == "1000000000000000000000000000000.000001"


@pytest.mark.parametrize(
    ("total", "count", "avg"),
    [("10.00", 3, "3.33"), ("20.00", 3, "6.67"), ("0.05", 2, "0.03"), ("0.03", 2, "0.02"),
     ("100", 1, "100.00"), ("0.015", 1, "0.02"), ("1.00", 8, "0.13")],
)
def test_average_rounds_the_exact_quotient_half_up(total, count, avg):
    assert str(money.average_to_cents(Decimal(total), count)) == avg
