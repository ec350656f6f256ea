"""Exact money: sums as Decimal, cents rounded half-up, averages without a binary float."""

from __future__ import annotations

from decimal import MAX_EMAX, MAX_PREC, MIN_EMIN, ROUND_HALF_UP, Context, Decimal, localcontext
from fractions import Fraction
from typing import Iterable

import numpy as np

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


# Amounts on the cents path have at most this many digits before the point, so that the cents of
# a batch (up to 100,000 orders) add up within int64.
WHOLE_DIGITS = 11
LONGEST = WHOLE_DIGITS + 3


def cents_many(texts: list) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(cents, exponent, read) of JSON numbers given as their text (bytes-like): ``read`` where a
    text is a plain positive decimal with at most 2 digits after the point and WHOLE_DIGITS
    before it (``12``, ``0.5``, ``19.99``), which ``cents`` then holds exactly, and ``exponent``
    the exponent its Decimal has (0, -1 or -2: what a sum of Decimals keeps). Others: to Decimal."""
    n = len(texts)
    lengths = np.fromiter(map(len, texts), np.int64, n)
    starts = np.cumsum(lengths) - lengths
    chars = np.frombuffer(b"".join(texts), np.uint8)
    cents, exponent, read = np.zeros(n, np.int64), np.zeros(n, np.int64), np.zeros(n, bool)
    for length in np.unique(lengths).tolist() if n else []:
        if not 1 <= length <= LONGEST:
            continue
        rows = np.flatnonzero(lengths == length)
        columns = chars[np.arange(length)[:, None] + starts[rows]]  # columns[at][i]: text i's at
        digits = columns - np.uint8(48)  # any byte but a digit wraps to 10 or more
        places = np.zeros(len(rows), np.int64)  # digits after the point: at most 2
        for after in (1, 2):
            if length > after + 1:
                places[columns[length - 1 - after] == ord(".")] = after
        whole = length - np.where(places > 0, places + 1, 0)
        # Exactly one character is not a digit where there is a point; as in JSON, no leading zero.
        others = (digits > 9).sum(axis=0)
        ok = (others == (places > 0)) & (whole >= 1) & (whole <= WHOLE_DIGITS)
        ok &= (whole == 1) | (columns[0] != ord("0"))
        value = np.zeros(len(rows), np.int64)  # the text read with its point as a 0
        for at in range(length):
            value = value * 10 + np.where(digits[at] <= 9, digits[at], 0)
        split = 10 ** places
        value = np.where(places > 0, value // (split * 10) * split + value % split, value)
        value *= 10 ** (2 - places)
        ok &= value > 0
        cents[rows[ok]], exponent[rows[ok]], read[rows[ok]] = value[ok], -places[ok], True
    return cents, exponent, read


def from_cents(cents: int, exponent: int) -> Decimal:
    """cents / 100 as the Decimal with that exponent (-2 or more) a sum of Decimals has."""
    return Decimal(cents // 10 ** (exponent + 2)).scaleb(exponent, EXACT)


def cents_of(amount: Decimal) -> tuple[int, int] | None:
    """(cents, exponent) of an amount the cents path can hold (see ``cents_many``); None if not."""
    exponent = amount.as_tuple().exponent
    if not isinstance(exponent, int) or exponent < -2 or not 0 < amount < 10**WHOLE_DIGITS:
        return None
    return int(amount.scaleb(2, EXACT)), exponent
