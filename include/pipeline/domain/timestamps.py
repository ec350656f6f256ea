"""Order timestamps: ISO-8601 date and time, read as UTC epoch microseconds.

``parse`` is the contract, one value at a time (``datetime.fromisoformat``; no offset means UTC).
``epoch_us_many`` reads a batch at once with numpy, for the shapes a producer writes:
``YYYY-MM-DDTHH:MM:SS``, then optionally ``.`` and 1 to 6 digits, then optionally ``Z`` or
``+HH:MM`` / ``-HH:MM``. It accepts only what ``parse`` accepts, and reads it to the same
microsecond; anything else it leaves to ``parse``.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

import numpy as np

US = 1_000_000
BASE = 19  # YYYY-MM-DDTHH:MM:SS
LONGEST = BASE + 7 + 6  # with .ffffff and +HH:MM
# The microseconds of datetime.min and datetime.max, as UTC: an offset must not push a time out.
LOWEST_US = -62135596800 * US
HIGHEST_US = 253402300800 * US - 1
_FIXED = {4: b"-", 7: b"-", 10: b"T", 13: b":", 16: b":"}
_DIGITS = (0, 1, 2, 3, 5, 6, 8, 9, 11, 12, 14, 15, 17, 18)
_DAYS_IN_MONTH = np.array([0, 31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31, 0])  # February: see leap


def parse(value: Any) -> datetime | None:
    """ISO-8601 date and time; `Z` or an offset, none meaning UTC. None if it is not one."""
    if not isinstance(value, str) or "T" not in value.upper()[8:] and " " not in value:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    if parsed.tzinfo is None:
        return parsed.replace(tzinfo=timezone.utc)
    try:
        return parsed.astimezone(timezone.utc)
    except OverflowError:  # an offset that pushes it past year 1 or 9999
        return None


def epoch_us_many(texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """(epoch microseconds, read) for each text: ``read`` False where the text is not one of the
    common shapes or not a valid time, for ``parse`` to decide."""
    n = len(texts)
    lengths = np.fromiter(map(len, texts), np.int64, n)
    starts = np.cumsum(lengths) - lengths
    # A byte a character ("?" for any but ASCII, which no shape has).
    chars = np.frombuffer("".join(texts).encode("ascii", "replace"), np.uint8)
    event_us, read = np.zeros(n, np.int64), np.zeros(n, bool)
    shortest, longest = (int(lengths.min()), int(lengths.max())) if n else (0, -1)
    for length in [shortest] if shortest == longest else np.unique(lengths).tolist():
        if not BASE <= length <= LONGEST:
            continue
        rows = np.flatnonzero(lengths == length)
        # One contiguous array per position of the text: chars[at][i] is text i's character at.
        columns = chars[np.arange(length)[:, None] + starts[rows]]
        for layout in _layouts(length):
            us, ok = _read(columns, *layout)
            event_us[rows[ok]], read[rows[ok]] = us[ok], True
    return event_us, read


def _layouts(length: int) -> list[tuple[int, int]]:
    """The (fraction digits, zone characters) of the shapes of a text of ``length``."""
    return [
        (places, zone) for places in range(7) for zone in (0, 1, 6)
        if BASE + (places + 1 if places else 0) + zone == length
    ]


def _read(columns: np.ndarray, places: int, zone: int) -> tuple[np.ndarray, np.ndarray]:
    """(epoch us, read) of texts as ``columns`` (one array of the texts' bytes per position) in
    the shape with ``places`` fraction digits and a zone of ``zone`` characters (0: none, 1: Z,
    6: +HH:MM)."""
    digits = columns - np.uint8(48)  # any other byte than a digit wraps to 10 or more
    fraction = list(range(BASE + 1, BASE + 1 + places))
    end = BASE + (1 + places if places else 0)
    offset = [end + 1, end + 2, end + 4, end + 5] if zone == 6 else []
    ok = digits[list(_DIGITS) + fraction + offset].max(axis=0) <= 9
    fixed = {**_FIXED, **({BASE: b"."} if places else {}), **({end: b"Z"} if zone == 1 else {})}
    if zone == 6:
        fixed[end + 3] = b":"
        ok &= (columns[end] == ord("+")) | (columns[end] == ord("-"))
    for at, char in fixed.items():
        ok &= columns[at] == ord(char)

    def number(*at: int) -> np.ndarray:
        out = digits[at[0]].astype(np.int64)
        for position in at[1:]:
            out = out * 10 + digits[position]
        return out

    year, month, day = number(0, 1, 2, 3), number(5, 6), number(8, 9)
    hour, minute, second = number(11, 12), number(14, 15), number(17, 18)
    ok &= (month >= 1) & (month <= 12) & (day >= 1) & (day <= _DAYS_IN_MONTH[np.minimum(month, 13)])
    ok &= (year >= 1) & (hour <= 23) & (minute <= 59) & (second <= 59)
    february_29 = (month == 2) & (day == 29)
    if february_29.any():
        ok &= ~february_29 | ((year % 4 == 0) & ((year % 100 != 0) | (year % 400 == 0)))
    micros = number(*fraction) * 10 ** (6 - places) if places else 0
    east = 0
    if zone == 6:
        hours, minutes = number(*offset[:2]), number(*offset[2:])
        ok &= (hours <= 23) & (minutes <= 59)
        east = np.where(columns[end] == ord("-"), -1, 1) * (hours * 3600 + minutes * 60)
    seconds = _days_from_civil(year, month, day) * 86400 + hour * 3600 + minute * 60 + second - east
    event_us = seconds * US + micros
    return event_us, ok & (event_us >= LOWEST_US) & (event_us <= HIGHEST_US)


def _days_from_civil(year: np.ndarray, month: np.ndarray, day: np.ndarray) -> np.ndarray:
    """Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm)."""
    year = year - (month <= 2)
    era = np.floor_divide(year, 400)
    year_of_era = year - era * 400
    day_of_year = (153 * np.where(month > 2, month - 3, month + 9) + 2) // 5 + day - 1
    day_of_era = year_of_era * 365 + year_of_era // 4 - year_of_era // 100 + day_of_year
    return era * 146097 + day_of_era - 719468
