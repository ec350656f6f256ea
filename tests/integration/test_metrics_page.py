"""The Order metrics page on a live Airflow (`scripts/airflow standalone`, free ports), its store a
real PostgreSQL server through the metrics_db connection, its Kafka a real broker: the JSON
endpoints with exact numbers, and the page itself in Debian's Chromium (headless, Playwright).

The store and the run manifests get known contents: two runs of the stages (in this process,
as the tasks would run them) over orders written here; the numbers expected come from those
orders, computed independently (tests/harness/expected.py), or from the store read with
psycopg.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest
from kafka import KafkaAdminClient

from include.pipeline import settings, stages
from include.pipeline.kafka_io.client import Kafka
from include.pipeline.run import reconcile
from include.pipeline.store.metrics_store import MetricsStore
from scripts.kafka.local import free_port_pair, throwaway_broker
from scripts.postgres.local import Postgres, throwaway_postgres
from tests.harness.expected import expected_metrics
from tests.harness.factories import order_value
from tests.harness.live_airflow import LiveAirflow, fresh_home, live_airflow
from tests.harness.pipeline import Pipeline, Record

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
SCREENSHOT = ROOT / "output" / "order-metrics.png"
PAGE = "/order-metrics"
AMOUNTS = ["19.99", "250", "3.333", "1200.50", "0.01", "75.125"]
FIRST_RUN, SECOND_RUN = "manual__2026-01-05T11:00:00+00:00", "manual__2026-01-05T11:30:00+00:00"


def nth(i: int) -> tuple[bytes, bytes]:
    """Order o-<i>: products 1-3 in turn, 25 s apart from 10:00 (windows 10:00 to 10:06)."""
    minute, second = divmod(i * 25, 60)
    timestamp = f"2026-01-05T10:{minute:02d}:{second:02d}Z"
    return f"o-{i}".encode(), order_value(f"o-{i}", f"prod-{i % 3 + 1}", AMOUNTS[i % len(AMOUNTS)], timestamp)


LONG_TEXT = b"not json " * 50
FIRST = [nth(i) for i in range(12)] + [
    (b"bad-json", LONG_TEXT),
    (b"bad-product", order_value("x1", "prod-9", "1.00", "2026-01-05T10:01:00Z")),
    (b"bad-missing",
     b'{"order_id": "x2", "product_id": "prod-1", "amount": 1, "timestamp": "2026-01-05T10:01:00Z"}'),
]
SECOND = [nth(i) for i in range(12, 16)] + [nth(3), (b"bad-tombstone", None)]  # o-3 again: a duplicate
VALID = [json.loads(value) for _, value in [nth(i) for i in range(16)]]


@dataclass
class Live:
    airflow: LiveAirflow
    pipeline: Pipeline
    postgres: Postgres
    port: int

    def get(self, path: str, **params) -> httpx.Response:
        return self.airflow.client.get(f"{PAGE}{path}", params=params)


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    root = tmp_path_factory.mktemp("page")
    home, env = fresh_home(root)
    env["PIPELINE_OUTPUT_DIR"] = str(root / "output")
    port = free_port_pair()
    env["KAFKA_BOOTSTRAP_SERVERS"] = f"127.0.0.1:{port}"
    with throwaway_postgres() as postgres:
        env["AIRFLOW_CONN_METRICS_DB"] = json.dumps(postgres.connection())
        with live_airflow(home, env) as airflow, throwaway_broker(root / "kafka", env, port) as env:
            pipeline = Pipeline(env, root / "output")
            pipeline.use_postgres(postgres)
            two_runs(pipeline, MetricsStore(postgres.url(), "test"))
            airflow.wait_until_ready({"kafka_pipeline"})
            yield Live(airflow, pipeline, postgres, int(airflow.url.rsplit(":", 1)[1]))


def two_runs(pipeline: Pipeline, store: MetricsStore) -> None:
    """FIRST, then SECOND, through process, analyze and sink, each run reconciled."""
    with pytest.MonkeyPatch.context() as env:
        env.setenv("KAFKA_BOOTSTRAP_SERVERS", pipeline.bootstrap)
        env.setenv("PIPELINE_OUTPUT_DIR", str(pipeline.output))
        kafka = Kafka.from_env()
        stages.create_topics(kafka)
        for run_id, dag_id, records in (
            (FIRST_RUN, "kafka_pipeline", FIRST), (SECOND_RUN, "kafka_pipeline_on_orders", SECOND),
        ):
            pipeline.produce(settings.ORDERS, records)
            results = {"process": stages.process(kafka), "analyze": stages.analyze(kafka)}
            results["sink"] = stages.sink(kafka, store=store)
            assert reconcile.reconcile(run_id, results, dag_id=dag_id).reconciled


def source(pipeline: Pipeline, topic: str, key: bytes, last: bool = False) -> Record:
    """The (first or last) record of ``topic`` with ``key``."""
    found = [r for r in pipeline.read(topic) if r.key == key]
    return found[-1] if last else found[0]


def shown(record: Record) -> tuple:
    """How the page shows the dead letter of ``record``: key, source, value cut to 160 characters."""
    text = record.value.decode() if record.value is not None else None
    cut = text if text is None or len(text) <= 160 else text[:160] + "…"
    return (record.key.decode(), f"{record.topic}[{record.partition}]@{record.offset}", cut,
            len(record.value or b""))


def test_every_route_needs_an_airflow_login(live):
    routes = ["/", "/static/page.js", "/static/plotly.min.js",
              "/api/metrics", "/api/runs", "/api/dead-letters", "/api/lag"]
    with httpx.Client(base_url=live.airflow.url) as anonymous:
        for route in routes:
            assert anonymous.get(f"{PAGE}{route}").status_code == 401, route
            forged = anonymous.get(f"{PAGE}{route}", headers={"Authorization": "Bearer not-a-token"})
            assert forged.status_code == 401, route
    assert {route: live.get(route).status_code for route in routes} == dict.fromkeys(routes, 200)


def test_metrics_of_the_default_range_are_the_orders_counted_to_the_cent(live):
    expected = expected_metrics(VALID)
    assert live.pipeline.store_rows() == expected
    view = live.get("/api/metrics").json()
    newest = expected[-1]["window_start"]
    assert (view["start"], view["end"], view["newest_window"]) == (
        "2026-01-05T07:07:00Z", "2026-01-05T10:07:00Z", "2026-01-05T10:06:00Z",
    )
    assert newest == 1767607560  # 10:06
    assert (view["orders"], view["revenue"]) == (16, str(sum(row["total_revenue"] for row in expected)))
    by_product = {}
    for row in expected:
        series = by_product.setdefault(row["product_id"], {"product_id": row["product_id"],
                                                            "product_name": row["product_name"],
                                                            "windows": [], "orders": [], "revenue": []})
        series["windows"].append(f"2026-01-05T10:{(row['window_start'] - 1767607200) // 60:02d}:00Z")
        series["orders"].append(row["order_count"])
        series["revenue"].append(str(row["total_revenue"]))
    assert view["series"] == [by_product[p] for p in sorted(by_product)]
    newest_five = [row for row in reversed(expected) if row["window_start"] > newest - 5 * 60]
    assert view["newest"] == [
        {"window_start": f"2026-01-05T10:{(row['window_start'] - 1767607200) // 60:02d}:00Z",
         "product_id": row["product_id"], "product_name": row["product_name"], "orders": row["order_count"],
         "revenue": str(row["total_revenue"]), "average": str(row["avg_order_value"])}
        for row in sorted(newest_five, key=lambda r: (-r["window_start"], r["product_id"]))
    ]


def test_a_range_picks_its_windows_and_a_range_without_any_is_empty(live):
    view = live.get("/api/metrics", start="2026-01-05T10:01:00Z", end="2026-01-05T10:03:00Z").json()
    expected = [row for row in expected_metrics(VALID) if 1767607260 <= row["window_start"] < 1767607380]
    assert (view["orders"], view["revenue"]) == (
        sum(row["order_count"] for row in expected), str(sum(row["total_revenue"] for row in expected)),
    )
    assert (view["orders"], len(view["newest"])) == (5, len(expected))
    empty = live.get("/api/metrics", start="2025-01-01T00:00:00Z", end="2025-01-01T01:00:00Z")
    assert empty.status_code == 200
    assert empty.json() == {
        "start": "2025-01-01T00:00:00Z", "end": "2025-01-01T01:00:00Z",
        "newest_window": "2026-01-05T10:06:00Z", "orders": 0, "revenue": "0.00", "series": [], "newest": [],
    }


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"start": "last tuesday"},
         "start must be an ISO 8601 time such as 2026-01-05T10:00:00Z, got 'last tuesday'"),
        ({"start": "2026-01-05T10:00:00Z", "end": "2026-01-05T09:00:00Z"},
         "end (2026-01-05T09:00:00+00:00) must be after start (2026-01-05T10:00:00+00:00)"),
        ({"start": "2025-01-01T00:00:00Z", "end": "2026-01-01T00:00:00Z"},
         "a range is at most 7 days, got 365 days: narrow start and end"),
    ],
)
def test_a_bad_range_answers_400_with_what_to_fix(live, params, message):
    response = live.get("/api/metrics", **params)
    assert (response.status_code, response.json()) == (400, {"detail": message})


def test_recent_runs_come_from_their_manifests_newest_first(live):
    runs = live.get("/api/runs").json()
    for run in runs:
        assert run.pop("reconciled_at").startswith("20")
    assert runs == [
        {"dag_id": "kafka_pipeline_on_orders", "run_id": SECOND_RUN, "reconciled": True, "problems": [],
         "generated": 0, "valid": 5, "invalid": 1, "invalid_reasons": {"tombstone": 1}, "late": 0,
         "duplicate": 1, "counted": 4},
        {"dag_id": "kafka_pipeline", "run_id": FIRST_RUN, "reconciled": True, "problems": [],
         "generated": 0, "valid": 12, "invalid": 3,
         "invalid_reasons": {"invalid_json": 1, "missing_field": 1, "unknown_product": 1},
         "late": 0, "duplicate": 0, "counted": 12},
    ]
    assert [run["run_id"] for run in live.get("/api/runs", limit=1).json()] == [SECOND_RUN]


def test_dead_letters_by_reason_and_the_newest_records_which_are_not_committed(live):
    view = live.get("/api/dead-letters").json()
    assert (view["runs"], view["by_reason"]) == (
        2, {"duplicate": 1, "invalid_json": 1, "missing_field": 1, "tombstone": 1, "unknown_product": 1},
    )
    pipeline = live.pipeline
    rows = [(d["reason"], d["key"], d["source"], d["value"], d["value_bytes"]) for d in view["newest"]]
    # The analyze stage dead-lettered the duplicate after process dead-lettered the tombstone.
    assert rows[:2] == [
        ("duplicate", *shown(source(pipeline, settings.PROCESSED, b"o-3", last=True))),
        ("tombstone", *shown(source(pipeline, settings.ORDERS, b"bad-tombstone"))),
    ]
    assert sorted(rows[2:]) == [
        ("invalid_json", *shown(source(pipeline, settings.ORDERS, b"bad-json"))),
        ("missing_field", *shown(source(pipeline, settings.ORDERS, b"bad-missing"))),
        ("unknown_product", *shown(source(pipeline, settings.ORDERS, b"bad-product"))),
    ]
    bad_json = next(row for row in rows if row[0] == "invalid_json")
    assert bad_json[3:] == (LONG_TEXT[:160].decode() + "…", len(LONG_TEXT))  # cut to a readable length
    assert [d["detail"] for d in view["newest"]][0] == "order o-3 is duplicate; not counted"
    assert [d["key"] for d in live.get("/api/dead-letters", newest=1).json()["newest"]] == ["o-3"]
    # Read from assigned offsets: the page's reader has no committed offsets, no group.
    assert "kafka-pipeline-dashboard" not in groups(pipeline)


def groups(pipeline: Pipeline) -> set[str]:
    admin = KafkaAdminClient(bootstrap_servers=pipeline.bootstrap)
    try:
        return {group["group_id"] for group in admin.list_groups()}
    finally:
        admin.close()


def test_the_page_in_a_real_browser_shows_what_the_store_holds(live):
    from playwright.sync_api import sync_playwright

    chromium = shutil.which("chromium")
    assert chromium, "Chromium is missing: `apt-get install chromium` (.ci/run installs it)"
    password = json.loads(
        (live.airflow.home / "simple_auth_manager_passwords.json.generated").read_text()
    )["admin"]
    requests: list[str] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 2000})
            page.on("request", lambda request: requests.append(request.url))
            page.goto(f"{live.airflow.url}/")
            page.get_by_label("Username").fill("admin")
            page.get_by_label("Password").fill(password)
            page.get_by_role("button", name="Sign in").click()
            page.get_by_role("link", name="Order metrics").click()  # in Airflow's navigation
            page.wait_for_url("**/plugin/order-metrics")
            frame = page.frame_locator("iframe")
            for chart in ("#revenue-chart", "#orders-chart"):
                frame.locator(f"{chart}[data-rendered=true]").wait_for(timeout=60_000)
            frame.locator("#lag tbody tr").first.wait_for()
            frame.locator("#dead-letters tbody tr").first.wait_for()
            frame.locator("#runs tbody tr").first.wait_for()
            shown = {
                "orders": frame.locator("#total-orders").inner_text(),
                "revenue": frame.locator("#total-revenue").inner_text(),
                "newest": frame.locator("#newest-window").inner_text(),
                "last run": frame.locator("#last-run").inner_text(),
                "revenue traces": frame.locator("#revenue-chart .scatterlayer .trace").count(),
                "orders traces": frame.locator("#orders-chart .barlayer .trace").count(),
                "windows": [row.split("\t") for row in frame.locator("#windows tbody tr").all_inner_texts()],
                "runs": frame.locator("#runs tbody tr td:first-child a").evaluate_all(
                    "links => links.map(a => a.href)"
                ),
                "reconciled": frame.locator("#runs tbody tr td:last-child").all_inner_texts(),
                "reasons": [
                    row.split("\t")
                    for row in frame.locator("#dead-letter-reasons tbody tr").all_inner_texts()
                ],
                "lag": [row.split("\t") for row in frame.locator("#lag tbody tr").all_inner_texts()],
            }
            SCREENSHOT.parent.mkdir(exist_ok=True)
            page.screenshot(path=str(SCREENSHOT))
        finally:
            browser.close()
    with live.postgres.connect("metrics") as db:
        count, revenue, newest = db.execute(
            "SELECT sum(order_count), sum(total_revenue), max(window_start) FROM product_metrics"
        ).fetchone()
        windows = db.execute(
            "SELECT to_char(to_timestamp(window_start) AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS'), "
            "product_name, order_count, total_revenue, avg_order_value FROM product_metrics "
            "WHERE window_start > %s ORDER BY window_start DESC, product_id", (newest - 5 * 60,),
        ).fetchall()
    ui = f"http://127.0.0.1:{live.port}"
    assert shown == {
        "orders": str(count), "revenue": str(revenue), "newest": "2026-01-05 10:06:00",
        "last run": "reconciled", "revenue traces": 3, "orders traces": 3,
        "windows": [
            [when, name, str(n), str(total), str(average)] for when, name, n, total, average in windows
        ],
        "runs": [f"{ui}/dags/kafka_pipeline_on_orders/runs/{quote(SECOND_RUN, safe='')}",
                 f"{ui}/dags/kafka_pipeline/runs/{quote(FIRST_RUN, safe='')}"],
        "reconciled": ["yes", "yes"],
        "reasons": [["duplicate", "1"], ["invalid_json", "1"], ["missing_field", "1"], ["tombstone", "1"],
                    ["unknown_product", "1"]],
        "lag": [["process", "kafka-pipeline-process", "orders", "0"],
                ["analyze", "kafka-pipeline-analyze", "processed-orders", "0"],
                ["sink", "kafka-pipeline-sink", "product-metrics", "0"]],
    }
    assert (count, revenue) == (16, sum(row["total_revenue"] for row in expected_metrics(VALID)))
    # Everything came from this Airflow: the charting library included, no CDN.
    local = (ui, f"blob:{ui}", "data:")  # the UI makes blob: URLs of what it fetched
    assert requests and all(url.startswith(local) for url in requests), (
        [u for u in requests if not u.startswith(local)]
    )
    assert any(url.endswith(f"{PAGE}/static/plotly.min.js") for url in requests)


def test_lag_is_what_each_stage_has_not_committed_past(live):
    live.pipeline.produce(settings.ORDERS, [nth(i) for i in range(100, 107)])
    assert live.get("/api/lag").json() == [
        {"stage": "process", "group": "kafka-pipeline-process", "topic": "orders", "records": 7},
        {"stage": "analyze", "group": "kafka-pipeline-analyze", "topic": "processed-orders", "records": 0},
        {"stage": "sink", "group": "kafka-pipeline-sink", "topic": "product-metrics", "records": 0},
    ]


def test_standalone_says_where_the_page_is(live):
    assert (f"the Order metrics page: http://localhost:{live.port}/plugin/order-metrics"
            in live.airflow.log.read_text())

