"""The Order metrics page: a FastAPI app the api-server mounts at ``PREFIX`` (see
plugins/order_metrics_plugin.py), serving the page, its JSON and its JavaScript.

Every route needs an Airflow login (the UI's ``_token`` cookie or a Bearer token): Airflow puts
none in front of a plugin's app. The JSON is ``include.pipeline.view.dashboard``'s views; the charts
are Plotly's, served from the pinned ``plotly`` package, never from a CDN.

Airflow imports this file in every process that loads plugins, each task included, so what only
the api-server needs (its security module, a second or so to import) waits for ``create_app``.
"""

from __future__ import annotations

from importlib.util import find_spec
from pathlib import Path
from typing import Annotated

import msgspec
from fastapi import Depends, FastAPI, HTTPException, Query, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.responses import FileResponse, HTMLResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from include.pipeline.kafka_io.errors import Misconfigured
from include.pipeline.store.engines import StoreRefused, StoreUnavailable
from include.pipeline.store.metrics_store import MetricsStore
from include.pipeline.view import dashboard
from kafka_stages.hooks import MetricsDbHook, PipelineKafkaHook

PREFIX = "/order-metrics"
WEB = Path(__file__).with_name("web")
STATIC = {
    "page.js": WEB / "page.js",
    "page.css": WEB / "page.css",
    "plotly.min.js": Path(find_spec("plotly").origin).parent / "package_data" / "plotly.min.js",
}
_stores: dict[str, MetricsStore] = {}


def create_app() -> FastAPI:
    """The app, every route behind Airflow's login."""
    from airflow.api_fastapi.core_api.security import requires_authenticated

    app = FastAPI(
        title="Order metrics", description="The kafka_pipeline's results: metrics, runs, dead letters, lag.",
        dependencies=[Depends(requires_authenticated())],
    )
    app.add_exception_handler(StarletteHTTPException, not_logged_in)
    app.get("/", response_class=HTMLResponse)(page)
    app.get("/static/{name}")(static)
    for path, endpoint in (
        ("metrics", metrics), ("runs", runs), ("dead-letters", dead_letters), ("lag", lag),
    ):
        app.get(f"/api/{path}", response_class=JSON)(endpoint)
    return app


async def not_logged_in(request: Request, exc: StarletteHTTPException) -> Response:
    """Airflow answers 403 to a token it cannot verify (forged, or signed by another instance);
    nothing here checks permissions, so that is a missing login: 401, as without a token."""
    if exc.status_code == 403:
        exc = HTTPException(status_code=401, detail="Not authenticated: log in to Airflow",
                            headers={"WWW-Authenticate": "Bearer"})
    return await http_exception_handler(request, exc)


class JSON(Response):
    """msgspec's encoding: money stays an exact decimal string, times ISO 8601 in UTC."""

    media_type = "application/json"

    def render(self, content) -> bytes:
        """The body: ``content`` encoded by msgspec."""
        return msgspec.json.encode(content)


def store() -> MetricsStore:
    """The metrics store of the ``metrics_db`` connection, read-only; one engine per URL."""
    fresh = MetricsDbHook().get_store(read_only=True)
    return _stores.setdefault(fresh.url.render_as_string(hide_password=False), fresh)


def kafka():
    """The cluster of the ``kafka_default`` connection, for the dead letters and the lag."""
    return PipelineKafkaHook("kafka_default").get_kafka()


def unavailable(exc: Exception) -> HTTPException:
    """A 503 that says why the store or Kafka cannot answer."""
    return HTTPException(status_code=503, detail=str(exc))


def page(request: Request) -> HTMLResponse:
    """The page. It knows where it is mounted, and where the Airflow UI is, from the request."""
    root = request.scope.get("root_path", "").rstrip("/")
    html = (WEB / "index.html").read_text()
    return HTMLResponse(html.replace("{{base}}", root).replace("{{ui}}", root.removesuffix(PREFIX)))


def static(name: str) -> FileResponse:
    """One of the page's static files (its script, its style, Plotly); 404 for any other name."""
    if name not in STATIC:
        raise HTTPException(status_code=404, detail=f"no static file {name!r}")
    return FileResponse(STATIC[name], headers={"Cache-Control": "private, no-cache"})


def metrics(
    start: Annotated[str | None, Query(description="ISO 8601; default: `end` minus 3 hours")] = None,
    end: Annotated[str | None, Query(description="ISO 8601; default: the end of the newest window")] = None,
) -> JSON:
    """Revenue and orders per product per minute for the windows starting in [start, end), and
    the newest windows of that range. 400 for a range that cannot be read or is over 7 days."""
    try:
        return JSON(dashboard.metrics(store(), start, end))
    except dashboard.RangeError as exc:
        raise HTTPException(status_code=400, detail=str(exc)) from None
    except (StoreUnavailable, StoreRefused) as exc:
        raise unavailable(exc) from None


def runs(limit: Annotated[int, Query(ge=1, le=500)] = 20) -> JSON:
    """The newest runs' manifests (output/runs/): counts, reasons, reconciled or not."""
    return JSON(dashboard.runs(limit))


def dead_letters(
    runs: Annotated[int, Query(ge=1, le=500)] = 20, newest: Annotated[int, Query(ge=0, le=100)] = 10,
) -> JSON:
    """Dead letters by reason over the newest ``runs`` runs, and the newest records of orders-dlq."""
    try:
        return JSON(dashboard.dead_letter_view(kafka(), dashboard.runs(runs), newest))
    except (ConnectionError, RuntimeError, Misconfigured) as exc:  # Misconfigured: credentials, TLS, ACLs
        raise unavailable(exc) from None


def lag() -> JSON:
    """Each consuming stage's lag (records) on its input topic."""
    try:
        return JSON(dashboard.lags(kafka()))
    except (ConnectionError, Misconfigured) as exc:
        raise unavailable(exc) from None
