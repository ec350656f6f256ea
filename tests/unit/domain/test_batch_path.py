"""The batch path against the per-record path, on random batches (hypothesis).

The bulk decode (``order_columns.decode``: numpy and msgspec over a whole batch, the rest left to
``orders.parse``) and ``Analyzer.offer_batch`` (a batch of orders decided at once) are shortcuts:
each must give the same outputs as the per-record path it stands for, record for record. process
and analyze must produce the same records, dead letters and state changes with ``decode`` as with
``decode_each`` (every value through ``orders.parse``), and offer_batch must give the verdicts and
leave the state that offering the orders one at a time does.

The values are tests/harness/strategies.py's.
"""

import confluent_kafka
from hypothesis import given, settings
from hypothesis import strategies as st

from include.pipeline.domain import order_columns, steps
from include.pipeline.domain.analyzer import VERDICTS, Analyzer
from include.pipeline.domain.order_columns import OrderColumns
from include.pipeline.domain.orders import Order, parse
from tests.harness.strategies import (
    POOL,
    PROCESSED_AT,
    SETTINGS,
    W,
    countable_values,
    grace_and_horizon,
    near_timestamps,
    order_values,
    record_values,
    valid_amounts,
)


def records(values, partitions=st.just(0)):
    """Batches of consumed records (confluent_kafka's Message) with these values."""
    record = st.tuples(
        values, partitions, st.one_of(st.none(), st.binary(max_size=6)), st.sampled_from([0, 1, 1, 1, 2]),
        st.one_of(st.sampled_from([0, -1, 1, W * 1000, W * 1000 + 1]), st.integers(-(2**41), 2**42)),
    )
    return st.lists(record, max_size=24).map(lambda batch: [
        confluent_kafka.Message(topic="orders", partition=partition, offset=offset, key=key, value=value,
                                timestamp=(kind, ms))
        for offset, (value, partition, key, kind, ms) in enumerate(batch)
    ])


def state(analyzer: Analyzer) -> tuple:
    """An analyzer's windows, ledger, watermark and counted ids, each total with its exponent
    (1.0 is not 1.00)."""
    windows = sorted((key, a.count, str(a.total)) for key, a in analyzer.windows.aggregates.items())
    ledger = analyzer.ledger.count, str(analyzer.ledger.revenue)
    return windows, ledger, analyzer.watermark, len(analyzer.seen)


def changes(analyzer: Analyzer) -> tuple:
    """take_changes(), each total with its exponent."""
    windows, records = analyzer.take_changes()
    return [(key, a.count, str(a.total)) for key, a in windows], records


# process and analyze: decode against decode_each


@settings(SETTINGS, max_examples=300)
@given(batch=records(record_values))
def test_process_gives_the_same_records_and_dead_letters_with_the_bulk_decode_as_with_parse(batch):
    bulk = steps.process(batch, PROCESSED_AT, decode=order_columns.decode)
    each = steps.process(batch, PROCESSED_AT, decode=order_columns.decode_each)
    assert bulk.valid == each.valid
    assert bulk.rejected == each.rejected


@settings(SETTINGS, max_examples=150)
@given(
    batches=st.lists(records(countable_values, st.integers(0, 3)), min_size=1, max_size=3),
    settings_=grace_and_horizon,
)
def test_analyze_gives_the_same_partials_state_and_dead_letters_with_the_bulk_decode_as_with_parse(
    batches, settings_,
):
    partitions = range(4)
    bulk = {p: Analyzer.create(*settings_) for p in partitions}
    each = {p: Analyzer.create(*settings_) for p in partitions}
    for batch in batches:
        a = steps.analyze(bulk, batch, decode=order_columns.decode)
        b = steps.analyze(each, batch, decode=order_columns.decode_each)
        assert a.metrics == b.metrics
        assert a.state == b.state
        assert a.rejected == b.rejected
        assert a.counted == b.counted
    for p in partitions:
        assert state(bulk[p]) == state(each[p])


# Analyzer.offer_batch against offer, one order at a time

valid_orders = order_values(
    order_ids=st.sampled_from([*POOL, "o-6"]), amounts=valid_amounts,
    timestamps=st.one_of(
        near_timestamps(st.integers(-300, 300), common=True),
        near_timestamps(st.integers(-3 * 3600, 3 * 3600)),
        near_timestamps(st.integers(-10, 10).map(lambda minutes: 60 * minutes)),  # on window edges
        st.sampled_from(["0001-01-01T00:00:00Z", "9999-12-31T23:59:59.999999Z", "1969-12-31T23:59:59Z"]),
    ),
    broken=False,
).map(parse)


@settings(SETTINGS, max_examples=300)
@given(
    rounds=st.lists(st.lists(valid_orders, max_size=16), min_size=1, max_size=2),
    cuts=st.lists(st.integers(0, 16), max_size=2),
    settings_=grace_and_horizon,
)
def test_offer_batch_gives_the_verdicts_and_state_of_offering_each_order_in_turn(rounds, cuts, settings_):
    whole, single, split = (Analyzer.create(*settings_) for _ in range(3))
    for orders in rounds:  # the second round meets the ids the first counted
        assert all(type(order) is Order for order in orders)
        in_turn = [single.offer(order) for order in orders]
        at_once = [VERDICTS[v] for v in whole.offer_batch(OrderColumns.of(orders)).tolist()]
        assert at_once == in_turn
        bounds = [0, *sorted(min(cut, len(orders)) for cut in cuts), len(orders)]
        in_parts = [
            VERDICTS[v] for start, end in zip(bounds, bounds[1:])
            for v in split.offer_batch(OrderColumns.of(orders[start:end])).tolist()
        ]
        assert in_parts == in_turn
        assert changes(whole) == changes(single) == changes(split)
        assert state(whole) == state(single) == state(split)
