"""The "Order metrics" page in the Airflow UI's navigation (plugins/kafka_stages/metrics_page.py),
and the API server's action log committed off its event loop (plugins/kafka_stages/action_log.py).

Airflow imports this file in every process that loads plugins, each task included; only the
api-server serves the page, so its app is made on the first request, not here, and the same for
the action log.
"""

from __future__ import annotations

from importlib import import_module

from airflow.plugins_manager import AirflowPlugin

PREFIX = "/order-metrics"  # kafka_stages.metrics_page.PREFIX, not imported: see above


class LazyApp:
    """An ASGI app that calls ``module``'s ``create_app()`` when the first request comes."""

    def __init__(self, module: str) -> None:
        self.module, self.app = module, None

    async def __call__(self, scope, receive, send) -> None:
        """Serves a request, making the app first on the first one."""
        if self.app is None:
            self.app = import_module(self.module).create_app()
        await self.app(scope, receive, send)


class OffloadActionLog:
    """A root middleware of the api-server's app (the REST API's and the UI's): on its first ASGI
    event (the app's start-up), ``kafka_stages.action_log.offload`` of the app it is in."""

    def __init__(self, app) -> None:
        self.app, self.done = app, False

    async def __call__(self, scope, receive, send) -> None:
        """Passes every event on; the first one, after offloading its app's action log."""
        if not self.done:
            self.done = True
            import_module("kafka_stages.action_log").offload(scope["app"])
        await self.app(scope, receive, send)


class OrderMetricsPlugin(AirflowPlugin):
    """Mounts the Order metrics page on the api-server and gives it a button in the navigation;
    commits the api-server's action log off its event loop (``OffloadActionLog``)."""

    name = "order_metrics"
    fastapi_apps = [{
        "app": LazyApp("kafka_stages.metrics_page"), "url_prefix": PREFIX, "name": "Order metrics",
    }]
    fastapi_root_middlewares = [{"middleware": OffloadActionLog, "name": "Action log off the event loop"}]
    external_views = [{
        "name": "Order metrics", "href": f"{PREFIX}/", "url_route": "order-metrics", "destination": "nav",
        "nav_top_level": True,  # a button of its own in the navigation, not under "Plugins"
    }]
