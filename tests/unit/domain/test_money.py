from decimal import Decimal

import pytest

from include.pipeline.domain import money


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


def test_plain_amounts_of_up_to_2_decimals_are_read_as_cents_with_the_exponent_their_decimal_has():
    texts = [b"19.99", b"0.5", b"12", b"0.01", b"5.00", b"99999999999.99"]
    cents, exponent, read = money.cents_many(texts)
    assert read.tolist() == [True] * 6
    assert cents.tolist() == [1999, 50, 1200, 1, 500, 9999999999999]
    assert exponent.tolist() == [-2, -1, 0, -2, -2, -2]
    assert [money.from_cents(c, e) for c, e in zip(cents.tolist(), exponent.tolist())] == [
        Decimal(text.decode()) for text in texts
    ]
    assert [str(money.from_cents(c, e)) for c, e in zip(cents.tolist(), exponent.tolist())] == [
        "19.99", "0.5", "12", "0.01", "5.00", "99999999999.99",
    ]


@pytest.mark.parametrize(
    "text",
    [b"1.234", b"100000000000", b"1e2", b"1E+2", b"-1", b"0", b"0.00", b"01", b"1.", b".5", b'"12"', b"true",
     b"", b"1 "],
)
def test_anything_else_is_left_to_the_decimal_path(text):
    assert money.cents_many([text])[2].tolist() == [False]


def test_cents_of_a_decimal_agrees_with_the_bulk_reading_and_keeps_the_exponent():
    assert money.cents_of(Decimal("19.90")) == (1990, -2)
    assert money.cents_of(Decimal("1E+2")) == (10000, 2)
    assert money.from_cents(10000, 2) == Decimal("1E+2") and str(money.from_cents(10000, 2)) == "1E+2"
    assert [money.cents_of(Decimal(text)) for text in ("1.234", "0", "1e11", "-5")] == [None] * 4
