"""The analyze-state changelog format: each kind of record, byte for byte, and read back."""

from decimal import Decimal

import numpy as np

from include.pipeline.domain import state_codec
from include.pipeline.domain.state_codec import Segment, Watermark, Window
from include.pipeline.domain.windows import Aggregate, Ledger


def test_a_window_keeps_its_exact_total_and_a_closed_one_is_a_tombstone():
    aggregate = Aggregate(3, Decimal("0.3333333333333333333333333333333"))
    record = state_codec.window_record((1767607200, "prod-1"), aggregate)
    assert record == (b"window:1767607200:prod-1", b'{"count":3,"total":"0.3333333333333333333333333333333"}')
    assert state_codec.decode(*record) == Window((1767607200, "prod-1"), aggregate)
    closed = state_codec.window_record((1767607200, "prod-1"), None)
    assert closed == (b"window:1767607200:prod-1", None)
    assert state_codec.decode(*closed) == Window((1767607200, "prod-1"), None)


def test_watermark_and_ledger_round_trip_and_a_deleted_one_is_nothing():
    assert state_codec.watermark_record(1767607200123456) == (b"watermark", b"1767607200123456")
    assert state_codec.decode(b"watermark", b"1767607200123456") == Watermark(1767607200123456)
    ledger = Ledger(3, Decimal("1.110"))
    record = state_codec.ledger_record(ledger)
    assert record == (b"ledger", b'{"count":3,"revenue":"1.110"}')
    assert state_codec.decode(*record) == ledger
    # a ledger of before partitions, with the revenue in cents per window, reads without them
    old = b'{"count":3,"revenue":"1.110","revenue_cents":"1.11"}'
    assert state_codec.decode(b"ledger", old) == ledger
    assert state_codec.decode(b"ledger", None) is None
    assert state_codec.decode(b"something-else", b"1") is None


def test_a_segment_is_its_fingerprints_then_their_event_times_keyed_by_a_hash_of_both():
    keys = np.array([b"a" * 16, b"b" * 16], dtype="S16")
    times = np.array([5, 7], dtype="<i8")
    [(key, value, newest)] = state_codec.segment_records(keys, times)
    assert value == b"a" * 16 + b"b" * 16 + (5).to_bytes(8, "little") + (7).to_bytes(8, "little")
    assert (key[:7], len(key), newest) == (b"orders:", 7 + 32, 7)
    assert state_codec.decode(key, value) == Segment(key, value)
    assert state_codec.is_segment(key) and not state_codec.is_segment(b"window:1:prod-1")
    fingerprints, event_us = state_codec.segment_ids(value)
    assert (fingerprints.tolist(), event_us.tolist()) == ([b"a" * 16, b"b" * 16], [5, 7])


def test_a_partitions_state_is_scoped_by_a_key_prefix_and_read_back_to_it():
    records = [(b"window:1767607200:prod-1", b'{"count":1,"total":"1"}'), (b"watermark", None)]
    scoped = state_codec.scoped(12, records)
    assert scoped == [(b"12/window:1767607200:prod-1", b'{"count":1,"total":"1"}'), (b"12/watermark", None)]
    assert [state_codec.scope_of(key) for key, _ in scoped] == [
        (12, b"window:1767607200:prod-1"), (12, b"watermark"),
    ]
    assert state_codec.scoped(0, []) == []


def test_a_key_without_a_partition_is_of_the_version_before_partitions():
    assert state_codec.scope_of(b"window:1767607200:prod-1") == (None, b"window:1767607200:prod-1")
    assert state_codec.scope_of(b"ledger") == (None, b"ledger")
    assert state_codec.scope_of(b"orders:ab/cd") == (None, b"orders:ab/cd")
    assert state_codec.scope_of(b"/watermark") == (None, b"/watermark")
    assert state_codec.scope_of(b"-1/watermark") == (None, b"-1/watermark")
    assert state_codec.scope_of(b"0/orders:ab") == (0, b"orders:ab")


def test_a_partitions_state_goes_to_the_changelog_partition_of_its_number_modulo_theirs():
    assert [state_codec.changelog_partition(p, 3) for p in range(7)] == [0, 1, 2, 0, 1, 2, 0]
    assert state_codec.changelog_partition(5, 8) == 5
