"""A run's params as a whole, checked before any stage runs: a mistake in them fails every
attempt the same way, so it is reported at once instead of being retried. And params given to
one task with ``airflow tasks test -t`` that the run's conf overrode, said in one line."""

from __future__ import annotations

import json
from typing import Any, Collection, Mapping

from include.pipeline.domain.analyzer import check_horizon


def problems(conf: Mapping[str, Any], declared: Collection[str], params: Mapping[str, Any]) -> list[str]:
    """What is wrong with a run's ``conf`` (what the user passed), given the names of the DAG's
    ``declared`` params and the run's resolved ``params``; empty when nothing is."""
    found = []
    if unknown := sorted(set(conf) - set(declared)):
        found.append(
            f"unknown param{'s' if len(unknown) > 1 else ''} {', '.join(map(repr, unknown))}: "
            f"the valid ones are {', '.join(sorted(declared))}"
        )
    if "grace_seconds" in params and "dedup_horizon_seconds" in params:
        try:
            check_horizon(params["grace_seconds"], params["dedup_horizon_seconds"])
        except ValueError as exc:
            found.append(str(exc))
    return found


def overridden(
    given: Mapping[str, Any], used: Mapping[str, Any], conf: Mapping[str, Any], run_id: str,
) -> str | None:
    """The one log line saying which params given with ``-t`` (``airflow tasks test``) the conf of
    the run ``run_id`` overrode, with the value used instead; None when it overrode none.

    ``used`` are the task's resolved params (the conf merged in): a param counts as overridden
    only if the conf names it and the value used is not the one given, so a conf that agrees with
    ``-t`` (or Airflow's ``dag_run_conf_overrides_params`` off) says nothing."""
    lost = [
        f"{name}={json.dumps(used[name])} used, not {json.dumps(value)}"
        for name, value in given.items()
        if name in conf and name in used and used[name] != value
    ]
    if not lost:
        return None
    return (
        f"-t params overridden by the conf of run {run_id}: {'; '.join(lost)} "
        "(a run's conf wins over -t; pick a date without a run to use -t)"
    )
