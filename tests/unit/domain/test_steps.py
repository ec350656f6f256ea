import random
from collections import Counter, defaultdict
from decimal import Decimal
from hashlib import blake2b

import pytest

from include.pipeline.domain import codec, telemetry
from include.pipeline.domain.analyzer import Analyzer
from include.pipeline.domain.dedup import fingerprint
from include.pipeline.domain.steps import Outgoing, Rejection, analyze, process
from include.pipeline.domain.windows import LedgerMark, ledger_of
from tests.harness.factories import order_value

W = 1767607200  # 2026-01-05T10:00:00Z
US = 1_000_000
PROCESSED_AT = "2026-01-05T10:05:00.000000Z"
P1, P2, P3, P4 = 1767607500_123, 1767607500_456, 1767607501_000, 1767607600_789  # produce times (ms)


class Msg:
    """A consumed record as confluent_kafka gives it: key(), value(), timestamp(), partition()."""

    def __init__(self, value, key=None, ms=None, kind=1, partition=0):
        self._value, self._key, self._partition = value, key, partition
        self._timestamp = (0, -1) if ms is None else (kind, ms)

    def partition(self):
        return self._partition

    def key(self):
        return self._key

    def value(self):
        return self._value

    def timestamp(self):
        return self._timestamp


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
        Msg(order_value("o-1", "prod-3", "19.99", "2026-01-05T10:00:30Z", user_id="u-1", coupon="X"),
            b"o-1", P1),
        Msg(b"{not json", b"junk", P2),
        Msg(order_value("o-2", "prod-9", "1", "2026-01-05T10:00:31Z"), b"o-2", P2),
        Msg(order_value("o-3", "prod-1", "-5.50", "2026-01-05T10:00:32Z"), b"o-3", P2),
        Msg(None, b"o-4", P2),
        Msg(order_value("o-5", "prod-5", "0.10", "2026-01-05T12:00:33+02:00", user_id="u-5")),
        Msg(b'{"order_id":"o-6","user_id":"u","product_id":"prod-1","amount":5}', b"o-6", P3),
        Msg(b"", b"o-7", P3),
        Msg(order_value("o-8", "prod-1", '"5"', "2026-01-05T10:00:34Z"), b"o-8", P3),
        Msg(order_value("o-9", "prod-1", "5", "yesterday"), b"o-9", P3),
        Msg(b"[1]", b"o-10", P3),
        Msg(order_value("o-11", "prod-2", "1234.567", "2026-01-05T10:00:35.5Z", user_id="u-1"),
            b"o-11", P4, kind=2),
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
    value = order_value("o-1", "prod-1", "1.00", "2026-01-05T10:00:00Z")
    batch = [Msg(value, b"a"), Msg(value, b"b", 0), Msg(value, b"c", -5), Msg(value, b"d", P1, kind=0),
             Msg(value, b"e", 1)]
    result = process(batch, PROCESSED_AT)
    assert [out.timestamp for out in result.valid] == [0, 0, 0, 0, 1]
    assert result.rejected == []


def test_process_of_an_empty_batch_is_empty():
    result = process([], PROCESSED_AT)
    assert (result.valid, result.rejected) == ([], [])


# analyze


def partial_of(out):
    return decoded(out.value)


def analyzers(*partitions):
    return {partition: Analyzer.create(60, 3600) for partition in partitions}


def test_analyze_counts_a_batch_into_its_windows_with_the_origins_of_the_orders_counted():
    state = analyzers(1)

    def on_1(*args, **kwargs):
        return Msg(*args, **kwargs, partition=1)

    batch = [
        on_1(order_value("a", "prod-1", "10.005", "2026-01-05T10:00:05Z"), b"a", P1),
        on_1(order_value("b", "prod-2", "5.00", "2026-01-05T10:01:10Z"), b"b", P3),
        on_1(order_value("c", "prod-1", "0.10", "2026-01-05T10:00:30Z"), b"c", P1),
        on_1(b"{not json", b"x", P1),
        on_1(order_value("d", "prod-2", "2.50", "2026-01-05T10:01:59.999Z"), b"d", P2),
        # no timestamp: counted, not timed
        on_1(order_value("e", "prod-2", "1.00", "2026-01-05T10:01:30Z"), b"e"),
    ]
    result = analyze(state, batch)

    assert [out.key for out in result.metrics] == [f"{W}:prod-1@1".encode(), f"{W + 60}:prod-2@1".encode()]
    # The partial of partition 1 of each window, its total exact (not rounded to cents).
    assert [partial_of(out) for out in result.metrics] == [
        {"window_start": W, "product_id": "prod-1", "partition": 1, "order_count": 2, "total": "10.105"},
        {"window_start": W + 60, "product_id": "prod-2", "partition": 1, "order_count": 3, "total": "8.50"},
    ]
    assert result.metrics[0].value == (
        f'{{"window_start":{W},"product_id":"prod-1","partition":1,"order_count":2,"total":10.105}}'.encode()
    )
    assert [telemetry.origins(out.headers) for out in result.metrics] == [
        [(P1, 2)], [(P2, 1), (P3, 1)],
    ]
    assert [[name for name, _ in out.headers] for out in result.metrics] == [["origins", "ledger"]] * 2
    # Every record of the batch carries its partition's ledger after it: what the state's ledger says.
    assert [ledger_of(out.headers) for out in result.metrics] == [LedgerMark(5, Decimal("18.605"), 1)] * 2
    assert result.metrics[0].headers[1] == ("ledger", b'{"count":5,"revenue":"18.605","partition":1}')
    assert [out.timestamp for out in result.metrics] == [0, 0]
    assert result.counted == 5
    assert [(r.index, r.reason) for r in result.rejected] == [(3, "invalid_json")]

    watermark = (W + 119) * US + 999_000
    key, value = segment(("a", (W + 5) * US), ("b", (W + 70) * US), ("c", (W + 30) * US), ("d", watermark),
                         ("e", (W + 90) * US))
    assert result.state == [
        (f"1/window:{W}:prod-1".encode(), b'{"count":2,"total":"10.105"}'),
        (f"1/window:{W + 60}:prod-2".encode(), b'{"count":3,"total":"8.50"}'),
        (b"1/" + key, value),
        (b"1/watermark", str(watermark).encode()),
        (b"1/ledger", b'{"count":5,"revenue":"18.605"}'),
    ]
    assert state[1].watermark == watermark

    # The next batch: a duplicate, a late order, a tombstone and one new order in a window seen.
    second = [
        on_1(order_value("a", "prod-1", "10.005", "2026-01-05T10:00:05Z"), b"a", P4),
        on_1(order_value("f", "prod-3", "7.00", "2026-01-05T09:58:30Z"), b"f", P4),
        on_1(order_value("g", "prod-1", "0.01", "2026-01-05T10:00:45Z"), b"g", P4),
        on_1(None, b"h", P4),
    ]
    result = analyze(state, second)

    assert result.rejected == [
        Rejection(0, "duplicate", "order a is duplicate; not counted"),
        Rejection(1, "late", "order f is late; not counted"),
        Rejection(3, "tombstone", "the record has no value (null tombstone)"),
    ]
    assert [out.key for out in result.metrics] == [f"{W}:prod-1@1".encode()]
    assert partial_of(result.metrics[0]) == {
        "window_start": W, "product_id": "prod-1", "partition": 1, "order_count": 3, "total": "10.115",
    }
    assert telemetry.origins(result.metrics[0].headers) == [(P4, 1)]
    assert ledger_of(result.metrics[0].headers) == LedgerMark(6, Decimal("18.615"), 1)
    assert result.counted == 1
    key, value = segment(("g", (W + 45) * US))
    assert result.state == [
        (f"1/window:{W}:prod-1".encode(), b'{"count":3,"total":"10.115"}'),
        (b"1/" + key, value),
        (b"1/watermark", str(watermark).encode()),
        (b"1/ledger", b'{"count":6,"revenue":"18.615"}'),
    ]

    # Nothing new: no metrics, nothing counted, only the watermark and ledger saved again.
    result = analyze(state, [on_1(order_value("g", "prod-1", "0.01", "2026-01-05T10:00:45Z"), b"g", P4)])
    assert (result.metrics, result.counted) == ([], 0)
    assert result.rejected == [Rejection(0, "duplicate", "order g is duplicate; not counted")]
    assert [key for key, _ in result.state] == [b"1/watermark", b"1/ledger"]


def test_analyze_rejects_a_repeat_within_the_batch_and_invalid_records_with_the_parsers_reason():
    batch = [
        Msg(order_value("a", "prod-4", "100", "2026-01-05T10:00:01Z"), b"a", P1),
        Msg(order_value("b", "prod-9", "1", "2026-01-05T10:00:02Z"), b"b", P1),
        Msg(order_value("a", "prod-4", "100", "2026-01-05T10:00:01Z"), b"a", P2),
        Msg(order_value("c", "prod-4", "0", "2026-01-05T10:00:03Z"), b"c", P2),
        Msg(order_value("d", "prod-4", "0.995", "2026-01-05T10:00:04Z"), b"d", P2),
    ]
    result = analyze(analyzers(0), batch)
    assert result.rejected == [
        Rejection(1, "unknown_product", UNKNOWN_PRODUCT),
        Rejection(2, "duplicate", "order a is duplicate; not counted"),
        Rejection(3, "invalid_amount", "amount must be greater than 0, got 0"),
    ]
    assert [(out.key, partial_of(out)) for out in result.metrics] == [
        (f"{W}:prod-4@0".encode(),
         {"window_start": W, "product_id": "prod-4", "partition": 0, "order_count": 2, "total": "100.995"}),
    ]
    assert telemetry.origins(result.metrics[0].headers) == [(P1, 1), (P2, 1)]
    assert result.counted == 2


def test_analyze_of_a_batch_with_no_valid_order_changes_no_window():
    result = analyze(analyzers(0), [Msg(b"", b"x", P1), Msg(b"[]", b"y", P1)])
    assert result.rejected == [
        Rejection(0, "empty", "the record value is empty"),
        Rejection(1, "not_an_object", "the value is JSON list, not an object"),
    ]
    assert (result.metrics, result.counted) == ([], 0)
    assert result.state == [(b"0/watermark", b"null"), (b"0/ledger", b'{"count":0,"revenue":"0"}')]


def test_analyze_counts_each_partition_with_its_own_state_and_keeps_the_batchs_indexes():
    state = analyzers(0, 2)
    batch = [
        Msg(order_value("a", "prod-1", "0.005", "2026-01-05T10:00:05Z"), b"a", P1, partition=2),
        Msg(order_value("b", "prod-1", "0.005", "2026-01-05T10:00:06Z"), b"b", P2, partition=0),
        Msg(order_value("a", "prod-1", "0.005", "2026-01-05T10:00:05Z"), b"a", P3, partition=2),  # a repeat
        Msg(order_value("c", "prod-2", "1.00", "2026-01-05T10:05:00Z"), b"c", P3, partition=2),
        Msg(b"{not json", b"x", P1, partition=0),
        # 10:00 is late on partition 2 (its stream time 10:05), not on partition 0 (10:00:06)
        Msg(order_value("d", "prod-1", "0.01", "2026-01-05T10:00:07Z"), b"d", P4, partition=2),
        Msg(order_value("e", "prod-1", "0.01", "2026-01-05T10:00:07Z"), b"e", P4, partition=0),
    ]
    result = analyze(state, batch)

    # Partition by partition, each window's partial of it.
    assert [(out.key, partial_of(out)) for out in result.metrics] == [
        (f"{W}:prod-1@0".encode(),
         {"window_start": W, "product_id": "prod-1", "partition": 0, "order_count": 2, "total": "0.015"}),
        (f"{W}:prod-1@2".encode(),
         {"window_start": W, "product_id": "prod-1", "partition": 2, "order_count": 1, "total": "0.005"}),
        (f"{W + 300}:prod-2@2".encode(),
         {"window_start": W + 300, "product_id": "prod-2", "partition": 2, "order_count": 1,
          "total": "1.00"}),
    ]
    assert [ledger_of(out.headers) for out in result.metrics] == [
        LedgerMark(2, Decimal("0.015"), 0), LedgerMark(2, Decimal("1.005"), 2),
        LedgerMark(2, Decimal("1.005"), 2),
    ]
    assert [telemetry.origins(out.headers) for out in result.metrics] == [
        [(P2, 1), (P4, 1)], [(P1, 1)], [(P3, 1)],
    ]
    assert result.rejected == [  # their indexes in the whole batch, in its order
        Rejection(2, "duplicate", "order a is duplicate; not counted"),
        Rejection(4, "invalid_json", result.rejected[1].detail),
        Rejection(5, "late", "order d is late; not counted"),
    ]
    assert result.counted == 4
    assert [key for key, _ in result.state if not key.split(b"/", 1)[1].startswith(b"orders:")] == [
        f"0/window:{W}:prod-1".encode(), b"0/watermark", b"0/ledger",
        f"2/window:{W}:prod-1".encode(), f"2/window:{W + 300}:prod-2".encode(), b"2/watermark", b"2/ledger",
    ]
    assert (state[0].ledger.count, state[2].ledger.count) == (2, 2)
    assert (state[0].watermark, state[2].watermark) == ((W + 7) * US, (W + 300) * US)


def test_analyze_rejects_a_repeat_of_an_order_on_its_partition_in_a_later_batch():
    state = analyzers(0, 1)
    first = analyze(state, [
        Msg(order_value("a", "prod-1", "1.00", "2026-01-05T10:00:05Z"), b"a", P1, partition=1),
        Msg(order_value("b", "prod-1", "2.00", "2026-01-05T10:00:06Z"), b"b", P1, partition=0),
    ])
    assert (first.rejected, first.counted) == ([], 2)
    again = analyze(state, [
        Msg(order_value("b", "prod-1", "2.00", "2026-01-05T10:00:06Z"), b"b", P2, partition=0),
        Msg(order_value("a", "prod-1", "1.00", "2026-01-05T10:00:05Z"), b"a", P2, partition=1),
        Msg(order_value("c", "prod-1", "4.00", "2026-01-05T10:00:07Z"), b"c", P2, partition=1),
    ])
    assert again.rejected == [
        Rejection(0, "duplicate", "order b is duplicate; not counted"),
        Rejection(1, "duplicate", "order a is duplicate; not counted"),
    ]
    assert [(out.key, partial_of(out)["order_count"], partial_of(out)["total"]) for out in again.metrics] == [
        (f"{W}:prod-1@1".encode(), 2, "5.00"),
    ]
    assert again.counted == 1


# The same records, read in batches split any way a consumer may (each partition's records in
# their order), add up to the same partials. Grace 60 s: a window is late once the stream time of
# its partition is a minute past its end.
SPREAD = [  # (partition, order_id, product, amount, timestamp); hand-counted below
    (0, "a0", "prod-1", "0.005", "2026-01-05T10:00:05Z"),
    (1, "a1", "prod-1", "0.005", "2026-01-05T10:00:10Z"),
    (0, "b0", "prod-2", "1.10", "2026-01-05T10:01:10Z"),
    (2, "f2", "prod-3", "3.333", "2026-01-05T10:02:00Z"),
    (0, "a0", "prod-1", "0.005", "2026-01-05T10:00:06Z"),  # duplicate
    (1, "b1", "prod-2", "2.205", "2026-01-05T10:01:20Z"),
    (2, None, None, None, None),  # not JSON: invalid
    (1, "b1", "prod-2", "2.205", "2026-01-05T10:01:20Z"),  # duplicate
    (0, "c0", "prod-1", "0.001", "2026-01-05T10:00:50Z"),
    (2, "g2", "prod-1", "0.004", "2026-01-05T10:00:59.999Z"),  # its window ended 60 s before 10:02: in time
    (0, "d0", "prod-1", "2.00", "2026-01-05T10:03:30Z"),
    (0, "e", "prod-1", "1.00", "2026-01-05T10:00:40Z"),  # late on partition 0 (10:03:30)
    (1, "e", "prod-1", "1.00", "2026-01-05T10:00:40Z"),  # in time on partition 1 (10:01:20)
]
SPREAD_WINDOWS = {  # window -> (orders, exact total) over all partitions
    (W, "prod-1"): (5, Decimal("1.015")),  # a0 0.005 + c0 0.001 | a1 0.005 + e 1.00 | g2 0.004
    (W + 60, "prod-2"): (2, Decimal("3.305")),  # b0 1.10 | b1 2.205
    (W + 120, "prod-3"): (1, Decimal("3.333")),  # f2
    (W + 180, "prod-1"): (1, Decimal("2.00")),  # d0, window 10:03
}
SPREAD_PARTIALS = {  # (window_start, product, partition) -> (orders, exact total)
    (W, "prod-1", 0): (2, Decimal("0.006")), (W, "prod-1", 1): (2, Decimal("1.005")),
    (W, "prod-1", 2): (1, Decimal("0.004")), (W + 60, "prod-2", 0): (1, Decimal("1.10")),
    (W + 60, "prod-2", 1): (1, Decimal("2.205")), (W + 120, "prod-3", 2): (1, Decimal("3.333")),
    (W + 180, "prod-1", 0): (1, Decimal("2.00")),
}
SPREAD_LEDGERS = {  # the newest mark per partition
    0: LedgerMark(4, Decimal("3.106"), 0), 1: LedgerMark(3, Decimal("3.210"), 1),
    2: LedgerMark(2, Decimal("3.337"), 2),
}
SPREAD_REJECTED = [(4, "duplicate"), (6, "invalid_json"), (7, "duplicate"), (11, "late")]  # by position


def spread_messages():
    messages = []
    for position, (partition, order_id, product, amount, timestamp) in enumerate(SPREAD):
        value = b"{not json" if order_id is None else order_value(order_id, product, amount, timestamp)
        messages.append(Msg(value, b"k", P1 + position, partition=partition))
    return messages


def splits(messages, how):
    """The messages in batches as a consumer may read them: each partition's in their order,
    partitions interleaved and batches cut anywhere (``how``: a seed, or a fixed way)."""
    if how == "one batch":
        return [messages]
    if how == "one by one":
        return [[message] for message in messages]
    if how == "partition by partition":
        return [[m for m in messages if m.partition() == p] for p in (2, 0, 1)]
    rng = random.Random(how)
    queues = defaultdict(list)
    for message in messages:
        queues[message.partition()].append(message)
    batches = []
    while any(queues.values()):
        batch = []
        for _ in range(rng.randint(1, 5)):
            live = [p for p, queue in queues.items() if queue]
            if not live:
                break
            batch.append(queues[rng.choice(live)].pop(0))
        batches.append(batch)
    return batches


@pytest.mark.parametrize("how", ["one batch", "one by one", "partition by partition", *range(12)])
def test_the_same_records_in_batches_split_any_way_give_the_same_partials(how):
    messages = spread_messages()
    position = {id(message): i for i, message in enumerate(messages)}
    state = analyzers(0, 1, 2)
    newest, marks, rejected, counted = {}, {}, [], 0
    origins = Counter()
    for batch in splits(messages, how):
        result = analyze(state, batch)
        for out in result.metrics:  # as the sink keeps them: the newest record per key
            partial = partial_of(out)
            key = (partial["window_start"], partial["product_id"], partial["partition"])
            assert out.key == f"{key[0]}:{key[1]}@{key[2]}".encode()
            newest[key] = (partial["order_count"], Decimal(partial["total"]))
            mark = ledger_of(out.headers)
            assert mark.partition == key[2]
            if mark.count > marks.get(mark.partition, LedgerMark(-1)).count:
                marks[mark.partition] = mark
            origins[key[:2]] += sum(n for _, n in telemetry.origins(out.headers))
        rejected += [(position[id(batch[r.index])], r.reason) for r in result.rejected]
        counted += result.counted
        partitions = {m.partition() for m in batch}
        assert {int(key.split(b"/", 1)[0]) for key, _ in result.state} == partitions

    assert newest == SPREAD_PARTIALS
    windows = defaultdict(lambda: (0, Decimal(0)))
    for (start, product, _), (count, total) in newest.items():
        windows[start, product] = (windows[start, product][0] + count, windows[start, product][1] + total)
    assert windows == SPREAD_WINDOWS
    assert origins == {window: count for window, (count, _) in SPREAD_WINDOWS.items()}
    assert marks == SPREAD_LEDGERS
    assert sorted(rejected) == SPREAD_REJECTED
    assert counted == 9 == sum(count for count, _ in SPREAD_WINDOWS.values())
