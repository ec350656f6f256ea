"""The analyze-state changelog format: each kind of record, byte for byte, and read back."""

from decimal import Decimal

import numpy as np

from include.pipeline import state_codec
from include.pipeline.state_codec import Segment, Watermark, Window
from include.pipeline.windows import Aggregate, Ledger


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
    ledger = Ledger(3, Decimal("1.110"), Decimal("1.11"))
    record = state_codec.ledger_record(ledger)
    assert record == (b"ledger", b'{"count":3,"revenue":"1.110","revenue_cents":"1.11"}')
    assert state_codec.decode(*record) == ledger
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
