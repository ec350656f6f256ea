"""The Order metrics page's views, on a real SQLite store and manifests in a temporary directory
(the Kafka views and the live page: tests/integration/test_metrics_page.py)."""

from datetime import datetime, timezone
from decimal import Decimal

import pytest

from include.pipeline.domain.dead_letters import DeadLetter
from include.pipeline.domain.windows import Partial
from include.pipeline.run import reconcile
from include.pipeline.store.metrics_store import MetricsStore
from include.pipeline.view import dashboard
from include.pipeline.view.dashboard import RangeError
from tests.harness.factories import metric

T = 1767607200  # 2026-01-05T10:00:00Z
NOW = datetime(2026, 11, 26, 7, 30, tzinfo=timezone.utc)


def at(seconds: int) -> datetime:
    return datetime.fromtimestamp(seconds, timezone.utc)



@pytest.fixture
def paths(tmp_path, monkeypatch):
    monkeypatch.setenv("PIPELINE_OUTPUT_DIR", str(tmp_path))
    return tmp_path


def written_store(path, rows) -> MetricsStore:
    """A store holding ``rows``, each written as the partial of one partition of its window."""
    writer = MetricsStore(f"sqlite:///{path}/metrics.db", "test")
    writer.open("cluster-a")
    with writer.transaction("cluster-a") as txn:
        txn.apply([Partial(r.window_start, r.product_id, 0, r.order_count, r.total_revenue) for r in rows])
    return MetricsStore(f"sqlite:///{path}/metrics.db", "test", read_only=True)


@pytest.mark.parametrize(
    ("start", "end", "newest", "expected"),
    [
        (None, None, T, (T + 60 - 3 * 3600, T + 60)),  # 3 hours up to the end of the newest window
        (None, None, None, (NOW.timestamp() - 3 * 3600, NOW.timestamp())),  # empty store: up to now
        ("2026-01-05T08:00:00Z", None, T, (T - 7200, T + 3600)),
        (None, "2026-01-05T10:00:00+01:00", T, (T - 3 * 3600 - 3600, T - 3600)),
        ("2026-01-05T09:00", "2026-01-05T09:30", T, (T - 3600, T - 1800)),  # no offset: UTC
        (" 2026-01-01T00:00:00Z ", "2026-01-08T00:00:00Z", T,
         (T - 4 * 86400 - 10 * 3600, T + 3 * 86400 - 10 * 3600)),
    ],
)
def test_a_range_defaults_to_the_3_hours_up_to_the_newest_window(start, end, newest, expected):
    span = dashboard.parse_range(start, end, newest, NOW)
    assert (span.start.timestamp(), span.end.timestamp()) == expected


@pytest.mark.parametrize(
    ("start", "end", "message"),
    [
        ("yesterday", None, "start must be an ISO 8601 time such as 2026-01-05T10:00:00Z, got 'yesterday'"),
        (None, "10:00", "end must be an ISO 8601 time such as 2026-01-05T10:00:00Z, got '10:00'"),
        ("2026-01-05T10:00:00Z", "2026-01-05T10:00:00Z",
         "end (2026-01-05T10:00:00+00:00) must be after start (2026-01-05T10:00:00+00:00)"),
        ("2026-01-01T00:00:00Z", "2026-01-08T00:00:01Z",
         "a range is at most 7 days, got 7 days: narrow start and end"),
        ("2026-01-01T00:00:00Z", "2026-02-01T00:00:00Z",
         "a range is at most 7 days, got 31 days: narrow start and end"),
    ],
)
def test_a_bad_range_says_what_to_send(start, end, message):
    with pytest.raises(RangeError) as error:
        dashboard.parse_range(start, end, T, NOW)
    assert str(error.value) == message


def test_metrics_of_a_range_per_product_and_the_newest_windows(paths):
    store = written_store(paths, [
        metric(T - 4 * 3600, count=9, total="99.99"),  # older than the default range
        *[metric(T + 60 * i, count=i + 1, total=f"{i + 1}.25") for i in range(7)],
        metric(T + 60, "prod-2", 2, "5.10"), metric(T + 360, "prod-2", 1, "0.01"),
    ])
    view = dashboard.metrics(store, now=NOW)
    assert (view.start, view.end, view.newest_window) == (at(T + 420 - 3 * 3600), at(T + 420), at(T + 360))
    assert (view.orders, view.revenue) == (sum(range(1, 8)) + 3, Decimal("34.86"))
    laptop, phone = view.series
    assert (laptop.product_id, laptop.product_name, phone.product_name) == ("prod-1", "Laptop", "Phone")
    assert laptop.windows == [at(T + 60 * i) for i in range(7)]
    assert (laptop.orders, laptop.revenue) == (list(range(1, 8)), [Decimal(f"{i}.25") for i in range(1, 8)])
    assert (phone.windows, phone.orders, phone.revenue) == (
        [at(T + 60), at(T + 360)], [2, 1], [Decimal("5.10"), Decimal("0.01")]
    )
    # The newest 5 windows, newest first, one row per product.
    assert [
        (row.window_start, row.product_id, row.orders, row.revenue, row.average) for row in view.newest
    ] == [
        # the store's averages: each window's total / orders, rounded half up to cents
        (at(T + 360), "prod-1", 7, Decimal("7.25"), Decimal("1.04")),
        (at(T + 360), "prod-2", 1, Decimal("0.01"), Decimal("0.01")),
        (at(T + 300), "prod-1", 6, Decimal("6.25"), Decimal("1.04")),
        (at(T + 240), "prod-1", 5, Decimal("5.25"), Decimal("1.05")),
        (at(T + 180), "prod-1", 4, Decimal("4.25"), Decimal("1.06")),
        (at(T + 120), "prod-1", 3, Decimal("3.25"), Decimal("1.08")),
    ]


def test_a_range_holds_the_windows_that_start_in_it(paths):
    store = written_store(paths, [metric(T - 60), metric(T), metric(T + 60, total="2.00"), metric(T + 120)])
    view = dashboard.metrics(store, "2026-01-05T09:59:00.5Z", "2026-01-05T10:02:00Z")
    assert [row.window_start for row in view.newest] == [at(T + 60), at(T)]
    assert (view.orders, view.revenue) == (2, Decimal("12.50"))


def test_a_range_without_windows_is_empty_not_an_error(paths):
    store = written_store(paths, [metric(T)])
    view = dashboard.metrics(store, "2025-01-01T00:00:00Z")
    assert (view.orders, view.revenue, view.series, view.newest, view.newest_window) == (
        0, Decimal("0.00"), [], [], at(T)
    )


def test_a_store_no_sink_has_written_reads_as_empty_and_is_not_created(paths):
    store = MetricsStore(f"sqlite:///{paths}/metrics.db", "test", read_only=True)
    view = dashboard.metrics(store, now=NOW)
    assert (view.end, view.newest_window, view.series) == (NOW, None, [])
    assert not (paths / "metrics.db").exists()


def test_runs_from_the_manifests_newest_first(paths):
    results = {
        "process": {"input": {"topic": "orders", "partitions": {"0": [0, 12]}, "lost": 0}, "read": 12,
                    "valid": 9, "invalid": 3, "reasons": {"invalid_json": 2, "unknown_product": 1}},
        "analyze": {"counted": 7, "late": 1, "duplicate": 1, "invalid": 0,
                    "reasons": {"late": 1, "duplicate": 1}},
    }
    first = reconcile.reconcile("manual__1", {**results, "generate": {"generated": 12}})
    second = reconcile.reconcile("manual__2", results, dag_id="kafka_pipeline_on_orders")
    runs = dashboard.runs(10)
    assert runs == [
        dashboard.RunRow(
            dag_id="kafka_pipeline_on_orders", run_id="manual__2", reconciled_at=second.reconciled_at,
            reconciled=False, problems=second.problems, generated=0, valid=9, invalid=3,
            invalid_reasons={"invalid_json": 2, "unknown_product": 1}, late=1, duplicate=1, counted=7,
        ),
        dashboard.RunRow(
            dag_id="kafka_pipeline", run_id="manual__1", reconciled_at=first.reconciled_at,
            reconciled=False, problems=first.problems, generated=12, valid=9, invalid=3,
            invalid_reasons={"invalid_json": 2, "unknown_product": 1}, late=1, duplicate=1, counted=7,
        ),
    ]
    assert dashboard.reason_counts(runs) == {
        "duplicate": 2, "invalid_json": 4, "late": 2, "unknown_product": 2
    }
    assert dashboard.runs(1)[0].run_id == "manual__2"


def test_a_dead_letter_row_cuts_a_long_value_and_names_its_source():
    letter = DeadLetter(
        partition=2, offset=41, timestamp=at(T), key=b"order-7", value=("\u00e9" * 200).encode(),
        reason="invalid_json", detail="not JSON: expecting value",
        source_topic="orders", source_partition=1, source_offset=1234,
    )
    row = dashboard.dead_letter_row(letter)
    assert (row.key, row.value, row.value_bytes, row.source) == (
        "order-7", "\u00e9" * 160 + "…", 400, "orders[1]@1234"
    )
    empty = dashboard.dead_letter_row(DeadLetter(
        partition=0, offset=0, timestamp=None, key=None, value=b"\xff", reason="bad_utf8", detail="",
        source_topic="orders", source_partition=0, source_offset=3,
    ))
    assert (empty.key, empty.value, empty.value_bytes) == (None, "\ufffd", 1)
