"""Exact money: sums as Decimal, cents rounded half-up, averages without a binary float."""

from __future__ import annotations

from decimal import MAX_EMAX, MAX_PREC, MIN_EMIN, ROUND_HALF_UP, Context, Decimal, localcontext
from fractions import Fraction
from typing import Iterable

CENT = Decimal("0.01")
# Additions in this context never round, so a sum of any valid amounts stays exact.
EXACT = Context(prec=MAX_PREC, Emax=MAX_EMAX, Emin=MIN_EMIN, rounding=ROUND_HALF_UP)


def total(amounts: Iterable[Decimal], start: Decimal = Decimal(0)) -> Decimal:
    """start + the sum of amounts, exactly (one C loop, not an add() call per amount)."""
    with localcontext(EXACT):
        return sum(amounts, start)


def subtract(a: Decimal, b: Decimal) -> Decimal:
    """a - b, exactly."""
    return EXACT.subtract(a, b)


def to_cents(value: Decimal) -> Decimal:
    """Round half-up to cents."""
    return EXACT.quantize(value, CENT)


def average_to_cents(total: Decimal, count: int) -> Decimal:
    """total / count, rounded half-up to cents from the exact quotient (no double rounding)."""
    cents = Fraction(total) * 100 / count
    whole, rest = divmod(cents.numerator, cents.denominator)
    if 2 * rest >= cents.denominator:
        whole += 1
    return Decimal(whole).scaleb(-2, EXACT)
