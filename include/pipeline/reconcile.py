"""Reconciliation: every input of the run accounted for, and the metrics' revenue equal to the
revenue of the orders counted, to the cent. Writes the run manifest either way."""

from __future__ import annotations

import json
import re
import sys
from decimal import Decimal
from pathlib import Path

from include.pipeline import settings

# generate is optional: a run of kafka_pipeline_on_orders works through what others produced.
REQUIRED = ("process", "analyze", "sink")


class ReconciliationError(Exception):
    pass


def check(results: dict[str, dict | None]) -> list[str]:
    """The discrepancies between the stages' counts; empty when everything adds up."""
    missing = [stage for stage in REQUIRED if not results.get(stage)]
    if missing:
        return [f"no result from {', '.join(missing)} in this run: reconcile needs every stage to have run"]
    process, analyze, sink = results["process"], results["analyze"], results["sink"]
    problems = []

    def expect(what: str, actual, expected) -> None:
        if actual != expected:
            problems.append(f"{what}: {actual} != {expected}")

    for stage in ("process", "analyze", "sink"):
        expect(f"{stage}: records deleted by retention before they were read", results[stage]["input"]["lost"], 0)
    expect("process: read != valid + invalid", process["read"], process["valid"] + process["invalid"])
    expect("process: written to processed-orders != valid", process["written"][settings.PROCESSED], process["valid"])
    expect("process: dead-lettered != invalid", process["written"][settings.DLQ], process["invalid"])
    rejected = analyze["invalid"] + analyze["late"] + analyze["duplicate"]
    expect("analyze: read != counted + invalid + late + duplicate", analyze["read"], analyze["counted"] + rejected)
    expect("analyze: dead-lettered != invalid + late + duplicate", analyze["written"][settings.DLQ], rejected)
    before, after = analyze["ledger_before"], analyze["ledger_after"]
    expect("analyze: orders added to the ledger != counted", after["count"] - before["count"], analyze["counted"])
    expect(
        "analyze: revenue added to the ledger != revenue of the orders counted",
        Decimal(after["revenue"]) - Decimal(before["revenue"]), Decimal(analyze["counted_revenue"]),
    )
    expect("sink: orders in the metrics != orders counted, all runs", sink["order_count"], after["count"])
    expect(
        "sink: revenue in the metrics != revenue counted (in cents per window), all runs",
        Decimal(sink["total_revenue"]), Decimal(after["revenue_cents"]),
    )
    return problems


def summarize(results: dict[str, dict | None]) -> dict:
    def get(stage: str, field: str) -> int:
        return (results.get(stage) or {}).get(field, 0)

    return {
        "generated": get("generate", "generated"),
        "processed": get("process", "read"),
        "valid": get("process", "valid"),
        "invalid": get("process", "invalid") + get("analyze", "invalid"),
        "counted": get("analyze", "counted"),
        "late": get("analyze", "late"),
        "duplicate": get("analyze", "duplicate"),
        "windows_updated": (results.get("analyze") or {}).get("written", {}).get(settings.METRICS, 0),
        "metrics_rows": get("sink", "metrics"),
        "rows_changed": get("sink", "rows_changed"),
        "store": (results.get("sink") or {}).get("store"),
        "export": (results.get("sink") or {}).get("export"),
    }


def reconcile(run_id: str, results: dict[str, dict | None]) -> dict:
    """Write the manifest of the run (output/runs/<run_id>.json) and fail if it does not add up."""
    problems = check(results)
    manifest = {
        "run_id": run_id, "reconciled": not problems, "problems": problems,
        "summary": summarize(results), "stages": results,
    }
    path = manifest_path(run_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(manifest, indent=2, default=str) + "\n")
    print(render(manifest), flush=True)
    if problems:
        hint = ""
        if any(problem.startswith("sink:") for problem in problems):
            hint = ("\nIf rows of the metrics store were deleted or edited, or product-metrics lost records, rebuild "
                    "the windows from Kafka with the kafka_pipeline_replay DAG (README: Replay).")
        raise ReconciliationError(
            f"run {run_id} does not reconcile (manifest: {path}):\n  " + "\n  ".join(problems) + hint
        )
    return manifest


def manifest_path(run_id: str) -> Path:
    return settings.runs_dir() / f"{re.sub(r'[^A-Za-z0-9_.-]+', '_', run_id)}.json"


def render(manifest: dict) -> str:
    s = manifest["summary"]
    lines = [
        f"kafka_pipeline run {manifest['run_id']}",
        f"  orders generated : {s['generated']}",
        f"  orders processed : {s['processed']} ({s['valid']} valid, {s['invalid']} invalid -> {settings.DLQ})",
        f"  orders counted   : {s['counted']} ({s['late']} late, {s['duplicate']} duplicate -> {settings.DLQ}); "
        f"{s['windows_updated']} (window, product) metrics updated",
        f"  metrics          : {s['metrics_rows']} rows in {s['store']} ({s['rows_changed']} changed by this run)",
        f"  metrics.json     : {_export(s['export'])}",
        f"  reconciled       : {'yes' if manifest['reconciled'] else 'NO'}",
    ]
    return "\n".join(lines + [f"    {problem}" for problem in manifest["problems"]])


def _export(export: dict | None) -> str:
    if not export:
        return "not written (metrics_json_days is 0)"
    return f"{export['lines']} lines, the last {export['days']} days of windows, in {export['path']}"


def latest() -> int:
    """Print the summary of the newest run manifest (used by `make run`)."""
    manifests = sorted(settings.runs_dir().glob("*.json"), key=lambda p: p.stat().st_mtime)
    if not manifests:
        print(f"no run manifest in {settings.runs_dir()}: has the DAG run?", file=sys.stderr)
        return 1
    print(render(json.loads(manifests[-1].read_text())))
    return 0


if __name__ == "__main__":
    sys.exit(latest())
