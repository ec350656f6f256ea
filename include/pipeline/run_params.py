"""A run's params as a whole, checked before any stage runs: a mistake in them fails every
attempt the same way, so it is reported at once instead of being retried."""

from __future__ import annotations

from typing import Any, Collection, Mapping

from include.pipeline.analyzer import check_horizon


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
