"""The pipeline's expected outcome, from the data contract alone (docs/concepts/data-contract.md): its
words, not its code.

Standard library only: tests/unit/test_oracle.py fails on any other import, so that nothing of
include/, plugins/ or dags/ (nor a test module that uses them) can make the oracle agree with the
code by sharing it. Written for clarity, one record and one order at a time.

    oracle = Oracle(partitions=6, grace_seconds=3600, horizon_seconds=86400)
    oracle.run(values)        # one run of process and analyze over the orders values, in order
    oracle.metrics()          # the metrics.json lines: every (window, product) counted, all runs
    oracle.dead_letters       # Counter of (reason, order_id) dead-lettered, all runs
"""

from __future__ import annotations

import json
import re
import sys
import zlib
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from decimal import Decimal, InvalidOperation
from fractions import Fraction
from typing import Iterable

PRODUCTS = {
    "prod-1": "Laptop", "prod-2": "Phone", "prod-3": "Tablet", "prod-4": "Monitor", "prod-5": "Keyboard",
}
REQUIRED = ("order_id", "user_id", "product_id", "amount", "timestamp")
MAX_BYTES = 64 * 1024
MAX_DEPTH = 1000  # deeper: invalid_json; 501 to 1000 is not decided (Undecided)
SURE_DEPTH = 500
MAX_INTEGER_CHARS = 4300
LARGEST = Decimal(sys.float_info.max)  # exact value of the largest finite double
SMALLEST = Decimal(5e-324)  # exact value of the smallest positive double
EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
US = 1_000_000
WINDOW_US = 60 * US


class Undecided(Exception):
    """The contract leaves the verdict of this value open (nesting between 500 and 1000 levels)."""


class Bad(Exception):
    """Why a value is not an order: a dead-letter reason."""

    def __init__(self, reason: str, *why: str) -> None:
        super().__init__(reason, *why)
        self.reason = reason


# JSON, byte by byte: the first fault from the left decides between invalid_json and bad_utf8.

_SPACE = re.compile(rb"[ \t\n\r]*")
# A string's JSON: no raw quote, backslash or control byte but as escapes (any other byte for now).
_STRING = re.compile(rb'"((?:[^"\\\x00-\x1f]++|\\["\\/bfnrt]|\\u[0-9a-fA-F]{4})*+)"')
_ESCAPE = re.compile(rb"\\(u[0-9a-fA-F]{4}|.)")
_NUMBER = re.compile(rb"-?(?:0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?")
_LITERALS = {b"true": True, b"false": False, b"null": None}


@dataclass(frozen=True)
class Number:
    """A JSON number as written (its value: ``decimal``, None if it has no decimal value)."""

    text: str

    @property
    def decimal(self) -> Decimal | None:
        """The number's exact value."""
        try:
            return Decimal(self.text)
        except InvalidOperation:  # an exponent beyond what a decimal can hold
            return None


def _string(raw: bytes, at: int) -> tuple[str, int]:
    match = _STRING.match(raw, at)
    if match is None:
        raise Bad("invalid_json")
    body = match.group(1)
    # Escaped UTF-16: a high surrogate only right before a low one, a low one only right after.
    escapes = [(m.start(), m.group(1)) for m in _ESCAPE.finditer(body)]
    pending = None  # where a high surrogate's escape ends
    for start, escape in escapes:
        code = int(escape[1:], 16) if escape.startswith(b"u") else None
        if pending is not None and (start != pending or code is None or not 0xDC00 <= code <= 0xDFFF):
            raise Bad("invalid_json")
        if pending is None and code is not None and 0xDC00 <= code <= 0xDFFF:
            raise Bad("invalid_json")
        pending = start + 6 if code is not None and 0xD800 <= code <= 0xDBFF else None
    if pending is not None:
        raise Bad("invalid_json")
    try:
        text = body.decode("utf-8")  # strict: no surrogates, no overlong forms
    except UnicodeDecodeError:
        raise Bad("bad_utf8") from None
    return (json.loads(f'"{text}"') if "\\" in text else text), match.end()


def _scalar(raw: bytes, at: int) -> tuple[object, int]:
    for word, value in _LITERALS.items():
        if raw.startswith(word, at):
            return value, at + len(word)
    match = _NUMBER.match(raw, at)
    if match is None or match.end() == at:
        raise Bad("invalid_json")
    number = Number(match.group(0).decode())
    if not match.group(1) and not match.group(2) and len(number.text) > MAX_INTEGER_CHARS:
        raise Bad("invalid_json")
    if number.decimal is None:
        raise Bad("invalid_json")
    return number, match.end()


def read_json(raw: bytes) -> object:
    """The JSON document in ``raw`` (objects as dicts, the last of a repeated key winning, numbers
    as ``Number``); raises Bad (invalid_json or bad_utf8) or Undecided: past SURE_DEPTH levels,
    only going on past MAX_DEPTH decides (invalid_json)."""
    deep: list[bool] = []
    try:
        value = _read_json(raw, deep)
    except Bad as bad:
        if deep and not bad.args[1:]:
            raise Undecided("nested deeper than SURE_DEPTH levels") from None
        raise
    if deep:
        raise Undecided("nested deeper than SURE_DEPTH levels")
    return value


def _read_json(raw: bytes, deep: list[bool]) -> object:
    at = _SPACE.match(raw, 0).end()
    stack: list[list] = []  # open containers: [container, key awaited (objects)]
    while True:
        # A value at ``at``.
        if at < len(raw) and raw[at] in b"[{":
            if len(stack) >= MAX_DEPTH:
                raise Bad("invalid_json", "too deep")
            if len(stack) >= SURE_DEPTH:
                deep.append(True)
            container: object = [] if raw[at] == ord("[") else {}
            stack.append([container, None])
            at = _SPACE.match(raw, at + 1).end()
            closing = b"]" if isinstance(container, list) else b"}"
            if raw[at:at + 1] == closing:
                value, at = stack.pop()[0], at + 1
            elif isinstance(container, dict):
                at = _key(raw, at, stack[-1])
                continue
            else:
                continue
        elif raw[at:at + 1] == b'"':
            value, at = _string(raw, at)
        else:
            value, at = _scalar(raw, at)
        # ``value`` is complete: put it in its container, then what follows it.
        while True:
            at = _SPACE.match(raw, at).end()
            if not stack:
                if at != len(raw):
                    raise Bad("invalid_json")
                return value
            top = stack[-1]
            if isinstance(top[0], dict):
                top[0][top[1]] = value
            else:
                top[0].append(value)
            closing = b"}" if isinstance(top[0], dict) else b"]"
            following = raw[at:at + 1]
            if following == b",":
                at = _SPACE.match(raw, at + 1).end()
                if isinstance(top[0], dict):
                    at = _key(raw, at, top)
                break
            if following != closing:
                raise Bad("invalid_json")
            value, at = stack.pop()[0], at + 1


def _key(raw: bytes, at: int, top: list) -> int:
    """Reads ``"key" :`` at ``at`` into ``top``; returns where its value starts."""
    if raw[at:at + 1] != b'"':
        raise Bad("invalid_json")
    top[1], at = _string(raw, at)
    at = _SPACE.match(raw, at).end()
    if raw[at:at + 1] != b":":
        raise Bad("invalid_json")
    return _SPACE.match(raw, at + 1).end()


# Timestamps

# The shape producers write: date, T, time with up to 6 fraction digits, then Z, an offset or none.
_COMMON = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,6}))?(Z|[+-]\d{2}:\d{2})?", re.ASCII,
)


def event_time(value: object) -> datetime | None:
    """The UTC time of a timestamp the contract accepts; None for any other value."""
    if not isinstance(value, str):
        return None
    common = _COMMON.fullmatch(value)
    try:
        if common:
            year, month, day, hour, minute, second, fraction, zone = common.groups()
            micros = int((fraction or "").ljust(6, "0"))
            local = datetime(int(year), int(month), int(day), int(hour), int(minute), int(second), micros)
            if zone in (None, "Z"):
                offset = timedelta(0)
            else:
                hours, minutes = int(zone[1:3]), int(zone[4:6])
                if hours > 23 or minutes > 59:
                    return None
                offset = (1 if zone[0] == "+" else -1) * timedelta(hours=hours, minutes=minutes)
            return (local - offset).replace(tzinfo=timezone.utc)
        if "T" not in value[8:].upper() and " " not in value:  # a date and a time, not a date alone
            return None
        moment = datetime.fromisoformat(value)
        if moment.tzinfo is None:
            return moment.replace(tzinfo=timezone.utc)
        return moment.astimezone(timezone.utc)
    except (ValueError, OverflowError):  # no such date or time, or outside years 1..9999 in UTC
        return None


# Orders


@dataclass(frozen=True)
class Order:
    """A valid order, as the contract reads it."""

    order_id: str
    user_id: str
    product_id: str
    amount: Decimal
    event_us: int  # UTC, microseconds since the epoch
    amount_text: str  # as written
    timestamp: str

    @property
    def product_name(self) -> str:
        """Its product's name (enrichment)."""
        return PRODUCTS[self.product_id]

    @property
    def window_start(self) -> int:
        """The start (epoch seconds) of its 60-second window: floored, also before 1970."""
        return self.event_us // WINDOW_US * 60


def parse(value: bytes | None) -> Order | str:
    """The order in a record's value, or the reason it goes to orders-dlq (the first rule broken,
    in the contract's order)."""
    if value is None:
        return "tombstone"
    if not value:
        return "empty"
    if len(value) > MAX_BYTES:
        return "too_large"
    try:
        doc = read_json(value)
    except Bad as bad:
        return bad.reason
    if not isinstance(doc, dict):
        return "not_an_object"
    if any(name not in doc for name in REQUIRED):
        return "missing_field"
    order_id, user_id, product_id, amount, timestamp = (doc[name] for name in REQUIRED)
    if not isinstance(order_id, str) or not order_id:
        return "invalid_order_id"
    if not isinstance(user_id, str) or not user_id:
        return "invalid_user_id"
    if not isinstance(product_id, str) or product_id not in PRODUCTS:
        return "unknown_product"
    exact = amount.decimal if isinstance(amount, Number) else None
    if exact is None or not SMALLEST <= exact <= LARGEST:
        return "invalid_amount"
    moment = event_time(timestamp)
    if moment is None:
        return "invalid_timestamp"
    event_us = (moment - EPOCH) // timedelta(microseconds=1)
    return Order(order_id, user_id, product_id, exact, event_us, amount.text, timestamp)


def order_id_of(value: bytes | None) -> str | None:
    """The order id a dead letter names: the value's ``order_id`` if it is a JSON object with a
    string there; else None."""
    if not value or len(value) > MAX_BYTES:
        return None
    try:
        doc = read_json(value)
    except (Bad, Undecided):
        return None
    found = doc.get("order_id") if isinstance(doc, dict) else None
    return found if isinstance(found, str) else None


def partition_of(order_id: str, partitions: int) -> int:
    """The processed-orders partition of an order (librdkafka's default partitioner on its key):
    CRC-32 of the id's UTF-8, modulo the partitions."""
    return zlib.crc32(order_id.encode("utf-8")) % partitions


def half_up_cents(value: Fraction) -> Decimal:
    """Round a non-negative exact value half-up to cents."""
    whole, rest = divmod(value * 100, 1)
    cents = int(whole) + (1 if rest >= Fraction(1, 2) else 0)
    return Decimal(f"{cents // 100}.{cents % 100:02d}")  # from text: no context's precision rounds it


@dataclass
class Partition:
    """What analyze keeps of one processed-orders partition: its stream time and counted ids."""

    watermark: int | None = None  # the newest event time counted (us)
    seen: dict[str, int] = field(default_factory=dict)  # counted order id -> its event time (us)


@dataclass
class Oracle:
    """Process, then analyze, run after run, as the contract says; the state carries across runs."""

    partitions: int = 6
    grace_seconds: int = 3600
    horizon_seconds: int = 86400
    windows: dict = field(default_factory=lambda: defaultdict(lambda: [0, Fraction(0)]))
    state: dict = field(default_factory=lambda: defaultdict(Partition))
    dead_letters: Counter = field(default_factory=Counter)  # (reason, order_id)
    valid: list = field(default_factory=list)  # every valid order, in process order
    counted: list = field(default_factory=list)  # every order counted

    def process(self, values: Iterable[bytes | None]) -> list[Order]:
        """The valid orders of these values, in order; the others dead-lettered."""
        valid = []
        for value in values:
            result = parse(value)
            if isinstance(result, Order):
                valid.append(result)
            else:
                self.dead_letters[(result, order_id_of(value))] += 1
        self.valid += valid
        return valid

    def analyze(self, partition: int, orders: Iterable[Order]) -> list[str | None]:
        """Offer the orders of one partition in turn: a verdict each (None: counted)."""
        grace, part = self.grace_seconds * US, self.state[partition]
        verdicts = []
        for order in orders:
            if order.order_id in part.seen:
                verdict = "duplicate"
            elif part.watermark is not None and order.window_start * US + WINDOW_US + grace < part.watermark:
                verdict = "late"
            else:
                verdict = None
                part.seen[order.order_id] = order.event_us
                part.watermark = max(order.event_us, part.watermark or order.event_us)
                window = self.windows[(order.window_start, order.product_id)]
                window[0] += 1
                window[1] += Fraction(order.amount)
                self.counted.append(order)
            if verdict:
                self.dead_letters[(verdict, order.order_id)] += 1
            verdicts.append(verdict)
        return verdicts

    def count(self, orders: Iterable[Order]) -> None:
        """analyze() each order on the partition its id goes to, in the given order."""
        for order in orders:
            self.analyze(partition_of(order.order_id, self.partitions), [order])

    def end_run(self) -> None:
        """A run's end: each partition forgets the ids counted more than the horizon before its
        watermark."""
        for part in self.state.values():
            if part.watermark is not None:
                oldest = part.watermark - self.horizon_seconds * US
                part.seen = {i: at for i, at in part.seen.items() if at >= oldest}

    def run(self, values: Iterable[bytes | None]) -> Oracle:
        """One run of process and analyze over these orders values, in this order."""
        self.count(self.process(values))
        self.end_run()
        return self

    def metrics(self) -> list[dict]:
        """The metrics of every (window, product) counted, as metrics.json lines, in key order."""
        return [
            {
                "window_start": start, "window_end": start + 60, "product_id": product_id,
                "product_name": PRODUCTS[product_id], "order_count": count,
                "total_revenue": half_up_cents(total), "avg_order_value": half_up_cents(total / count),
            }
            for (start, product_id), (count, total) in sorted(self.windows.items())
        ]


def dead_letters_of(records: Iterable) -> Counter:
    """(reason, order_id) of dead-letter records (anything with ``headers``, a dict with bytes
    values, and ``value``): what a test reads of orders-dlq, to compare with the oracle's."""
    return Counter((r.headers["reason"].decode(), order_id_of(r.value)) for r in records)
