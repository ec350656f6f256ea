"""The few lines a stage's task log ends with: its counts, reasons and offsets, from the result
the stage returns (its XCom), short enough to read without scrolling sideways."""

from __future__ import annotations

import textwrap

from include.pipeline import settings
from include.pipeline.run.results import (
    AnalyzeResult,
    Consumed,
    CreateTopicsResult,
    GenerateResult,
    InputRanges,
    ProcessResult,
    ReplayResult,
    Result,
    SinkResult,
)


def lines(stage: str, result: Result) -> list[str]:
    """The summary of one stage's result; ``stage`` is the task's stage (its function in stages.py)."""
    render = _RENDER.get(type(result))
    return [f"{stage} summary", *(f"  {line}" for line in render(result))] if render else []


KEEP = "\u00a0"  # joins the words of one item, so wrapping never splits "unknown_product 30"


def offsets(source: InputRanges) -> str:
    """Which offsets a stage read, per partition: ``p0 0..666, p1 nothing new (at 650)``."""
    parts = []
    for partition, (first, following) in source.partitions.items():
        parts.append(
            f"p{partition} {first}..{following - 1}" if following > first
            else f"p{partition} nothing new (at {first})"
        )
    lost = f"; {source.lost} deleted by retention before they were read" if source.lost else ""
    return (", ".join(part.replace(" ", KEEP) for part in parts) or "no partitions") + lost


def counts(by_reason: dict[str, int]) -> str:
    """``bad_utf8 3, invalid_json 20``, each pair kept together when wrapped."""
    return ", ".join(f"{reason}{KEEP}{n}" for reason, n in sorted(by_reason.items()))


def wrap(head: str, text: str, width: int = 96) -> list[str]:
    """``head`` and ``text``, wrapped under itself, so no line runs off a log viewer's edge."""
    lines = (
        textwrap.wrap(text, width, initial_indent=head, subsequent_indent=" " * len(head)) or [head.rstrip()]
    )
    return [line.replace(KEEP, " ") for line in lines]


def labelled(label: str, text: str) -> list[str]:
    """``text`` after its label, padded like the others so the colons line up, and wrapped."""
    return wrap(f"{label:<9} : ", text)


def reasons(by_reason: dict[str, int]) -> str:
    """The counts by reason, in parentheses to follow a total; nothing when there are none."""
    return f" ({counts(by_reason)})" if by_reason else ""


def _read(result: Consumed) -> list[str]:
    return labelled("read", f"{result.read} from {result.input.topic}, offsets {offsets(result.input)}")


def _create_topics(result: CreateTopicsResult) -> list[str]:
    return [f"created   : {', '.join(result.created) or 'none, all exist'}"]


def _generate(result: GenerateResult) -> list[str]:
    return [f"generated : {result.generated} orders -> {settings.ORDERS} in {result.seconds:.1f}s"]


def _process(result: ProcessResult) -> list[str]:
    return [
        *_read(result),
        f"valid     : {result.valid} -> {settings.PROCESSED}",
        *labelled("invalid", f"{result.invalid} -> {settings.DLQ}{reasons(result.reasons)}"),
    ]


def _analyze(result: AnalyzeResult) -> list[str]:
    return [
        *_read(result),
        f"counted   : {result.counted} orders, revenue {result.counted_revenue} -> "
        f"{result.metrics_written} (window, product) updates on {settings.METRICS}",
        *labelled("rejected", f"{result.rejected} -> {settings.DLQ}{reasons(result.reasons)}"),
        f"state     : {result.open_windows} open (window, product) aggregates, "
        f"{result.remembered_order_ids} order ids remembered; {result.ledger_after.count} counted, all runs",
    ]


def _sink(result: SinkResult) -> list[str]:
    export = result.export
    return [
        *_read(result),
        f"rows      : {result.rows_inserted} inserted, {result.rows_updated} updated"
        + (f", {result.imported} lines imported from metrics.json" if result.imported else ""),
        f"store     : {result.store}",
        f"holds     : {result.metrics} rows, {result.order_count} orders, revenue {result.total_revenue}",
        f"export    : {export.lines} lines, the last {export.days} days, in {export.path}" if export
        else "export    : none (metrics_json_days is 0)",
    ]


def _replay(result: ReplayResult) -> list[str]:
    start, end = result.range
    return [
        f"range     : windows starting in [{start}, {end})",
        f"read      : {result.read} from {settings.PROCESSED}, "
        f"{result.skipped_rejected} dead-lettered ones skipped",
        f"published : {result.windows} (window, product) totals, "
        f"{result.order_count} orders -> {settings.METRICS}",
    ]


_RENDER = {
    CreateTopicsResult: _create_topics, GenerateResult: _generate, ProcessResult: _process,
    AnalyzeResult: _analyze, SinkResult: _sink, ReplayResult: _replay,
}
