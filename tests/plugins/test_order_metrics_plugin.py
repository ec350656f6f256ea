"""The Order metrics plugin as Airflow's plugin manager loads it from plugins/."""

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
    "api_security_imported": "airflow.api_fastapi.core_api.security" in sys.modules,
}))
"""


def test_the_page_is_in_the_navigation_and_its_app_is_imported_only_when_served(tmp_path):
    # A process of its own: the plugin manager loads once per process, from the configured folder.
    env = {"AIRFLOW_HOME": str(tmp_path), "AIRFLOW__CORE__PLUGINS_FOLDER": str(ROOT / "plugins"),
           "AIRFLOW__CORE__LOAD_EXAMPLES": "False", "PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"}
    out = subprocess.run(
        [sys.executable, "-c", LOAD], env=env, capture_output=True, text=True, timeout=120, check=True
    )
    loaded = __import__("json").loads(out.stdout.splitlines()[-1])
    assert loaded == {
        "external_views": [{"name": "Order metrics", "href": "/order-metrics/", "url_route": "order-metrics",
                            "destination": "nav", "nav_top_level": True}],
        "apps": [["Order metrics", "/order-metrics", "order_metrics_plugin.LazyApp"]],
        # What only the api-server needs waits for its first request: tasks load plugins too.
        "api_security_imported": False,
    }
