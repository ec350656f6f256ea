"""How each stage is called, in one table: its topology entry, its function and result type, and
the run params it takes (names of ``run.params.CATALOGUE``, passed as keyword arguments of the
same names). The DAGs' tasks, continuous mode's processes and the bench all call a stage from it.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping

import msgspec

from include.pipeline import topology
from include.pipeline.run import results
from include.pipeline.stages.analyzing import analyze
from include.pipeline.stages.generating import generate
from include.pipeline.stages.processing import process
from include.pipeline.stages.replaying import replay
from include.pipeline.stages.sinking import sink
from include.pipeline.topology import Stage


class StageCall(msgspec.Struct, frozen=True):
    """One stage's call: ``run(kafka, **params)``, returning a ``result``.

    :param params: the run params it takes, bounded and following.
    :param bounded: those it takes in a bounded run only.
    """

    stage: Stage
    run: Callable[..., Any]
    result: type
    params: tuple[str, ...] = ()
    bounded: tuple[str, ...] = ()

    @property
    def name(self) -> str:
        """The stage's name, also its task's id."""
        return self.stage.name

    @property
    def mapped(self) -> bool:
        """Whether it runs as ``workers`` instances, each on its share of the input's partitions."""
        return self.stage in topology.SCALABLE

    def names(self, following: bool = False) -> tuple[str, ...]:
        """The params it takes, bounded or following."""
        return self.params if following else (*self.bounded, *self.params)

    def kwargs(self, values: Mapping[str, Any], following: bool = False) -> dict[str, Any]:
        """Its keyword arguments, from ``values`` by param name."""
        return {name: values[name] for name in self.names(following)}


CALLS: dict[str, StageCall] = {call.name: call for call in (
    StageCall(
        topology.GENERATE, generate, results.GenerateResult, ("rate", "invalid_ratio"), ("orders", "seed"),
    ),
    StageCall(topology.PROCESS, process, results.ProcessResult),
    StageCall(topology.ANALYZE, analyze, results.AnalyzeResult, ("grace_seconds", "dedup_horizon_seconds")),
    StageCall(topology.SINK, sink, results.SinkResult, ("metrics_json_days",)),
    StageCall(topology.REPLAY, replay, results.ReplayResult, (), ("start", "end", "allow_partial")),
)}
