"""The API server's action log committed off its event loop (docs/operations/stopping-and-recovering.md).

Airflow 3.3 records each change made through the REST API or the UI (a mark-failed, a pause, a
trigger) in its action log, ``action_logging()`` in airflow/api_fastapi/logging/decorators.py:
an ``async`` dependency that commits the entry on the API server's event loop, with the
metadata DB's sync session. On SQLite, that commit waits for the database's one write lock, and
the whole API server waits with it. When a task start (``PATCH /execution/task-instances/<id>/run``)
or heartbeat of the same server holds that lock, its transaction is committed only when its
request comes back through the same event loop: each waits for the other until SQLite's busy
timeout (5 s) ends the wait, and the change answers 500 (measured: after 5.1 s, and after 60.3 s
with a 60 s busy timeout; the server answered nothing else meanwhile).

``offload`` gives every route of the API server's app that has that dependency one that runs
Airflow's own, unchanged, and then commits its entry in a worker thread, as FastAPI runs the
sync endpoints and the session's own commit: the event loop goes on serving meanwhile, so the
task start commits and the lock wait ends as SQLite's lock waits do, in milliseconds. Called by
the API server only (``order_metrics_plugin.OffloadActionLog``), on its first ASGI event.

Airflow's plugin manager imports every file under plugins/, in every process, each task
included: what only the API server needs (its security module, a second or so) is imported
when ``off_the_loop`` is first called. No ``from __future__ import annotations`` here: FastAPI
reads the wrapper's parameters from its annotations, which are then the objects themselves.
"""

import logging

from fastapi import FastAPI, Request
from fastapi.dependencies.models import Dependant
from fastapi.dependencies.utils import get_dependant
from fastapi.routing import APIRoute
from starlette.concurrency import run_in_threadpool

log = logging.getLogger(__name__)
ACTION_LOGGING = "action_logging.<locals>.log_action"  # the dependency action_logging() makes


class CommitLater:
    """A session for Airflow's dependency: its ``commit()`` only noted, done after by the caller."""

    def __init__(self, session) -> None:
        self.session, self.commit_asked = session, False

    def commit(self) -> None:
        """Noted: ``off_the_loop`` commits after, in a worker thread."""
        self.commit_asked = True

    def __getattr__(self, name: str):
        return getattr(self.session, name)


def off_the_loop(log_action):
    """Airflow's ``log_action`` (one per route: it holds the route's event name), its commit in a
    worker thread. The parameters are Airflow's, so that FastAPI gives it the same session (the
    endpoint's, from the request's dependency cache) and user."""
    from airflow.api_fastapi.common.db.common import SessionDep
    from airflow.api_fastapi.core_api.security import GetUserDep

    async def log_action_off_the_loop(request: Request, session: SessionDep, user: GetUserDep) -> None:
        later = CommitLater(session)
        await log_action(request=request, session=later, user=user)
        if later.commit_asked:
            await run_in_threadpool(session.commit)

    log_action_off_the_loop.offloaded = log_action
    return log_action_off_the_loop


def swapped(dependant: Dependant) -> int:
    """Replace the action-log dependencies in ``dependant``'s tree; returns how many."""
    count = 0
    for index, sub in enumerate(dependant.dependencies):
        if getattr(sub.call, "__qualname__", "") == ACTION_LOGGING:
            dependant.dependencies[index] = get_dependant(
                path=sub.path, call=off_the_loop(sub.call), name=sub.name,
                parent_oauth_scopes=sub.parent_oauth_scopes, scope=sub.scope,
            )
            count += 1
        else:
            count += swapped(sub)
    return count


def offload(app: FastAPI) -> int:
    """Every route of ``app`` (the API server's root app, where the REST API's routes are) with
    Airflow's action-log dependency gets ``off_the_loop``'s; returns how many routes."""
    routes = sum(
        1 for route in app.routes if isinstance(route, APIRoute) and swapped(route.dependant)
    )
    if routes:
        log.info("kafka_stages: the action log of %d routes committed off the event loop", routes)
    elif any(isinstance(route, APIRoute) for route in app.routes):  # an app of the REST API
        log.warning("kafka_stages: no route with Airflow's action_logging(): its commits stay on the "
                    "event loop, where a change can answer 500 on SQLite "
                    "(docs/operations/stopping-and-recovering.md)")
    return routes
