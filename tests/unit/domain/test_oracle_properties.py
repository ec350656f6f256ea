"""The batch path against the oracle (tests/oracle.py), on random runs (hypothesis).

What ``steps.process`` and ``steps.analyze`` do with a batch (the bulk decode, offer_batch, the
partials), run after run with each run's analyzers restored from the changelog the runs before
wrote (as the analyze stage restores them) and expired at the end, must be what the data
contract says: each record's dead-letter reason or its processed record, each order's verdict,
and the metrics the partials add up to, to the cent. The values are those of
tests/harness/strategies.py (hand-built around the edges of the bulk path); the test checks at
the end that the examples reached every rejection reason, each timestamp shape, the cents path's
limits, duplicates and late orders in one batch and across batches and runs, and 3 partitions.
"""

import json
import re
import sys
from collections import defaultdict
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import confluent_kafka
import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from include.pipeline.domain import state_codec, steps
from include.pipeline.domain.analyzer import Analyzer, check_horizon
from include.pipeline.domain.windows import combined, decode_partial
from tests import oracle
from tests.harness.factories import order_value
from tests.harness.strategies import SETTINGS, W, countable_values, grace_and_horizon, record_values

EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
PARTITIONS = 3  # the pool's ids land on all three
PROCESSED_AT = "2026-01-05T10:05:00.000000Z"
REASONS = {
    "tombstone", "empty", "too_large", "bad_utf8", "invalid_json", "not_an_object", "missing_field",
    "invalid_order_id", "invalid_user_id", "unknown_product", "invalid_amount", "invalid_timestamp",
    "late", "duplicate",
}
SHAPES = {  # a valid order's timestamp: the bulk reader's shapes, and the others
    "Z": r"[0-9-]{10}T[0-9:]{8}(\.\d{1,6})?Z", "+HH:MM": r"[0-9-]{10}T[0-9:]{8}(\.\d{1,6})?\+\d\d:\d\d",
    "-HH:MM": r"[0-9-]{10}T[0-9:]{8}(\.\d{1,6})?-\d\d:\d\d", "no zone": r"[0-9-]{10}T[0-9:]{8}(\.\d{1,6})?",
    "fraction": r"[0-9-]{10}T[0-9:]{8}\.\d{1,6}.*",
}
FEATURES = (
    {f"reason {r}" for r in REASONS} | {f"timestamp {s}" for s in SHAPES}
    | {"timestamp of another shape", "negative offset moving the window's date", "window before 1970"}
    | {"amount on the cents path", "amount of 11 whole digits", "amount of 12 whole digits",
       "amount of 3 places", "amount with an exponent"}
    | {"duplicate in one batch", "duplicate across batches", "duplicate across runs", "id forgotten",
       "late in one batch", "late across batches", "late across runs", "3 partitions counted",
       "window ended exactly grace_seconds before the watermark"}
)
runs = st.lists(
    st.lists(st.lists(st.one_of(countable_values, countable_values, record_values), max_size=16),
             min_size=1, max_size=3),
    min_size=1, max_size=3,
)
# The cents path's limits: 11 whole digits and 2 places at most.
CENTS_EDGES = ["99999999999.99", "100000000000", "100000000000.01", "0.005", "0.01", "1.50"]
ONE_OF_EACH_REASON = [  # so that every example kind meets the rare ones too
    None, b"", b" " * 65537, b'{"order_id":"\xff"}', b"{", b"[]", b'{"order_id":"o-1"}',
    b'{"order_id":"","user_id":"u","product_id":"prod-1","amount":1,"timestamp":"2026-01-05T10:00:00Z"}',
    b'{"order_id":"o-1","user_id":7,"product_id":"prod-1","amount":1,"timestamp":"2026-01-05T10:00:00Z"}',
    b'{"order_id":"o-1","user_id":"u","product_id":"prod-7","amount":1,"timestamp":"2026-01-05T10:00:00Z"}',
    b'{"order_id":"o-1","user_id":"u","product_id":"prod-1","amount":0,"timestamp":"2026-01-05T10:00:00Z"}',
    b'{"order_id":"o-1","user_id":"u","product_id":"prod-1","amount":1,"timestamp":"2026-01-05"}',
]
SAME_PARTITION = [("o-1", "o-2"), ("o-3", "ö-5")]  # pairs of ids on one partition of 3


def order_at(order_id: str, seconds: int, amount: str = "1.50", micros: int = 0) -> bytes:
    """An order of prod-2 at ``seconds`` (and ``micros``) after the epoch."""
    at = (EPOCH + timedelta(seconds=seconds, microseconds=micros)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return order_value(order_id, "prod-2", amount, at)


@st.composite
def forgetting(draw):
    """Runs where an id is forgotten: counted, the watermark then moved past the horizon by
    another id of its partition, and the id again, as new, in a later run (random records around)."""
    grace, horizon = draw(grace_and_horizon)
    first, other = draw(st.sampled_from(SAME_PARTITION))
    start = W + draw(st.integers(-600, 600))
    later = start + horizon + draw(st.integers(1, 120))
    noise = st.lists(st.one_of(record_values, st.sampled_from(ONE_OF_EACH_REASON)), max_size=4)
    runs = [[[*draw(noise), order_at(first, start)], [order_at(other, later), *draw(noise)]],
            [[*draw(noise), order_at(first, later, "2.25")]]]
    return runs, (grace, horizon)


@st.composite
def on_the_grace_edge(draw):
    """An order whose window ended grace_seconds before its partition's watermark, to the
    microsecond, or one microsecond either side (in the batch, the next or the next run)."""
    grace, horizon = draw(grace_and_horizon)
    first, other = draw(st.sampled_from(SAME_PARTITION))
    start = W + 60 * draw(st.integers(-10, 10))
    edge = draw(st.sampled_from([-1, 0, 0, 1]))  # microseconds past the edge
    pusher = order_at(other, start + 60 + grace + (edge < 0) * -1, micros=(edge < 0) * 999_999 + (edge > 0))
    amount = draw(st.sampled_from(CENTS_EDGES))
    inside = order_at(first, start + draw(st.integers(0, 59)), amount, draw(st.sampled_from([0, 999_999])))
    noise = st.lists(st.one_of(record_values, st.sampled_from(ONE_OF_EACH_REASON)), max_size=3)
    split = draw(st.integers(0, 2))  # one batch, two batches, two runs
    batches = [[*draw(noise), pusher, inside]] if split == 0 else [[pusher, *draw(noise)], [inside]]
    return ([batches] if split < 2 else [[batch] for batch in batches]), (grace, horizon)


examples = st.one_of(
    st.tuples(runs, grace_and_horizon), st.tuples(runs, grace_and_horizon), forgetting(), on_the_grace_edge(),
)


def message(topic: str, partition: int, offset: int, key: bytes | None, value: bytes | None):
    return confluent_kafka.Message(
        topic=topic, partition=partition, offset=offset, key=key, value=value, timestamp=(1, 1767607200000),
    )


def restored(changelog: list[tuple[bytes, bytes | None]], grace: int, horizon: int) -> dict[int, Analyzer]:
    """The analyzers the analyze stage restores from the changelog (stages.state.restore_analyzers)."""
    analyzers = {p: Analyzer.create(grace, horizon) for p in range(PARTITIONS)}
    for key, value in changelog:
        partition, inner = state_codec.scope_of(key)
        analyzers[partition].restore(inner, value)
    for key, value in changelog:
        partition, inner = state_codec.scope_of(key)
        analyzers[partition].restore_ids(inner, value)
    return analyzers


def expired(analyzers: dict[int, Analyzer]) -> list[tuple[bytes, bytes | None]]:
    return [record for p, a in analyzers.items() for record in state_codec.scoped(p, a.expire())]


def shapes(order: oracle.Order) -> set[str]:
    found = {f"timestamp {name}" for name, shape in SHAPES.items() if re.fullmatch(shape, order.timestamp)}
    found |= set() if found else {"timestamp of another shape"}
    zone = re.search(r"-(\d\d):?(\d\d)$", order.timestamp[10:])
    utc_date = (EPOCH + timedelta(microseconds=order.event_us)).strftime("%Y-%m-%d")
    if zone and order.timestamp[:10] != utc_date:
        found.add("negative offset moving the window's date")
    if order.window_start < 0:
        found.add("window before 1970")
    text = order.amount_text
    whole, _, places = text.partition(".")
    if re.fullmatch(r"[1-9]\d{0,10}(\.\d{1,2})?|0\.\d{1,2}", text):
        found.add("amount on the cents path")
    if re.fullmatch(r"\d+(\.\d+)?", text):
        found |= {f"amount of {len(whole)} whole digits"} & FEATURES
        found |= {"amount of 3 places"} if len(places) == 3 else set()
    else:
        found |= {"amount with an exponent"} if "e" in text.lower() else set()
    return found


def test_the_batch_path_gives_what_the_contract_says_run_after_run():
    reached: set[str] = set()

    @settings(SETTINGS, max_examples=300)
    @given(example=examples)
    def check(example):
        runs, settings_ = example
        # Python's default, as in a stage: hypothesis raises it by 2,000 while a test runs, and
        # msgspec's nesting limit (the contract's 1,000 levels) is the recursion limit's.
        limit = sys.getrecursionlimit()
        sys.setrecursionlimit(1000)
        try:
            one_example(runs, *settings_)
        finally:
            sys.setrecursionlimit(limit)

    def one_example(runs, grace, horizon):
        expected = oracle.Oracle(PARTITIONS, grace, horizon)
        changelog: list[tuple[bytes, bytes | None]] = []
        partials = {}
        counted_in: dict[tuple[int, str], tuple[int, int]] = {}  # (partition, id) -> (run, batch)
        late_by: dict[int, tuple[int, int]] = {}  # partition -> (run, batch) of its watermark
        for r, batches in enumerate(runs):
            analyzers = restored(changelog, grace, horizon)
            changelog += expired(analyzers)
            for b, values in enumerate(batches):
                # process: each record's reason, or its processed record
                processed = steps.process(
                    [message("orders", 0, i, None, v) for i, v in enumerate(values)], PROCESSED_AT,
                )
                rejected = {r.index: str(r.reason) for r in processed.rejected}
                valid = []
                for i, value in enumerate(values):
                    verdict = oracle.parse(value)
                    if isinstance(verdict, str):
                        assert rejected.get(i) == verdict, (value, processed.rejected)
                        reached.add(f"reason {verdict}")
                        continue
                    assert i not in rejected, (value, rejected[i])
                    valid.append(verdict)
                    reached.update(shapes(verdict))
                assert len(processed.valid) == len(valid)
                for record, order in zip(processed.valid, valid):
                    doc = json.loads(record.value, parse_float=Decimal, parse_int=Decimal)
                    assert record.key == order.order_id.encode()
                    assert (doc["order_id"], doc["user_id"], doc["product_id"], doc["product_name"]) == (
                        order.order_id, order.user_id, order.product_id, order.product_name)
                    assert (doc["amount"], doc["timestamp"], doc["processed_at"]) == (
                        order.amount, order.timestamp, PROCESSED_AT)
                # analyze: each order's verdict, on the partition of its id
                where = [oracle.partition_of(o.order_id, PARTITIONS) for o in valid]
                analyzed = steps.analyze(analyzers, [
                    message("processed-orders", p, i, rec.key, rec.value)
                    for i, (p, rec) in enumerate(zip(where, processed.valid))
                ])
                verdicts = {r.index: str(r.reason) for r in analyzed.rejected}
                for i, (p, order) in enumerate(zip(where, valid)):
                    state = expected.state[p]
                    seen_before, watermark_before = order.order_id in state.seen, state.watermark
                    if watermark_before == (order.window_start + 60 + grace) * 10**6 and not seen_before:
                        reached.add("window ended exactly grace_seconds before the watermark")
                    [verdict] = expected.analyze(p, [order])
                    assert verdicts.get(i) == verdict, (order, verdicts.get(i), verdict)
                    if verdict == "duplicate":
                        reached.add(f"reason {verdict}")
                        run, batch = counted_in[(p, order.order_id)]
                        reached.add("duplicate in one batch" if (run, batch) == (r, b) else
                                    "duplicate across batches" if run == r else "duplicate across runs")
                    elif verdict == "late":
                        reached.add(f"reason {verdict}")
                        run, batch = late_by[p]
                        reached.add("late in one batch" if (run, batch) == (r, b) else
                                    "late across batches" if run == r else "late across runs")
                    else:
                        if not seen_before and (p, order.order_id) in counted_in:
                            reached.add("id forgotten")
                        counted_in[(p, order.order_id)] = (r, b)
                        if state.watermark != watermark_before:
                            late_by[p] = (r, b)
                assert analyzed.counted == sum(v is None for v in map(verdicts.get, range(len(valid))))
                if all(expected.state[p].watermark is not None for p in range(PARTITIONS)):
                    reached.add("3 partitions counted")
                for outgoing in analyzed.metrics:
                    partial = decode_partial(outgoing.value)
                    partials[partial.key] = partial
                changelog += analyzed.state
            changelog += expired(analyzers)
            expected.end_run()
            # the metrics the partials add up to (as the sink combines them), to the cent
            by_window = defaultdict(list)
            for partial in partials.values():
                by_window[partial.window].append(partial)
            metrics = [msgspec.structs.asdict(combined(w, ps)) for w, ps in sorted(by_window.items())]
            assert metrics == expected.metrics()

    check()
    assert FEATURES - reached == set(), f"not reached: {sorted(FEATURES - reached)}"


def test_a_number_no_decimal_can_hold_is_dead_lettered_not_a_crash():
    value = order_at("o-1", W).replace(b"1.50", b"1e1000000000000000000")
    assert oracle.parse(value) == "invalid_json"
    processed = steps.process([message("orders", 0, 0, None, value)], PROCESSED_AT)
    assert [str(r.reason) for r in processed.rejected] == ["invalid_json"]


def test_the_shortest_horizon_allowed_never_counts_an_exact_copy_twice():
    # Ids are forgotten by event time, lateness goes by the window's end: the horizon must cover a
    # window and the grace (with both 1 h, a copy of an order at 10:00:30 forgotten once the
    # watermark passed 11:00:30 was not late until 11:01, and counted again).
    with pytest.raises(ValueError, match=r"grace_seconds \+ 60 <= dedup_horizon_seconds"):
        check_horizon(3600, 3659)
    expected = oracle.Oracle(PARTITIONS, grace_seconds=3600, horizon_seconds=3660)
    first, other = SAME_PARTITION[0]
    expected.run([order_at(first, W + 30), order_at(other, W + 3600 + 31)])
    expected.run([order_at(first, W + 30)])
    assert expected.dead_letters[("duplicate", first)] == 1
