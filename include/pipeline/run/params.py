"""A run's params: the catalogue (``CATALOGUE``: each name's one meaning, default and bounds, which
the DAGs' params, continuous mode's flags and the bench all take), and a run's params as a whole,
checked before any stage runs: a mistake in them fails every attempt the same way, so it is
reported at once instead of being retried. And params given to one task with ``airflow tasks
test -t`` that the run's conf overrode, said in one line."""

from __future__ import annotations

import json
from typing import Any, Collection, Mapping

import msgspec

from include.pipeline import settings
from include.pipeline.domain.analyzer import check_horizon


class RunParam(msgspec.Struct, frozen=True, omit_defaults=True):
    """One param of a run, as a JSON schema has it (Airflow's ``Param`` takes the same fields)."""

    name: str
    default: Any
    type: str | tuple[str, ...]
    description: str
    minimum: float | None = None
    maximum: float | None = None
    exclusiveMinimum: float | None = None  # noqa: N815 (the JSON schema's name)
    format: str | None = None

    def schema(self) -> dict[str, Any]:
        """The JSON schema fields of the param (its type and bounds), without name and default."""
        fields = msgspec.structs.asdict(self)
        for key in ("name", "default", "description"):
            del fields[key]
        return {key: list(value) if isinstance(value, tuple) else value
                for key, value in fields.items() if value is not None}

    def problem(self, value: Any, label: str | None = None) -> str | None:
        """What is wrong with ``value`` for this param's bounds, naming it ``label`` (its name by
        default); None when nothing is."""
        label = label or self.name
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            if self.minimum is not None and value < self.minimum:
                return f"{label} must be {self.minimum:g} or more, got {value:g}"
            if self.maximum is not None and value > self.maximum:
                return f"{label} must be {self.maximum:g} or less, got {value:g}"
            if self.exclusiveMinimum is not None and value <= self.exclusiveMinimum:
                return f"{label} must be above {self.exclusiveMinimum:g}, got {value:g}"
        return None

    @property
    def flag(self) -> str:
        """Its command-line flag: ``--grace-seconds`` for ``grace_seconds``."""
        return "--" + self.name.replace("_", "-")


CATALOGUE: dict[str, RunParam] = {param.name: param for param in (
    RunParam("orders", 2000, "integer", "Orders to generate in this run; 0 generates none and processes "
             "what is already in `orders`", minimum=0),
    RunParam("rate", 0, "number", "Orders a second to generate; in a bounded run 0 is as fast as "
             "possible", minimum=0),
    RunParam("invalid_ratio", 0.05, "number", "Share of deliberately invalid orders (bad JSON, wrong "
             "types, unknown product, ...)", minimum=0, maximum=1),
    RunParam("seed", None, ("null", "integer"), "Makes the generated orders (ids included) reproducible; "
             "null seeds with the run id, so a cleared run regenerates the same orders (and they are "
             "dead-lettered as duplicates)"),
    RunParam("workers", settings.WORKERS, "integer", "Instances of process and of analyze, each reading "
             "its share of the partitions of its input: instance i of n reads the partitions p with "
             "p % n == i; at most the partitions (6 for topics this pipeline makes)", minimum=1),
    RunParam("wait_for_orders_seconds", 0, "number", "How long wait_for_orders waits for input before "
             "skipping the stages; 0 looks once", minimum=0),
    RunParam("grace_seconds", settings.GRACE_SECONDS, "integer", "How long after a window ends its late "
             "orders still count", minimum=0),
    RunParam("dedup_horizon_seconds", settings.DEDUP_HORIZON_SECONDS, "integer", "How long a counted "
             "order_id is remembered (at least grace_seconds + 60: a window and its grace)", minimum=0),
    RunParam("metrics_json_days", settings.METRICS_JSON_DAYS, "integer", "Days of windows, counted back "
             "from the newest, that sink exports to output/metrics.json; 0 writes no file", minimum=0),
    RunParam("duration_seconds", 3540, "integer", "How long a stream run's stages stream before handing "
             "over to the next run (of an hourly interval)", minimum=1),
    RunParam("commit_interval_ms", 100, "integer", "The longest a batch collects records before its "
             "transaction commits (continuous mode)", minimum=1, maximum=60000),
    RunParam("start", "2026-01-05T09:00:00+00:00", "string", "Replay: the first window start "
             "(inclusive)", format="date-time"),
    RunParam("end", "2026-01-05T10:00:00+00:00", "string", "Replay: the last window start (exclusive)",
             format="date-time"),
    RunParam("allow_partial", False, "boolean", "Replay even if retention already deleted part of "
             "processed-orders"),
)}


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
