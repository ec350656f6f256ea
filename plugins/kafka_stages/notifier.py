"""Tell people when a run fails or overruns: a JSON POST to the webhook of an Airflow connection.

The body is Slack-compatible (an incoming webhook shows ``text`` and ignores the rest) and
carries the same facts as fields, for a receiver that routes on them (Alertmanager-style, a
chat bridge, an incident tool)::

    {"text": "...", "dag_id": ..., "run_id": ..., "task_id": ..., "map_index": ...,
     "try_number": ..., "error": ..., "discrepancies": [...]}

The connection (``pipeline_alerts``, type ``http``) names the webhook: its host as a whole URL
(``{"conn_type": "http", "host": "https://hooks.slack.com/services/..."}``), or the URI form
``http://host:port/path`` (Airflow puts the path in the connection's schema); its extra's
``timeout`` (seconds, 5 by default) bounds the POST. No such connection: nothing is sent and
nothing is logged above DEBUG. A webhook that fails or does not answer costs one WARNING line,
never a traceback, and never changes how the task ended: a notification is not worth a stage.
"""
from __future__ import annotations

import asyncio
import http.client
import json
import urllib.error
import urllib.request
from typing import Any
from urllib.parse import urlsplit

from airflow.sdk import BaseHook, BaseNotifier
from airflow.sdk.exceptions import AirflowNotFoundException

CONN_ID = "pipeline_alerts"
TIMEOUT_SECONDS = 5.0


def failure_message(context) -> dict[str, Any]:
    """The body for a task that failed for good (its last try): reconcile's discrepancies, one a
    line, from the ``ReconcileFailed`` it raised; any other task's error as it was raised."""
    ti, error = context["ti"], context.get("exception")
    task = ti.task_id if ti.map_index is None or ti.map_index < 0 else f"{ti.task_id}[{ti.map_index}]"
    problems = list(getattr(error, "problems", None) or [])
    if problems:
        text = "\n".join([
            f"{ti.dag_id}: run {ti.run_id} does not reconcile "
            f"({len(problems)} discrepanc{'y' if len(problems) == 1 else 'ies'}):",
            *(f"• {problem}" for problem in problems),
            f"manifest: {error.manifest}",
        ])
    else:
        text = f"{ti.dag_id}: task {task} failed in run {ti.run_id} (try {ti.try_number})\n{error}"
    return {
        "text": text, "dag_id": ti.dag_id, "run_id": ti.run_id, "task_id": ti.task_id,
        "map_index": -1 if ti.map_index is None else ti.map_index, "try_number": ti.try_number,
        "error": None if error is None else str(error), "discrepancies": problems,
    }


def overrun_message(context) -> dict[str, Any]:
    """The body for a run past its deadline (a DeadlineAlert's context: the run, as the API
    shows it, and the deadline)."""
    run, deadline = context["dag_run"], context["deadline"]
    text = (f"{run['dag_id']}: run {run['dag_run_id']} is still {run['state']} at its deadline "
            f"{deadline['deadline_time']} (queued at {run['queued_at']})")
    return {
        "text": text, "dag_id": run["dag_id"], "run_id": run["dag_run_id"], "task_id": None,
        "map_index": -1, "try_number": None, "error": None, "discrepancies": [],
    }


def webhook(conn) -> str:
    """The webhook's URL: the connection's host when it is a whole URL, else built from the
    URI form's parts (scheme from the type, the path from the schema)."""
    if conn.host and "://" in conn.host:
        return conn.host
    scheme = "https" if conn.conn_type == "https" else "http"
    port = f":{conn.port}" if conn.port else ""
    return f"{scheme}://{conn.host}{port}/{conn.schema or ''}"


def post(url: str, body: dict[str, Any], timeout: float) -> str | None:
    """POST ``body`` as JSON; what went wrong, in a few words, or None when it was taken (2xx)."""
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}, method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            response.read()
    except urllib.error.HTTPError as exc:
        return f"answered HTTP {exc.code}"
    except TimeoutError:
        return f"did not answer within {timeout:g} s"
    except urllib.error.URLError as exc:
        if isinstance(exc.reason, TimeoutError):
            return f"did not answer within {timeout:g} s"
        return f"could not be reached ({exc.reason})"
    except (OSError, ValueError, http.client.HTTPException) as exc:
        return f"failed ({type(exc).__name__}: {exc})"
    return None


class PipelineNotifier(BaseNotifier):
    """POSTs a failure (``on_failure_callback``) or an overrun (a ``DeadlineAlert``'s
    ``AsyncCallback``, in the triggerer) to the webhook of ``conn_id``.

    :param conn_id: the connection of the webhook (``pipeline_alerts``).
    :param context: given by the triggerer to a deadline's callback; None otherwise.
    """

    def __init__(self, conn_id: str = CONN_ID, context=None) -> None:
        super().__init__(context=context)
        self.conn_id = conn_id

    def notify(self, context) -> None:
        """A task failed for good: send its message."""
        self.send(failure_message(context))

    async def async_notify(self, context) -> None:
        """A run overran its deadline: send its message, off the triggerer's event loop."""
        await asyncio.to_thread(self.send, overrun_message(context))

    def send(self, body: dict[str, Any]) -> bool:
        """Send ``body`` to the webhook, if one is configured; whether it was taken. Never raises."""
        try:
            conn = BaseHook.get_connection(self.conn_id)
        except AirflowNotFoundException:
            self.log.debug("no %s connection: notification not sent", self.conn_id)
            return False
        try:
            url = webhook(conn)
            timeout = float(conn.extra_dejson.get("timeout", TIMEOUT_SECONDS))
        except (TypeError, ValueError) as exc:
            self.log.warning("notification not sent: the %s connection is unusable (%s)", self.conn_id, exc)
            return False
        if problem := post(url, body, timeout):
            # The path of a webhook's URL is often its secret (Slack's): name the server only.
            where = urlsplit(url)
            self.log.warning(
                "notification not sent: the webhook of connection %s (%s://%s) %s; what it said: %s",
                self.conn_id, where.scheme, where.netloc, problem, body["text"].splitlines()[0],
            )
            return False
        self.log.info("notification sent to the webhook of connection %s", self.conn_id)
        return True
