from decimal import Decimal
from hashlib import blake2b

from include.pipeline import codec, telemetry
from include.pipeline.analyzer import Analyzer
from include.pipeline.dedup import fingerprint
from include.pipeline.steps import Outgoing, Rejection, analyze, process
from include.pipeline.windows import LedgerMark, ledger_of

W = 1767607200  # 2026-01-05T10:00:00Z
US = 1_000_000
PROCESSED_AT = "2026-01-05T10:05:00.000000Z"
P1, P2, P3, P4 = 1767607500_123, 1767607500_456, 1767607501_000, 1767607600_789  # produce times (ms)


class Msg:
    """A consumed record as confluent_kafka gives it: key(), value(), timestamp()."""

    def __init__(self, value, key=None, ms=None, kind=1):
        self._value, self._key = value, key
        self._timestamp = (0, -1) if ms is None else (kind, ms)

    def key(self):
        return self._key

    def value(self):
        return self._value

    def timestamp(self):
        return self._timestamp


def raw(order_id, product_id, amount, timestamp, user_id="u-1", **extra):
    """An order's JSON bytes, written by hand so the amount is exactly the text given."""
    fields = [f'"order_id":"{order_id}"', f'"user_id":"{user_id}"', f'"product_id":"{product_id}"',
              f'"amount":{amount}', f'"timestamp":"{timestamp}"']
    fields += [f'"{name}":{value}' for name, value in extra.items()]
    return ("{" + ",".join(fields) + "}").encode()


def decoded(value):
    """A JSON value with each Decimal as its exact text (so 0.10 is not 0.1)."""
    return {name: str(v) if isinstance(v, Decimal) else v for name, v in codec.decode(value).items()}


def segment(*orders):
    """The analyze-state record that saves the counted (order_id, event us) pairs, in order."""
    value = b"".join(fingerprint(order_id) for order_id, _ in orders)
    value += b"".join(event_us.to_bytes(8, "little", signed=True) for _, event_us in orders)
    return b"orders:" + blake2b(value, digest_size=16).hexdigest().encode(), value


UNKNOWN_PRODUCT = "product_id must be one of prod-1, prod-2, prod-3, prod-4, prod-5, got 'prod-9'"

# process


def test_process_enriches_valid_orders_in_order_and_rejects_the_rest_with_the_parsers_reason():
    batch = [
        Msg(raw("o-1", "prod-3", "19.99", "2026-01-05T10:00:30Z", coupon='"X"'), b"o-1", P1),
        Msg(b"{not json", b"junk", P2),
        Msg(raw("o-2", "prod-9", "1", "2026-01-05T10:00:31Z"), b"o-2", P2),
        Msg(raw("o-3", "prod-1", "-5.50", "2026-01-05T10:00:32Z"), b"o-3", P2),
        Msg(None, b"o-4", P2),
        Msg(raw("o-5", "prod-5", "0.10", "2026-01-05T12:00:33+02:00", user_id="u-5")),
        Msg(b'{"order_id":"o-6","user_id":"u","product_id":"prod-1","amount":5}', b"o-6", P3),
        Msg(b"", b"o-7", P3),
        Msg(raw("o-8", "prod-1", '"5"', "2026-01-05T10:00:34Z"), b"o-8", P3),
        Msg(raw("o-9", "prod-1", "5", "yesterday"), b"o-9", P3),
        Msg(b"[1]", b"o-10", P3),
        Msg(raw("o-11", "prod-2", "1234.567", "2026-01-05T10:00:35.5Z"), b"o-11", P4, kind=2),
    ]
    result = process(batch, PROCESSED_AT)

    # Keyed by order id, whatever the input's key was (o-5 had none).
    assert [(out.key, out.timestamp, out.headers) for out in result.valid] == [
        (b"o-1", P1, None), (b"o-5", 0, None), (b"o-11", P4, None),
    ]
    assert [decoded(out.value) for out in result.valid] == [
        {"order_id": "o-1", "user_id": "u-1", "product_id": "prod-3", "product_name": "Tablet",
         "amount": "19.99", "timestamp": "2026-01-05T10:00:30Z", "processed_at": PROCESSED_AT},
        {"order_id": "o-5", "user_id": "u-5", "product_id": "prod-5", "product_name": "Keyboard",
         "amount": "0.10", "timestamp": "2026-01-05T12:00:33+02:00", "processed_at": PROCESSED_AT},
        {"order_id": "o-11", "user_id": "u-1", "product_id": "prod-2", "product_name": "Phone",
         "amount": "1234.567", "timestamp": "2026-01-05T10:00:35.5Z", "processed_at": PROCESSED_AT},
    ]
    assert result.valid[0] == Outgoing(
        b"o-1",
        b'{"order_id":"o-1","user_id":"u-1","product_id":"prod-3","product_name":"Tablet",'
        b'"amount":19.99,"timestamp":"2026-01-05T10:00:30Z","processed_at":"2026-01-05T10:05:00.000000Z"}',
        None,
        P1,
    )

    assert [(r.index, r.reason) for r in result.rejected] == [
        (1, "invalid_json"), (2, "unknown_product"), (3, "invalid_amount"), (4, "tombstone"),
        (6, "missing_field"), (7, "empty"), (8, "invalid_amount"), (9, "invalid_timestamp"),
        (10, "not_an_object"),
    ]
    assert result.rejected[0].detail.startswith("the value is not valid JSON: ")
    assert [r.detail for r in result.rejected[1:]] == [
        UNKNOWN_PRODUCT,
        "amount must be greater than 0, got -5.50",
        "the record has no value (null tombstone)",
        "timestamp is missing",
        "the record value is empty",
        "amount must be a JSON number, got '5'",
        "timestamp must be an ISO-8601 date and time string, got 'yesterday'",
        "the value is JSON list, not an object",
    ]
    assert all(type(r) is Rejection for r in result.rejected)


def test_process_gives_timestamp_0_to_records_without_a_usable_one():
    value = raw("o-1", "prod-1", "1.00", "2026-01-05T10:00:00Z")
    batch = [Msg(value, b"a"), Msg(value, b"b", 0), Msg(value, b"c", -5), Msg(value, b"d", P1, kind=0),
             Msg(value, b"e", 1)]
    result = process(batch, PROCESSED_AT)
    assert [out.timestamp for out in result.valid] == [0, 0, 0, 0, 1]
    assert result.rejected == []


def test_process_of_an_empty_batch_is_empty():
    result = process([], PROCESSED_AT)
    assert (result.valid, result.rejected) == ([], [])


# analyze


def metric_of(out):
    return decoded(out.value)


def test_analyze_counts_a_batch_into_its_windows_with_the_origins_of_the_orders_counted():
    analyzer = Analyzer.create(60, 3600)
    batch = [
        Msg(raw("a", "prod-1", "10.005", "2026-01-05T10:00:05Z"), b"a", P1),
        Msg(raw("b", "prod-2", "5.00", "2026-01-05T10:01:10Z"), b"b", P3),
        Msg(raw("c", "prod-1", "0.10", "2026-01-05T10:00:30Z"), b"c", P1),
        Msg(b"{not json", b"x", P1),
        Msg(raw("d", "prod-2", "2.50", "2026-01-05T10:01:59.999Z"), b"d", P2),
        Msg(raw("e", "prod-2", "1.00", "2026-01-05T10:01:30Z"), b"e"),  # no timestamp: counted, not timed
    ]
    result = analyze(analyzer, batch)

    assert [out.key for out in result.metrics] == [f"{W}:prod-1".encode(), f"{W + 60}:prod-2".encode()]
    assert [metric_of(out) for out in result.metrics] == [
        {"window_start": W, "window_end": W + 60, "product_id": "prod-1", "product_name": "Laptop",
         "order_count": 2, "total_revenue": "10.11", "avg_order_value": "5.05"},
        {"window_start": W + 60, "window_end": W + 120, "product_id": "prod-2", "product_name": "Phone",
         "order_count": 3, "total_revenue": "8.50", "avg_order_value": "2.83"},
    ]
    assert [telemetry.origins(out.headers) for out in result.metrics] == [
        [(P1, 2)], [(P2, 1), (P3, 1)],
    ]
    assert [[name for name, _ in out.headers] for out in result.metrics] == [["origins", "ledger"]] * 2
    # Every record of the batch carries the ledger after it: what the state's ledger record says.
    assert [ledger_of(out.headers) for out in result.metrics] == [LedgerMark(5, Decimal("18.61"))] * 2
    assert [out.timestamp for out in result.metrics] == [0, 0]
    assert result.counted == 5
    assert [(r.index, r.reason) for r in result.rejected] == [(3, "invalid_json")]

    watermark = (W + 119) * US + 999_000
    assert result.state == [
        (f"window:{W}:prod-1".encode(), b'{"count":2,"total":"10.105"}'),
        (f"window:{W + 60}:prod-2".encode(), b'{"count":3,"total":"8.50"}'),
        segment(("a", (W + 5) * US), ("b", (W + 70) * US), ("c", (W + 30) * US), ("d", watermark),
                ("e", (W + 90) * US)),
        (b"watermark", str(watermark).encode()),
        (b"ledger", b'{"count":5,"revenue":"18.605","revenue_cents":"18.61"}'),
    ]
    assert analyzer.watermark == watermark

    # The next batch: a duplicate, a late order, a tombstone and one new order in a window seen.
    second = [
        Msg(raw("a", "prod-1", "10.005", "2026-01-05T10:00:05Z"), b"a", P4),
        Msg(raw("f", "prod-3", "7.00", "2026-01-05T09:58:30Z"), b"f", P4),
        Msg(raw("g", "prod-1", "0.01", "2026-01-05T10:00:45Z"), b"g", P4),
        Msg(None, b"h", P4),
    ]
    result = analyze(analyzer, second)

    assert result.rejected == [
        Rejection(0, "duplicate", "order a is duplicate; not counted"),
        Rejection(1, "late", "order f is late; not counted"),
        Rejection(3, "tombstone", "the record has no value (null tombstone)"),
    ]
    assert [out.key for out in result.metrics] == [f"{W}:prod-1".encode()]
    assert metric_of(result.metrics[0]) == {
        "window_start": W, "window_end": W + 60, "product_id": "prod-1", "product_name": "Laptop",
        "order_count": 3, "total_revenue": "10.12", "avg_order_value": "3.37",
    }
    assert telemetry.origins(result.metrics[0].headers) == [(P4, 1)]
    assert ledger_of(result.metrics[0].headers) == LedgerMark(6, Decimal("18.62"))
    assert result.counted == 1
    assert result.state == [
        (f"window:{W}:prod-1".encode(), b'{"count":3,"total":"10.115"}'),
        segment(("g", (W + 45) * US)),
        (b"watermark", str(watermark).encode()),
        (b"ledger", b'{"count":6,"revenue":"18.615","revenue_cents":"18.62"}'),
    ]

    # Nothing new: no metrics, nothing counted, only the watermark and ledger saved again.
    result = analyze(analyzer, [Msg(raw("g", "prod-1", "0.01", "2026-01-05T10:00:45Z"), b"g", P4)])
    assert (result.metrics, result.counted) == ([], 0)
    assert result.rejected == [Rejection(0, "duplicate", "order g is duplicate; not counted")]
    assert [key for key, _ in result.state] == [b"watermark", b"ledger"]


def test_analyze_rejects_a_repeat_within_the_batch_and_invalid_records_with_the_parsers_reason():
    analyzer = Analyzer.create(60, 3600)
    batch = [
        Msg(raw("a", "prod-4", "100", "2026-01-05T10:00:01Z"), b"a", P1),
        Msg(raw("b", "prod-9", "1", "2026-01-05T10:00:02Z"), b"b", P1),
        Msg(raw("a", "prod-4", "100", "2026-01-05T10:00:01Z"), b"a", P2),
        Msg(raw("c", "prod-4", "0", "2026-01-05T10:00:03Z"), b"c", P2),
        Msg(raw("d", "prod-4", "0.995", "2026-01-05T10:00:04Z"), b"d", P2),
    ]
    result = analyze(analyzer, batch)
    assert result.rejected == [
        Rejection(1, "unknown_product", UNKNOWN_PRODUCT),
        Rejection(2, "duplicate", "order a is duplicate; not counted"),
        Rejection(3, "invalid_amount", "amount must be greater than 0, got 0"),
    ]
    assert [(out.key, metric_of(out)) for out in result.metrics] == [
        (f"{W}:prod-4".encode(),
         {"window_start": W, "window_end": W + 60, "product_id": "prod-4", "product_name": "Monitor",
          "order_count": 2, "total_revenue": "101.00", "avg_order_value": "50.50"}),
    ]
    assert telemetry.origins(result.metrics[0].headers) == [(P1, 1), (P2, 1)]
    assert result.counted == 2


def test_analyze_of_a_batch_with_no_valid_order_changes_no_window():
    analyzer = Analyzer.create(60, 3600)
    result = analyze(analyzer, [Msg(b"", b"x", P1), Msg(b"[]", b"y", P1)])
    assert result.rejected == [
        Rejection(0, "empty", "the record value is empty"),
        Rejection(1, "not_an_object", "the value is JSON list, not an object"),
    ]
    assert (result.metrics, result.counted) == ([], 0)
    assert result.state == [
        (b"watermark", b"null"), (b"ledger", b'{"count":0,"revenue":"0","revenue_cents":"0"}'),
    ]
