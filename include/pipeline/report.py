"""The run manifest: every stage's counts in one JSON file per run, and a readable summary."""

from __future__ import annotations

import json
import re
import sys

from include.pipeline import settings


def summarize(results: dict[str, dict | None]) -> dict:
    def get(stage: str, field: str) -> int:
        return (results.get(stage) or {}).get(field, 0)

    return {
        "generated": get("generate", "generated"),
        "processed": get("process", "read"),
        "valid": get("process", "valid"),
        "invalid": get("process", "invalid") + get("analyze", "invalid"),
        "counted": get("analyze", "counted"),
        "windows_updated": get("analyze", "windows_updated"),
        "metrics_lines": get("sink", "metrics"),
        "metrics_path": (results.get("sink") or {}).get("path", str(settings.metrics_path())),
    }


def write_manifest(run_id: str, results: dict[str, dict | None]) -> dict:
    manifest = {"run_id": run_id, "summary": summarize(results), "stages": results}
    directory = settings.runs_dir()
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{re.sub(r'[^A-Za-z0-9_.-]+', '_', run_id)}.json"
    path.write_text(json.dumps(manifest, indent=2, default=str) + "\n")
    print(render(manifest), flush=True)
    return manifest


def render(manifest: dict) -> str:
    s = manifest["summary"]
    return "\n".join([
        f"kafka_pipeline run {manifest['run_id']}",
        f"  orders generated : {s['generated']}",
        f"  orders processed : {s['processed']} ({s['valid']} valid, {s['invalid']} invalid -> {settings.DLQ})",
        f"  orders counted   : {s['counted']} in {s['windows_updated']} (window, product) metrics updated",
        f"  metrics          : {s['metrics_lines']} lines in {s['metrics_path']}",
    ])


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
