"""The DAGs' params: which run params (``include.pipeline.run.params.CATALOGUE``) each DAG takes,
as Airflow ``Param``s, and the table of them the docs show (``table()``, checked by a test)."""

from __future__ import annotations

import json

import msgspec
from airflow.sdk import Param

from include.pipeline.run.params import CATALOGUE, RunParam

# In the order the trigger form shows them.
CONSUMING = (
    "workers", "wait_for_orders_seconds", "grace_seconds", "dedup_horizon_seconds", "metrics_json_days",
)
DAG_PARAMS: dict[str, tuple[str, ...]] = {
    "kafka_pipeline": ("orders", "rate", "invalid_ratio", "seed", *CONSUMING),
    "kafka_pipeline_on_orders": CONSUMING,
    "kafka_pipeline_stream": (
        "workers", "duration_seconds", "commit_interval_ms", "rate", "invalid_ratio", "grace_seconds",
        "dedup_horizon_seconds", "metrics_json_days",
    ),
    "kafka_pipeline_replay": ("start", "end", "allow_partial", "metrics_json_days"),
}
# A stream run generates at a rate, never as fast as possible.
OVERRIDES: dict[str, dict[str, dict]] = {
    "kafka_pipeline_stream": {"rate": {"default": 30, "minimum": None, "exclusiveMinimum": 0}},
}


def run_params(dag_id: str) -> list[RunParam]:
    """The run params of the DAG ``dag_id``, with its own defaults and bounds."""
    changed = OVERRIDES.get(dag_id, {})
    return [msgspec.structs.replace(CATALOGUE[name], **changed.get(name, {})) for name in DAG_PARAMS[dag_id]]


def dag_params(dag_id: str) -> dict[str, Param]:
    """The params of the DAG ``dag_id``, made anew for each DAG: Airflow resolves a run's conf
    into the Param objects themselves, so a DAG sharing them with another (or a process running
    several runs: dag.test in the tests) would take one run's values as the next one's defaults."""
    return {
        param.name: Param(param.default, description=param.description, **param.schema())
        for param in run_params(dag_id)
    }


def table() -> str:
    """The docs' table of the params: each name, its default (a DAG's own in brackets), the DAGs
    that take it and what it means."""
    lines = ["| param | default | DAGs | meaning |", "|---|---|---|---|"]
    for name, param in CATALOGUE.items():
        dags = [dag_id for dag_id, names in DAG_PARAMS.items() if name in names]
        own = [f"{dag_id}: {json.dumps(OVERRIDES[dag_id][name]['default'])}"
               for dag_id in dags if "default" in OVERRIDES.get(dag_id, {}).get(name, {})]
        default = json.dumps(param.default) + (f" ({'; '.join(own)})" if own else "")
        lines.append(f"| `{name}` | {default} | {', '.join(dags)} | {param.description} |")
    return "\n".join(lines)
