"""The Order metrics plugin as Airflow's plugin manager loads it from plugins/, and the API
server's app it changes (the action log committed off the event loop)."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

LOAD = """
import json, sys
from airflow import plugins_manager
plugins = {p["name"]: p for p in plugins_manager.get_plugin_info()}
mine = plugins["order_metrics"]
print(json.dumps({
    "external_views": mine["external_views"],
    "apps": [(app["name"], app["url_prefix"], app["app"]) for app in mine["fastapi_apps"]],
    "middlewares": [(m["name"], m["middleware"]) for m in mine["fastapi_root_middlewares"]],
    "api_security_imported": "airflow.api_fastapi.core_api.security" in sys.modules,
}))
"""

# The API server's app as `airflow api-server` makes it, started (its lifespan) by Starlette's
# client: the action-log dependencies of its routes before and after, by name, and a change.
SERVE = """
import json
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from airflow.api_fastapi.app import create_app

app = create_app()
def action_logs():
    found = {}
    for route in app.routes:
        if isinstance(route, APIRoute):
            for dependency in route.dependant.dependencies:
                name = getattr(dependency.call, "__qualname__", "")
                if "log_action" in name:
                    found[name] = found.get(name, 0) + 1
    return found
before = action_logs()
with TestClient(app) as client:
    after = action_logs()
print(json.dumps({"before": before, "after": after}))
"""


def airflow_env(home) -> dict[str, str]:
    return {"AIRFLOW_HOME": str(home), "AIRFLOW__CORE__PLUGINS_FOLDER": str(ROOT / "plugins"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False", "PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"}


def test_the_page_is_in_the_navigation_and_its_app_is_imported_only_when_served(tmp_path):
    # A process of its own: the plugin manager loads once per process, from the configured folder.
    out = subprocess.run(
        [sys.executable, "-c", LOAD], env=airflow_env(tmp_path), capture_output=True, text=True,
        timeout=120, check=True,
    )
    loaded = __import__("json").loads(out.stdout.splitlines()[-1])
    assert loaded == {
        "external_views": [{"name": "Order metrics", "href": "/order-metrics/", "url_route": "order-metrics",
                            "destination": "nav", "nav_top_level": True}],
        "apps": [["Order metrics", "/order-metrics", "order_metrics_plugin.LazyApp"]],
        "middlewares": [["Action log off the event loop", "order_metrics_plugin.OffloadActionLog"]],
        # What only the api-server needs waits for its first request (kafka_stages.metrics_page)
        # or its start (kafka_stages.action_log): tasks load plugins too, every file of plugins/.
        "api_security_imported": False,
    }


def test_the_api_server_commits_every_action_log_off_its_event_loop_once_started(tmp_path):
    # Airflow's action_logging() makes one dependency per route; an Airflow that renamed it would
    # leave them on the event loop (docs/operations/stopping-and-recovering.md): this says so.
    env = {**airflow_env(tmp_path), "AIRFLOW__API_AUTH__JWT_SECRET": "a secret for this test"}
    out = subprocess.run(
        [sys.executable, "-c", SERVE], env=env, capture_output=True, text=True, timeout=180, check=True
    )
    found = __import__("json").loads(out.stdout.splitlines()[-1])
    routes = found["before"]["action_logging.<locals>.log_action"]
    assert routes >= 40, found  # 46 in Airflow 3.3: every change through the REST API or the UI
    assert found == {
        "before": {"action_logging.<locals>.log_action": routes},
        "after": {"off_the_loop.<locals>.log_action_off_the_loop": routes},
    }
