"""Reconciliation: every input of the run accounted for, and the metrics' revenue equal to the
revenue of the orders counted, to the cent. Writes the run manifest either way."""

from __future__ import annotations

import logging
import re
import sys
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path

import msgspec

from include.pipeline import settings, topology
from include.pipeline.domain.windows import Ledger
from include.pipeline.metrics import counting
from include.pipeline.run import summary as stage_summary
from include.pipeline.run.results import (
    AnalyzeResult,
    Export,
    GenerateResult,
    ProcessResult,
    RunResults,
    SinkResult,
    run_results,
)

log = logging.getLogger(__name__)

# generate is optional: a run of kafka_pipeline_on_orders works through what others produced.
REQUIRED = topology.names(topology.CONSUMING)


class Problems(list):
    """The discrepancies found so far, each a line."""

    def expect(self, what: str, actual, expected) -> None:
        """Note ``what`` when ``actual`` is not ``expected``."""
        if actual != expected:
            self.append(f"{what}: {actual} != {expected}")


def check(results: dict[str, dict | None] | RunResults) -> list[str]:
    """The discrepancies between the stages' counts; empty when everything adds up."""
    results = run_results(results)
    missing = [stage for stage in REQUIRED if getattr(results, stage) is None]
    if missing:
        return [f"no result from {', '.join(missing)} in this run: reconcile needs every stage to have run"]
    problems = Problems()
    for stage in REQUIRED:
        problems.expect(
            f"{stage}: records deleted by retention before they were read",
            getattr(results, stage).input.lost, 0,
        )
    _check_reads(results, problems)
    _check_process(results.process, problems)
    _check_analyze(results.analyze, problems)
    _check_sink(results.sink, results.analyze.ledger_after, problems)
    return list(problems)


def _check_reads(results: RunResults, problems: Problems) -> None:
    """Each consuming stage read at least up to where the stage before it, in this run, committed
    its last record on each partition: a shorter read would leave that stage's output uncounted."""
    for upstream, stage in zip(topology.PIPELINE, topology.PIPELINE[1:]):
        wrote, read = getattr(results, upstream.name), getattr(results, stage.name)
        if wrote is None or read is None:
            continue
        for partition, end in wrote.written_upto.get(stage.input, {}).items():
            upto = read.input.partitions.get(partition, (None, None))[1]
            if upto is None or upto < end:
                problems.append(
                    f"{stage.name} read {stage.input}[{partition}] up to offset "
                    f"{'(not at all)' if upto is None else upto}, short of {end}, "
                    f"where {upstream.name} committed its last record in this run"
                )


def notes(results: dict[str, dict | None] | RunResults) -> list[str]:
    """What the run left for the next one: partitions whose read gave up on a transaction of
    another writer still open (a zombie, a concurrent run) before their end."""
    results = run_results(results)
    left = []
    for stage in topology.CONSUMING:
        result = getattr(results, stage.name)
        for partition, (stopped, end) in (result.input.held if result else {}).items():
            left.append(
                f"{stage.name}: {stage.input}[{partition}] offsets {stopped}..{end - 1} left for the next "
                "run (a transaction of another writer was still open)"
            )
    return left


def _check_process(process: ProcessResult, problems: Problems) -> None:
    problems.expect("process: read != valid + invalid", process.read, process.valid + process.invalid)
    problems.expect(
        "process: written to processed-orders != valid",
        process.written.get(settings.PROCESSED, 0), process.valid,
    )
    dead = process.written.get(settings.DLQ, 0)
    problems.expect("process: dead-lettered != invalid", dead, process.invalid)


def _check_analyze(analyze: AnalyzeResult, problems: Problems) -> None:
    problems.expect(
        "analyze: read != counted + invalid + late + duplicate",
        analyze.read, analyze.counted + analyze.rejected,
    )
    problems.expect(
        "analyze: dead-lettered != invalid + late + duplicate",
        analyze.written.get(settings.DLQ, 0), analyze.rejected,
    )
    before, after = analyze.ledger_before, analyze.ledger_after
    added = after.count - before.count
    problems.expect("analyze: orders added to the ledger != counted", added, analyze.counted)
    problems.expect(
        "analyze: revenue added to the ledger != revenue of the orders counted",
        after.revenue - before.revenue, analyze.counted_revenue,
    )


def _check_sink(sink: SinkResult, analyzed: Ledger, problems: Problems) -> None:
    # The store's totals against the analyze ledgers the sink kept with them (the newest of each
    # partition), both read at one point (the store's offsets), whatever ran between this run's
    # analyze and sink (another run's stages, while a sink waited for its retry). Without any
    # (only replayed records applied): this run's analyze ledger.
    ledger = sink.ledger or analyzed
    if ledger.count < analyzed.count:  # the store misses records this run's analyze wrote
        problems.append("sink: the store's ledger is behind this run's analyze (orders counted, all runs): "
                        f"{ledger.count} < {analyzed.count}")
    problems.expect("sink: orders in the metrics != orders counted, all runs", sink.order_count, ledger.count)
    problems.expect(
        "sink: revenue in the metrics (exact) != revenue counted, all runs",
        sink.counted_revenue, ledger.revenue,
    )


class Summary(msgspec.Struct, kw_only=True):
    """A run in numbers: what the manifest's ``summary`` holds (defaults: older manifests)."""

    generated: int = 0
    processed: int = 0
    valid: int = 0
    invalid: int = 0
    invalid_reasons: dict[str, int] = {}  # reason code -> orders (process and analyze)
    counted: int = 0
    late: int = 0
    duplicate: int = 0
    partials_written: int = 0  # to product-metrics: one per (window, product) and partition counted
    metrics_rows: int = 0
    rows_changed: int = 0
    store: str | None = None
    export: Export | None = None  # None when metrics_json_days is 0


class Manifest(msgspec.Struct, kw_only=True):
    """output/runs/<run_id>.json: the run's summary and problems, and every stage's result."""

    run_id: str
    dag_id: str = "kafka_pipeline"
    reconciled: bool
    problems: list[str]
    notes: list[str] = []  # what was left for the next run (not a problem)
    reconciled_at: datetime | None = None
    summary: Summary
    stages: RunResults = msgspec.field(default_factory=RunResults)


def summarize(results: dict[str, dict | None] | RunResults) -> Summary:
    """The run in numbers, for the manifest; a stage without a result counts nothing."""
    results = run_results(results)
    generate, process = results.generate or GenerateResult(), results.process or ProcessResult()
    analyze, sink = results.analyze or AnalyzeResult(), results.sink or SinkResult()
    reasons = Counter(process.reasons)
    reasons.update(analyze.invalid_reasons)
    return Summary(
        generated=generate.generated, processed=process.read, valid=process.valid,
        invalid=process.invalid + analyze.invalid, invalid_reasons=dict(sorted(reasons.items())),
        counted=analyze.counted, late=analyze.late, duplicate=analyze.duplicate,
        partials_written=analyze.metrics_written, metrics_rows=sink.metrics, rows_changed=sink.rows_changed,
        store=sink.store, export=sink.export,
    )


def reconcile(
    run_id: str, results: dict[str, dict | None] | RunResults, dag_id: str = "kafka_pipeline",
) -> Manifest:
    """Write the manifest of the run (output/runs/<run_id>.json), whether it adds up or not, and
    set the reconcile metrics of ``dag_id``."""
    results = run_results(results)
    problems = check(results)
    manifest = Manifest(
        run_id=run_id, dag_id=dag_id, reconciled=not problems, problems=problems, notes=notes(results),
        reconciled_at=datetime.now(timezone.utc), summary=summarize(results), stages=results,
    )
    path = manifest_path(dag_id, run_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(msgspec.json.format(msgspec.json.encode(manifest)) + b"\n")
    counting.reconciled(dag_id, len(problems), manifest.reconciled_at.timestamp())
    return manifest


def failure(manifest: Manifest) -> str | None:
    """What to tell the user when the run does not reconcile; None when it does."""
    if not manifest.problems:
        return None
    hint = ""
    if any(problem.startswith("sink:") for problem in manifest.problems):
        hint = ("\nIf rows of the metrics store were deleted or edited, or product-metrics lost records, "
                "rebuild the windows from Kafka with the kafka_pipeline_replay DAG "
                "(docs/operations/replay.md).")
    path = manifest_path(manifest.dag_id, manifest.run_id)
    return (f"run {manifest.run_id} does not reconcile (manifest: {path}):\n  "
            + "\n  ".join(manifest.problems) + hint)


def recent(limit: int) -> list[Manifest]:
    """The newest ``limit`` run manifests, newest first; one that cannot be read is skipped."""
    paths = sorted(settings.runs_dir().glob("*.json"), key=_mtime, reverse=True)
    manifests = []
    for path in paths:
        if len(manifests) == limit:
            break
        try:
            manifests.append(msgspec.json.decode(path.read_bytes(), type=Manifest))
        except (OSError, msgspec.DecodeError, msgspec.ValidationError) as exc:
            log.warning("skipping the run manifest %s: %s", path, exc)
    return manifests


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:  # deleted since the glob
        return 0.0


def manifest_path(dag_id: str, run_id: str) -> Path:
    """Where the run's manifest is written: in output/runs/, named after the DAG and the run id
    made file-safe (two DAGs' runs may have one id: the scheduled runs of an hour)."""
    return settings.runs_dir() / f"{dag_id}.{re.sub(r'[^A-Za-z0-9_.-]+', '_', run_id)}.json"


def render(manifest: Manifest) -> str:
    """The manifest in a few lines to read: the run's counts, whether it reconciled, and its problems."""
    s = manifest.summary
    by_reason = stage_summary.wrap("  invalid, by why  : ", stage_summary.counts(s.invalid_reasons))
    lines = [
        f"{manifest.dag_id} run {manifest.run_id}",
        f"  orders generated : {s.generated}",
        f"  orders processed : {s.processed} ({s.valid} valid, {s.invalid} invalid -> {settings.DLQ})",
        *(by_reason if s.invalid_reasons else []),
        f"  orders counted   : {s.counted} ({s.late} late, {s.duplicate} duplicate -> {settings.DLQ}); "
        f"{s.rows_changed} (window, product) metrics updated ({s.partials_written} partials written)",
        f"  metrics          : {s.metrics_rows} rows in {s.store}",
        f"  metrics.json     : {_export(s.export)}",
        f"  reconciled       : {'yes' if manifest.reconciled else 'NO'}",
    ]
    left = [f"  left             : {note}" for note in manifest.notes]
    return "\n".join(lines + [f"    {problem}" for problem in manifest.problems] + left)


def _export(export: Export | None) -> str:
    if not export:
        return "not written (metrics_json_days is 0)"
    return f"{export.lines} lines, the last {export.days} days of windows, in {export.path}"


def latest() -> int:
    """Print the summary of the newest run manifest (used by `make run`)."""
    manifests = recent(1)
    if not manifests:
        print(f"no run manifest in {settings.runs_dir()}: has the DAG run?", file=sys.stderr)
        return 1
    print(render(manifests[0]))
    return 0


if __name__ == "__main__":
    sys.exit(latest())
