import numpy as np
import pytest

from include.pipeline.domain.telemetry import (
    NO_ORIGINS,
    ORIGINS,
    Ended,
    Latencies,
    Tick,
    origins,
    origins_headers,
    read_report,
    report_line,
)

# origins


def test_origins_header_pairs_each_produce_time_with_its_orders_sorted_and_leaves_out_untimed_ones():
    produced = np.array([1767607500_456, 1767607500_123, 0, 1767607500_456, -1, 1767607500_456, 7])
    [header] = origins_headers(np.zeros(len(produced), np.int64), produced).values()
    assert header == (ORIGINS, b"[[7,1],[1767607500123,1],[1767607500456,3]]")
    assert ORIGINS == "origins"
    assert origins([header]) == [(7, 1), (1767607500123, 1), (1767607500456, 3)]


def test_origins_header_of_no_timed_orders_is_an_empty_list():
    assert origins_headers(np.zeros(3, np.int64), np.array([0, 0, -5])) == {}
    assert NO_ORIGINS == ("origins", b"[]")
    assert origins([NO_ORIGINS]) == []


def test_origins_reads_its_header_among_others():
    headers = [("trace", b"abc"), ("origins", b"[[5,2],[9,1]]"), ("origins", b"[[1,1]]")]
    assert origins(headers) == [(5, 2), (9, 1)]
    assert origins([("origins", None), ("origins", b"[[3,4]]")]) == [(3, 4)]
    assert origins([("origins", b""), ("origins", b"[[3,4]]")]) == [(3, 4)]


@pytest.mark.parametrize(
    "headers",
    [
        None,
        [],
        [("trace", b"[[1,2]]")],
        [("origins", None)],
        [("origins", b"not json")],
        [("origins", b'{"1": 2}')],
        [("origins", b'[["x",1]]')],
        [("origins", b"[[1,2,3]]")],
        [("origins", b"[[1.5,2]]")],
        [("origins", b"\xff\xfe")],
    ],
)
def test_origins_of_no_or_a_foreign_header_is_empty(headers):
    assert origins(headers) == []


# Latencies


def one_to_hundred():
    latencies = Latencies()
    for ms in range(1, 101):
        latencies.add(ms)
    return latencies


def test_add_counts_orders_per_latency_and_clamps_a_negative_latency_to_0():
    latencies = Latencies()
    latencies.add(12)
    latencies.add(12, 3)
    latencies.add(-40)
    latencies.add(0, 2)
    assert latencies.counts == {12: 4, 0: 3}
    assert latencies.orders == 7


def test_a_new_latencies_does_not_share_counts_with_another():
    first = Latencies()
    first.add(5)
    assert Latencies().counts == {}
    assert Tick("sink", 1, 1).latencies.counts == {}
    assert first.counts == {5: 1}


def test_add_origins_measures_each_pair_from_its_produce_time():
    latencies = Latencies({250: 1})
    latencies.add_origins([(1000, 2), (1500, 1), (1750, 4), (2100, 3)], visible_ms=2000)
    assert latencies.counts == {1000: 2, 500: 1, 250: 5, 0: 3}
    assert latencies.orders == 11
    latencies.add_origins([], visible_ms=2000)
    assert latencies.orders == 11


def test_add_origins_leaves_out_the_orders_produced_before_since():
    latencies = Latencies()
    latencies.add_origins([(1000, 2), (1499, 1), (1500, 4), (1800, 3)], visible_ms=2000, since_ms=1500)
    assert latencies.counts == {500: 4, 200: 3}


@pytest.mark.parametrize(
    ("q", "expected"),
    [(0, 1), (0.5, 1), (1, 1), (1.5, 2), (50, 50), (50.1, 51), (95, 95), (99, 99), (99.5, 100), (100, 100)],
)
def test_percentile_is_the_nearest_rank(q, expected):
    assert one_to_hundred().percentile(q) == expected


def test_percentile_counts_repeated_latencies_as_many_orders():
    latencies = Latencies({30: 1, 10: 6, 20: 3})  # 10 orders: six at 10 ms, three at 20, one at 30
    assert [latencies.percentile(q) for q in (10, 60, 61, 90, 91, 100)] == [10, 10, 20, 20, 30, 30]


def test_percentile_of_no_orders_is_none():
    assert Latencies().percentile(50) is None
    assert Latencies().percentile(100) is None


def summary(p50, p95, p99, max_ms, orders):
    return {"p50_ms": p50, "p95_ms": p95, "p99_ms": p99, "max_ms": max_ms, "orders": orders}


def test_summary():
    assert one_to_hundred().summary() == {
        "p50_ms": 50, "p95_ms": 95, "p99_ms": 99, "max_ms": 100, "orders": 100,
    }
    assert Latencies({7: 3, 2: 1}).summary() == summary(7, 7, 7, 7, 4)
    assert Latencies({2: 19, 900: 1}).summary() == summary(2, 2, 900, 900, 20)
    assert Latencies({1: 999, 5000: 1}).summary() == summary(1, 1, 1, 5000, 1000)  # max is no percentile
    assert Latencies().summary() == summary(None, None, None, None, 0)


def test_merge_adds_the_other_counts_and_leaves_the_other_unchanged():
    mine, other = Latencies({5: 1, 7: 2}), Latencies({7: 1, 9: 4})
    mine.merge(other)
    assert mine.counts == {5: 1, 7: 3, 9: 4}
    assert other.counts == {7: 1, 9: 4}
    mine.merge(Latencies())
    assert mine.counts == {5: 1, 7: 3, 9: 4}
    assert mine.summary() == summary(7, 9, 9, 9, 8)


# report lines


def test_a_tick_line_round_trips():
    tick = Tick("analyze", 120, 7, Latencies({15: 2, 3: 1}))
    line = report_line(tick)
    assert line == (
        b'{"type":"tick","stage":"analyze","read":120,"written":7,"latencies":{"counts":{"15":2,"3":1}}}\n'
    )
    assert read_report(line) == tick
    assert read_report(line).latencies.counts == {15: 2, 3: 1}


def test_a_tick_without_latencies_round_trips():
    line = report_line(Tick("process", 3, 2))
    assert line == b'{"type":"tick","stage":"process","read":3,"written":2,"latencies":{"counts":{}}}\n'
    assert read_report(line) == Tick("process", 3, 2, Latencies())
    assert read_report(b'{"type":"tick","stage":"process","read":3,"written":2}') == Tick("process", 3, 2)


def test_an_ended_line_round_trips():
    ended = Ended("sink", {"rows": 3, "lag": None, "topics": ["product-metrics"], "ok": True})
    line = report_line(ended)
    assert line == (
        b'{"type":"ended","stage":"sink",'
        b'"result":{"rows":3,"lag":null,"topics":["product-metrics"],"ok":true}}\n'
    )
    assert read_report(line) == ended


@pytest.mark.parametrize(
    "line",
    [
        b"not json\n",
        b"\n",
        b"",
        b"[1, 2]\n",
        b'{"stage":"process","read":1,"written":1}\n',  # no tag
        b'{"type":"other","stage":"process"}\n',
        b'{"type":"tick","stage":"process","read":"1","written":1}\n',
        b'{"type":"ended","stage":"sink"}\n',
        b"\xff\n",
    ],
)
def test_anything_else_printed_is_not_a_report(line):
    assert read_report(line) is None


def test_origins_headers_of_groups_count_each_groups_orders_per_produce_time():
    groups = np.array([7, 3, 7, 7, 3, 9])
    produced = np.array([20, 5, 10, 20, 0, 0])  # 0: no produce time
    assert origins_headers(groups, produced) == {
        7: ("origins", b"[[10,1],[20,2]]"), 3: ("origins", b"[[5,1]]"),
    }
    assert origins_headers(groups[:0], produced[:0]) == {}
