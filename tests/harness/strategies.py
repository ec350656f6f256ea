"""Hypothesis strategies of record values for the batch path's property tests (unit/domain:
test_batch_path.py, test_oracle_properties.py).

The values are built by hand (an amount's text is exactly the one drawn) around the edges of the
bulk path's shortcuts: processed-orders records exactly as process writes them and a character or
a field away from that, amounts at the cents path's limits and off it, timestamps in and out of
the shapes the bulk reader knows (and invalid ones), and every kind of invalid record.
"""

import json
from datetime import datetime, timedelta, timezone

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from include.pipeline.domain.catalogue import PRODUCTS
from include.pipeline.domain.orders import MAX_ORDER_BYTES

W = 1767607200  # 2026-01-05T10:00:00Z, a window's start
PROCESSED_AT = "2026-01-05T10:05:00.000000Z"
EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
FIELDS = ("order_id", "user_id", "product_id", "amount", "timestamp")
SETTINGS = settings(deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

# Order ids: a few that repeat (duplicates), and any text: non-ASCII, quotes, backslashes, controls.
POOL = ["o-1", "o-2", "o-3", "o-4", "ö-5"]
ids = st.one_of(
    st.sampled_from([*POOL, 'o"6', "o\\7", "o\n8", "o/9", "{", ","]),
    st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), min_size=1, max_size=8),
    st.text(min_size=1),
)
# Lone surrogates: as a JSON escape (which msgspec rejects) or as UTF-8 (not valid UTF-8).
surrogate_ids = st.text(st.characters(categories=["Cs"]), min_size=1, max_size=2)
products = st.sampled_from(["prod-1", "prod-2", "prod-3", "prod-4", "prod-5", "prod-1", "prod-2"])
unknown_products = st.sampled_from(
    ["prod-9", "prod-0", "PROD-1", "prod-1 ", " prod-1", "prod-01", "prod-", "", "Laptop"],
)

# Amounts on the cents path (up to 11 digits, 2 places) and at its edges, and every way off it.
EDGE_AMOUNTS = [
    "0.01", "1", "19.99", "0.1", "0.10", "10", "1.00", "99999999999.99", "99999999999", "100000000000",
    "100000000000.5", "1234.567", "0.001", "0.005", "19.990", "1E+2", "1e2", "1.5e3", "1.5E-1", "2e-2",
    "1E0", "0", "0.0", "0.00", "-0", "-0.0", "-1", "-19.99", "1e400", "-1e400", "1e-400", "5e-324",
    "2e-324", "1.7976931348623157e308", "1.7976931348623159e308", "123456789012345678901234567890",
    "0.000000000000000000000001", "9223372036854775807", "9223372036854775808", "18446744073709551616",
]
# Not JSON numbers: a reader that skips msgspec must reject them itself.
BAD_NUMBERS = [
    "01", "00", "00.5", "01.50", "1.", ".5", ".55", "5.", "1..5", "1.2.", "1.2.3", "+1", "--1", "0x10",
    "1_000", "1,5", " 5", "5 ", "1 2", "1e", "1e+", "NaN", "Infinity", "-", "", "١", "1.5 ", "0.5.",
]
NOT_NUMBERS = ['"5"', '"19.99"', "true", "false", "null", "[]", "{}", '""', "[1]"]
cents_amounts = st.integers(1, 10**13 - 1).map(lambda c: f"{c // 100}.{c % 100:02d}")
whole_amounts = st.integers(1, 10**11 - 1).map(str)


@st.composite
def decimal_amounts(draw):
    """A JSON number: sign, up to 14 digits, up to 4 places, maybe an exponent."""
    digits, places = draw(st.integers(0, 10**14)), draw(st.integers(0, 4))
    text = f"{digits // 10**places}.{digits % 10**places:0{places}d}" if places else str(digits)
    sign = draw(st.sampled_from(["", "", "", "-"]))
    exponent = draw(st.sampled_from(["", "", "", "", "e2", "E+1", "e-1", "E-3", "e0"]))
    return sign + text + exponent


dime_amounts = st.integers(1, 10**12 - 1).map(lambda d: f"{d // 10}.{d % 10}")
bulk_amounts = st.one_of(cents_amounts, whole_amounts, dime_amounts)
amounts = st.one_of(
    bulk_amounts, st.sampled_from(EDGE_AMOUNTS), decimal_amounts(), st.sampled_from(BAD_NUMBERS),
)
valid_amounts = st.one_of(
    bulk_amounts, st.sampled_from(["0.01", "1", "19.99", "99999999999.99", "100000000000", "1234.567",
                                   "1E+2", "1.5e3", "0.001", "1.5E-1", "5e-324", "10", "0.10"]),
)


def zone_text(minutes: int | None, style: str) -> str:
    """A UTC offset of ``minutes`` (None: no offset) in one of ISO-8601's spellings."""
    if minutes is None:
        return ""
    if minutes == 0 and style == "Z":
        return "Z"
    sign = "-" if minutes < 0 or minutes == 0 and style == "-0" else "+"
    hours, rest = divmod(abs(minutes), 60)
    return f"{sign}{hours:02d}{rest:02d}" if style == "compact" else f"{sign}{hours:02d}:{rest:02d}"


# (offset minutes or None, spelling); the common ones are those the bulk reader knows.
common_zones = st.tuples(
    st.one_of(st.none(), st.just(0), st.integers(-23 * 60 - 59, 23 * 60 + 59)),
    st.sampled_from(["Z", "colon"]),
)
zones = st.one_of(common_zones, st.tuples(
    st.one_of(st.just(0), st.sampled_from([60, -60, 330, -570, 23 * 60 + 59, -24 * 60, 24 * 60]),
              st.integers(-24 * 60, 24 * 60)),
    st.sampled_from(["Z", "colon", "compact", "-0"]),
))
separators = st.sampled_from(["T", "T", "T", "T", "t", " "])


@st.composite
def near_timestamps(draw, spread=st.integers(-4 * 3600, 4 * 3600), common=False):
    """A valid time near W (so that orders share windows, or are late), in many shapes; with
    ``common``, in one of the shapes the bulk reader knows (T, 0-6 places, Z or +HH:MM or none)."""
    micros = draw(st.one_of(st.just(0), st.integers(0, 999_999)))
    moment = EPOCH + timedelta(seconds=W + draw(spread), microseconds=micros)
    minutes, style = draw(common_zones if common else zones)
    if minutes is not None and abs(minutes) >= 24 * 60:
        minutes = 0
    local = moment + timedelta(minutes=minutes or 0)
    places = draw(st.integers(0, 6 if common else 7))
    fraction = f"{local.microsecond:06d}{draw(st.integers(0, 9))}"[:places]
    separator = "T" if common else draw(separators)
    text = local.strftime(f"%Y-%m-%d{separator}%H:%M:%S") + (f".{fraction}" if places else "")
    return text + zone_text(minutes, style)


def days_in(year: int, month: int) -> int:
    """Days of the month (proleptic Gregorian, any year, 0 too); 31 for a month out of range."""
    if month == 2:
        return 29 if year % 4 == 0 and (year % 100 != 0 or year % 400 == 0) else 28
    return 30 if month in (4, 6, 9, 11) else 31


@st.composite
def any_timestamps(draw, common=st.booleans()):
    """Date and time fields all valid or one of them just out of range (the day after a month's
    last, Feb 29 of any year, hour 24, second 60...), in the common shapes or (unless ``common``
    is True) any other."""
    odd = draw(st.sampled_from([None, "year", "month", "day", "day", "day", "hour", "minute", "second"]))
    years = [0, 10000] if odd == "year" else [1, 1900, 1969, 2000, 2024, 2026, 2100, 9999]
    year = draw(st.sampled_from(years))
    month = draw(st.sampled_from([0, 13]) if odd == "month" else st.integers(1, 12))
    if odd == "day":
        month = draw(st.sampled_from([month, 2, 4, 6, 9, 11]))
        day = days_in(year, month) + draw(st.sampled_from([0, 1, 1]))
    else:
        day = draw(st.integers(1, days_in(year, month)))
    hour = draw(st.sampled_from([24, 25]) if odd == "hour" else st.sampled_from([0, 23]) | st.integers(0, 23))
    minute = draw(st.sampled_from([60, 99]) if odd == "minute" else st.integers(0, 59))
    seconds = st.sampled_from([60, 61]) if odd == "second" else st.sampled_from([0, 59]) | st.integers(0, 59)
    second = draw(seconds)
    common = draw(common)
    places = draw(st.integers(0, 6 if common else 7))
    fraction = "".join(draw(st.lists(st.sampled_from("0123456789"), min_size=places, max_size=places)))
    minutes, style = draw(common_zones if common else zones)
    separator = "T" if common else draw(separators)
    return (f"{year:04d}-{month:02d}-{day:02d}{separator}{hour:02d}:{minute:02d}:{second:02d}"
            + (f".{fraction}" if places else "") + zone_text(minutes, style))


EDGE_TIMESTAMPS = [
    "2026-01-05T10:00:00Z", "2026-01-05T10:00:00", "2026-01-05T10:00:00.5Z", "2026-01-05T10:00:00.123456Z",
    "2026-01-05T10:00:00.1234567Z", "2026-01-05T10:00:00.123456+01:00", "2026-01-05t10:00:00z",
    "2026-01-05 10:00:00", "2026-02-29T10:00:00Z", "2000-02-29T10:00:00Z", "2100-02-29T00:00:00Z",
    "2024-02-29T23:59:59-01:00", "0001-01-01T00:00:00+01:00", "0001-01-01T00:00:00Z",
    "0001-01-01T00:30:00+00:30", "0001-01-01T00:00:00-01:00", "9999-12-31T23:59:59-01:00",
    "9999-12-31T23:59:59.999999Z", "9999-12-31T23:59:59.999999+00:01", "0000-01-01T00:00:00Z",
    "2026-01-05T24:00:00Z", "2026-01-05T23:59:60Z", "2026-01-05T10:00:00.Z", "2026-01-05T10:00:00.",
    "2026-01-05T10:00:00+24:00", "2026-01-05T10:00:00+23:59", "2026-01-05T10:00:00-00:00",
    "2026-01-05T10:00:00+0100", "2026-01-05T10:00:00+01", "2026-01-05T10:00:00+01:00:30",
    "2026-01-05T10:00:00,5Z", "2026-01-05T10", "2026-01-05T10:00", "20260105T100000", "2026-W02-1T10:00:00",
    "2026-01-05", "yesterday", "", "T", "2026-01-05T10:00:00Z ", " 2026-01-05T10:00:00Z",
    "２０２６-01-05T10:00:00Z", "2026-01-05T10:00:0٠Z", "2026-01-05T10:00:00\u00a0",
    "2026-01-05T10:00:00+01:0Z", "+2026-01-05T10:00:00Z", "1969-12-31T23:59:59.999999Z",
    "1970-01-01T00:00:00Z", "1969-12-31T23:59:59Z",
]
timestamps = st.one_of(
    near_timestamps(common=True), st.sampled_from(EDGE_TIMESTAMPS), near_timestamps(), any_timestamps(),
)


@st.composite
def json_strings(draw, texts):
    """A JSON string of a drawn text, escaped as json.dumps does (non-ASCII raw or as escapes)."""
    return json.dumps(draw(texts), ensure_ascii=draw(st.booleans()))


def encoded(pairs: list[tuple[str, str]], colon: str = ":", comma: str = ",") -> bytes:
    """A JSON object of these (key, JSON text) pairs, keys as given; a lone surrogate as its 3
    UTF-8 bytes (so not valid UTF-8)."""
    text = "{" + comma.join(f'"{name}"{colon}{value}' for name, value in pairs) + "}"
    return text.encode("utf-8", "surrogatepass")


@st.composite
def order_values(draw, order_ids=ids, amounts=amounts, timestamps=timestamps, broken=True):
    """An order's JSON bytes, written by hand; with ``broken``, sometimes one that breaks the
    contract in one way (a field missing, empty or of the wrong type, extra fields...)."""
    fields = {
        "order_id": draw(json_strings(order_ids)),
        "user_id": draw(json_strings(st.one_of(st.sampled_from(["u-1", "ü-2"]), st.text(min_size=1)))),
        "product_id": json.dumps(draw(products)),
        "amount": draw(amounts),
        "timestamp": draw(json_strings(timestamps)),
    }
    fault = draw(st.sampled_from(["none"] * 10 + [
        "missing", "extra", "processed", "processed", "empty", "not_a_string", "unknown_product",
        "not_a_number", "timestamp_not_a_string", "duplicate_key", "surrogate", "deep",
    ])) if broken else "none"
    if fault == "missing":
        del fields[draw(st.sampled_from(FIELDS))]
    elif fault == "extra":
        fields["coupon"] = draw(st.sampled_from(['"X"', "null", "1", "{}", "[1,2]"]))
    elif fault == "processed":  # a processed-orders record fed back
        fields["product_name"] = draw(st.sampled_from(['"Laptop"', '"Phone"', "null", "1"]))
        fields["processed_at"] = draw(st.sampled_from([json.dumps(PROCESSED_AT), "null", '"x"']))
    elif fault == "empty":
        fields[draw(st.sampled_from(["order_id", "user_id"]))] = '""'
    elif fault == "not_a_string":
        fields[draw(st.sampled_from(["order_id", "user_id", "product_id"]))] = draw(
            st.sampled_from(["1", "null", "true", "[]", '["o-1"]', "{}"]))
    elif fault == "unknown_product":
        fields["product_id"] = draw(json_strings(unknown_products))
    elif fault == "not_a_number":
        fields["amount"] = draw(st.sampled_from(NOT_NUMBERS))
    elif fault == "timestamp_not_a_string":
        fields["timestamp"] = draw(st.sampled_from(["1767607200", "1767607200000", "null", "[]", "1.5"]))
    elif fault == "surrogate":
        fields[draw(st.sampled_from(["order_id", "user_id"]))] = draw(json_strings(surrogate_ids))
    elif fault == "deep":  # past msgspec's nesting limit, in a field Wire takes as Any
        fields["product_name"] = "[" * 1100 + "]" * 1100
    pairs = list(fields.items())
    if draw(st.integers(0, 4)) == 0:
        pairs = draw(st.permutations(pairs))
    if fault == "duplicate_key":  # a field twice, with another value (the last one wins)
        name = draw(st.sampled_from(FIELDS))
        other = {
            "order_id": json_strings(order_ids), "user_id": st.just('"u-3"'), "amount": amounts,
            "product_id": products.map(json.dumps), "timestamp": json_strings(timestamps),
        }[name]
        pairs.insert(draw(st.integers(0, len(pairs))), (name, draw(other)))
    return encoded(pairs, *draw(st.sampled_from([(":", ","), (": ", ", "), (" : ", " ,\n\t")])))


# Printable ASCII but the quote and the backslash: strings that JSON writes without an escape.
plain_texts = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E, exclude_characters='"\\'))
CANONICAL = ("order_id", "user_id", "product_id", "product_name", "amount", "timestamp", "processed_at")
# Bytes that move, add or break a token: a processed-orders record one character away.
NEAR_MISSES = [b" ", b'"', b",", b":", b"\\", b"0", b".", b"}", b"{", b"\x7f", b"\t", b"\xc3\xa9", b""]


@st.composite
def processed_values(draw, order_ids=ids, amounts=amounts, timestamps=timestamps):
    """A processed-orders record as process writes it (the analyze stage's input: its 7 fields in
    order, no spaces), often with its fields' values of other kinds and sometimes a field or a
    character away from that."""
    product_id = draw(st.one_of(products, products, unknown_products))
    values = {
        "order_id": draw(st.one_of(st.sampled_from(POOL).map(json.dumps), json_strings(order_ids))),
        "user_id": draw(st.one_of(st.just('"u-1"'), json_strings(plain_texts), json_strings(ids))),
        "product_id": json.dumps(product_id),
        "product_name": draw(st.one_of(
            st.just(json.dumps(PRODUCTS.get(product_id, "Laptop"))),
            json_strings(st.one_of(plain_texts, ids)), st.sampled_from(NOT_NUMBERS),
        )),
        "amount": draw(st.one_of(bulk_amounts, bulk_amounts, amounts, st.sampled_from(NOT_NUMBERS))),
        "timestamp": draw(json_strings(st.one_of(near_timestamps(common=True), timestamps))),
        "processed_at": draw(st.one_of(st.just(json.dumps(PROCESSED_AT)), json_strings(plain_texts),
                                       st.sampled_from(NOT_NUMBERS))),
    }
    pairs = [(name, values[name]) for name in CANONICAL]
    change = draw(st.sampled_from(["none"] * 6 + ["missing", "extra", "swapped", "key", "spaced"]))
    if change == "missing":
        del pairs[draw(st.integers(0, len(pairs) - 1))]
    elif change == "extra":
        extra = ("coupon", draw(st.sampled_from(['"X"', "1", "null"])))
        pairs.insert(draw(st.integers(0, len(pairs))), extra)
    elif change == "swapped":
        i = draw(st.integers(0, len(pairs) - 2))
        pairs[i:i + 2] = pairs[i + 1], pairs[i]
    elif change == "key":  # a key spelt otherwise: escaped (the same key to JSON), cased, renamed
        i = draw(st.integers(0, len(pairs) - 1))
        name, text = pairs[i]
        spellings = [name.replace("_", "\\u005f"), name.upper(), name[:-1], name + "s"]
        pairs[i] = draw(st.sampled_from(spellings)), text
    value = encoded(pairs, *(": ", ", ") if change == "spaced" else (":", ","))
    for _ in range(draw(st.integers(0, 2)) if draw(st.integers(0, 3)) == 0 else 0):
        at = draw(st.integers(0, len(value)))
        cut = draw(st.integers(0, 1))
        value = value[:at] + draw(st.sampled_from(NEAR_MISSES)) + value[at + cut:]
    return value


def padded(value: bytes, size: int) -> bytes:
    """The JSON value with spaces after its first byte up to ``size`` bytes."""
    return value[:1] + b" " * (size - len(value)) + value[1:]


@st.composite
def broken_values(draw):
    """A record value that is not an order at all: no value, too large, not UTF-8 or JSON, ..."""
    order = draw(st.one_of(order_values(broken=False), processed_values()))
    kind = draw(st.integers(0, 10))
    if kind == 0:
        return None  # a tombstone
    if kind == 1:
        return b""
    if kind == 2:  # a valid order at, and just past, the size limit
        return padded(order, MAX_ORDER_BYTES + draw(st.integers(-1, 1)))
    if kind == 3:  # not UTF-8, inside a string or anywhere
        bad = draw(st.sampled_from([b"\xff", b"\xc3(", b"\xed\xa0\x80", b"\xc0\xaf", b"\xf8\x88\x80\x80\x80",
                                    b"\xe2\x82"]))
        at = order.find(b'"u') + 1 if draw(st.booleans()) else draw(st.integers(0, len(order)))
        return order[:at] + bad + order[at:]
    if kind == 4:  # cut short
        return order[:draw(st.integers(1, len(order) - 1))]
    if kind == 5:  # something before or after it (whitespace is still JSON)
        before = draw(st.sampled_from([b"", b"", b" ", b"\n", b"\xef\xbb\xbf", b"x"]))
        return before + order + draw(st.sampled_from([b"", b" ", b"\r\n\t", b"x", b"{}", b",", b"\x00"]))
    if kind == 6:
        return draw(st.sampled_from([
            b"{not json", b"{'order_id': 'o-1'}", b'{"a":1,}', b"NaN", b"Infinity", b"{", b"}", b" ",
            b'{"order_id":"o-1" "user_id":"u"}', b"\xef\xbb\xbf{}",
        ]))
    if kind == 7:  # JSON, not an object
        return draw(st.sampled_from([b"[1]", b"1", b'"o-1"', b"null", b"true", b"[]", b"1.5", b"[{}]"]))
    if kind == 8:
        return draw(st.sampled_from([b"{}", b'{"order_id":"o-1"}', b'{"amount":1}']))
    if kind == 9:  # a string that makes the value too large
        return order[:1] + b'"x":"' + b"x" * MAX_ORDER_BYTES + b'",' + order[1:]
    return draw(st.binary(max_size=24))


# Orders the bulk path reads itself (orders and processed-orders records), orders of any kind,
# and values that are no order at all.
bulk_times = st.one_of(near_timestamps(common=True), any_timestamps(common=st.just(True)))
bulk_orders = order_values(amounts=bulk_amounts, timestamps=bulk_times, broken=False)
record_values = st.one_of(
    bulk_orders, processed_values(), order_values(), processed_values(), broken_values(),
)
# Mostly valid orders whose ids repeat and whose times share windows, or are late.
countable_times = st.one_of(near_timestamps(st.integers(-600, 600), common=True), near_timestamps())
countable_values = st.one_of(
    order_values(
        order_ids=st.sampled_from(POOL), amounts=valid_amounts, timestamps=countable_times, broken=False,
    ),
    processed_values(order_ids=st.sampled_from(POOL), amounts=valid_amounts, timestamps=countable_times),
    record_values,
)

grace_and_horizon = st.sampled_from([60, 120, 0]).flatmap(
    lambda grace: st.tuples(st.just(grace), st.sampled_from([grace + 60, 3600, 86400])))
