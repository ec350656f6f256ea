"""The records each measured step must have read, against what it did: a rate over records that
were not all read (a read that ended early, a stage that skipped some) would flatter it, so the
bench stops instead, saying which step read what."""

from __future__ import annotations

import sys

from scripts.bench.results import Step


def series_problems(n: int, steps: dict[str, Step]) -> list[str]:
    """What differs from the expected counts among ``steps`` (by name, any of them): generate
    wrote ``n`` orders; the baselines and process read ``n``; analyze read what process wrote (the
    orders less the dead-lettered), the sink what analyze wrote."""
    expected = dict.fromkeys(("generate", "consume", "consume_produce", "process"), n)
    for stage, upstream in (("analyze", "process"), ("sink", "analyze")):
        if upstream in steps:
            expected[stage] = steps[upstream].written
    return [
        f"{what} {'wrote' if what == 'generate' else 'read'} {steps[what].records:,} records, not {count:,}"
        for what, count in expected.items() if what in steps and steps[what].records != count
    ]


def dag_run_problems(n: int, summary: dict) -> list[str]:
    """What differs in a DAG run's manifest ``summary`` (reconcile's: its counts add up) from a
    run of ``n`` orders: generated and processed."""
    return [
        f"{what} {summary.get(what, 0):,} orders, not {n:,}"
        for what in ("generated", "processed") if summary.get(what, 0) != n
    ]


def check(what: str, problems: list[str]) -> None:
    """Stop the bench, saying what ``what`` got wrong, if anything."""
    if problems:
        sys.exit(f"bench: {what}: " + "; ".join(problems))
