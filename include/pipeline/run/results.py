"""What each stage returns: its counts and the input offsets it read, as typed records.

A stage's task pushes its result as the XCom (``msgspec.to_builtins``); reconcile, the run
manifest, the stage summaries, the stream report and the bench read it back as these types
(``run_results``, ``msgspec.convert``). Only what a stage measured is stored; what follows from
it (``invalid``, ``late``, ``rows_changed``, ...) is a property, so the two can never disagree.
Field names are the XCom's keys since the first manifest, and every field an older manifest may
lack has a default, so old manifests read as they are (keys that are now derived are ignored).
"""

from __future__ import annotations

from collections import Counter
from decimal import Decimal

import msgspec

from include.pipeline import settings
from include.pipeline.domain import money
from include.pipeline.domain.reasons import Reason
from include.pipeline.domain.windows import Ledger


class Result(msgspec.Struct, kw_only=True):
    """The base of every stage result. Each field has a default: a result made with none is a
    stage that did nothing (how a run without that stage sums up)."""


class InputRanges(msgspec.Struct, kw_only=True):
    """The offsets a stage read of its input topic: per partition (a string, as in JSON), the
    first offset read and the one after the last (equal when there was nothing new)."""

    topic: str = ""
    partitions: dict[str, tuple[int, int]] = {}
    lost: int = 0  # records deleted by retention before they were read
    # Partitions a transaction of another writer still held open when the read gave up waiting:
    # [where the read stopped, the end it was reading to], left for the next run.
    held: dict[str, tuple[int, int]] = {}


# Per topic written, per partition (a string, as in JSON), the offset after the last record the
# stage committed there (from the delivery reports): what its downstream must read up to.
WrittenUpto = dict[str, dict[str, int]]


class Consumed(Result, kw_only=True):
    """A stage that consumes a topic: the offsets it read, and how many records."""

    input: InputRanges = msgspec.field(default_factory=InputRanges)
    read: int = 0


class Transformed(Consumed, kw_only=True):
    """A consume-transform-produce stage: the records it wrote per topic, dead letters included."""

    reasons: dict[str, int] = {}  # reason code -> records dead-lettered for it
    written: dict[str, int] = {}  # topic -> records written to it
    written_upto: WrittenUpto = {}

    @property
    def rejected(self) -> int:
        """Records dead-lettered, for any reason."""
        return sum(self.reasons.values())


class CreateTopicsResult(Result, kw_only=True):
    """create_topics: the topics it created (none when all exist)."""

    created: list[str] = []


class GenerateResult(Result, kw_only=True):
    """generate: the orders it produced, and how long that took."""

    generated: int = 0
    seconds: float = 0.0
    written_upto: WrittenUpto = {}


class ProcessResult(Transformed, kw_only=True):
    """process: the orders it passed on to processed-orders; the rest, invalid, went to orders-dlq."""

    valid: int = 0

    @property
    def invalid(self) -> int:
        """Records that break the order contract: every one process dead-lettered."""
        return self.rejected


class AnalyzeResult(Transformed, kw_only=True):
    """analyze: the orders it counted into windows, its ledger before and after, and the state it keeps."""

    counted: int = 0
    counted_revenue: Decimal = Decimal(0)  # exact sum of the counted orders' amounts
    ledger_before: Ledger = msgspec.field(default_factory=Ledger)
    ledger_after: Ledger = msgspec.field(default_factory=Ledger)
    open_windows: int = 0  # (window, product) aggregates kept for the next batch or run
    remembered_order_ids: int = 0

    @property
    def late(self) -> int:
        """Orders dead-lettered as late: their window closed more than the grace period ago."""
        return self.reasons.get(Reason.LATE, 0)

    @property
    def duplicate(self) -> int:
        """Orders dead-lettered as duplicates: their order_id was counted already."""
        return self.reasons.get(Reason.DUPLICATE, 0)

    @property
    def invalid(self) -> int:
        """Rejected as invalid: neither late nor a duplicate (a record process let through)."""
        return self.rejected - self.late - self.duplicate

    @property
    def invalid_reasons(self) -> dict[str, int]:
        """The invalid ones' reasons: every reason but late and duplicate, with its count."""
        return {
            reason: n for reason, n in self.reasons.items() if reason not in (Reason.LATE, Reason.DUPLICATE)
        }

    @property
    def metrics_written(self) -> int:
        """The (window, product) updates it wrote to product-metrics."""
        return self.written.get(settings.METRICS, 0)


class Export(msgspec.Struct, kw_only=True):
    """The metrics.json export: its path, the days of windows it holds, and its lines."""

    path: str
    days: int
    lines: int


class SinkResult(Consumed, kw_only=True):
    """sink: the rows it changed in the metrics store, the store's totals after, and the export."""

    store: str | None = None  # its URL, the password masked
    imported: int = 0  # lines of an old metrics.json imported into a new store
    rows_inserted: int = 0
    rows_updated: int = 0
    metrics: int = 0  # rows the store holds
    order_count: int = 0  # orders its rows count, all runs
    total_revenue: Decimal = Decimal(0)  # the sum of its rows' totals in cents
    counted_revenue: Decimal = Decimal(0)  # the sum of its partials' exact totals
    ledger: Ledger | None = None  # the analyze ledgers the partials add up to, as one; None: none yet
    export: Export | None = None  # None: metrics_json_days is 0

    @property
    def rows_changed(self) -> int:
        """Rows inserted or updated."""
        return self.rows_inserted + self.rows_updated


class ReplayResult(Result, kw_only=True):
    """replay: the windows it rebuilt from processed-orders and published again to product-metrics."""

    range: tuple[str, str]  # the windows' starts, [start, end), ISO 8601
    read: int = 0
    skipped_rejected: int = 0  # records analyze dead-lettered, not counted again
    windows: int = 0  # (window, product) totals republished
    order_count: int = 0


class RunResults(msgspec.Struct, kw_only=True, omit_defaults=True):
    """A run's stage results, as reconcile takes them and the manifest keeps them; a stage that
    is not part of the run (or gave no result) is None."""

    generate: GenerateResult | None = None
    process: ProcessResult | None = None
    analyze: AnalyzeResult | None = None
    sink: SinkResult | None = None


def run_results(xcoms: dict[str, dict | list | None] | RunResults) -> RunResults:
    """The stages' XComs (stage name -> what its task pushed, or the list its mapped instances
    pushed) as typed results, a mapped stage's instances as one."""
    if isinstance(xcoms, RunResults):
        return xcoms
    types = {field.name: field.type for field in msgspec.structs.fields(RunResults)}
    whole = {}
    for stage, xcom in xcoms.items():
        if isinstance(xcom, (list, tuple)):
            kind = next(t for t in types[stage].__args__ if t is not type(None))
            parts = [msgspec.convert(part, kind) for part in xcom if part is not None]
            xcom = msgspec.to_builtins(combined(parts)) if len(parts) == len(xcom) and parts else None
        whole[stage] = xcom
    return msgspec.convert(whole, RunResults)


def combined(parts: list[Transformed]) -> Transformed:
    """The results of a mapped stage's instances (disjoint shares of its input) as one."""
    first = parts[0]
    if not isinstance(first, (ProcessResult, AnalyzeResult)):
        raise ValueError(f"{type(first).__name__} has no mapped instances to combine")
    reasons: Counter[str] = Counter()
    written: Counter[str] = Counter()
    partitions: dict[str, tuple[int, int]] = {}
    held: dict[str, tuple[int, int]] = {}
    upto: WrittenUpto = {}
    for part in parts:
        reasons.update(part.reasons)
        written.update(part.written)
        partitions.update(part.input.partitions)
        held.update(part.input.held)
        for topic, ends in part.written_upto.items():  # instances may write to the same partitions
            into = upto.setdefault(topic, {})
            for partition, end in ends.items():
                into[partition] = max(end, into.get(partition, 0))
    common = {
        "input": InputRanges(
            topic=first.input.topic, partitions=_by_partition(partitions),
            lost=sum(part.input.lost for part in parts), held=_by_partition(held),
        ),
        "read": sum(part.read for part in parts), "reasons": dict(reasons), "written": dict(written),
        "written_upto": {topic: _by_partition(ends) for topic, ends in sorted(upto.items())},
    }
    if isinstance(first, AnalyzeResult):
        before, after = Ledger(), Ledger()
        for part in parts:
            before, after = before.plus(part.ledger_before), after.plus(part.ledger_after)
        return AnalyzeResult(
            **common, counted=sum(part.counted for part in parts),
            counted_revenue=money.total(part.counted_revenue for part in parts),
            ledger_before=before, ledger_after=after,
            open_windows=sum(part.open_windows for part in parts),
            remembered_order_ids=sum(part.remembered_order_ids for part in parts),
        )
    return ProcessResult(**common, valid=sum(part.valid for part in parts))


def _by_partition(values: dict[str, object]) -> dict:
    return dict(sorted(values.items(), key=lambda kv: int(kv[0])))


def xcom(result: Result) -> dict:
    """What a stage's task pushes: its result in JSON types only (lists, not tuples, which
    Airflow's XCom serializer would wrap in a class name)."""
    return msgspec.json.decode(msgspec.json.encode(result))
