"""Scaling past this machine, on paper: a stage's throughput against its workers, their cores and
the brokers', from what the bench measured of it at one worker (docs/performance.md: Scaling past
this machine).

``python -m scripts.bench.model --workers 8 --brokers 3 --broker-cores 4 --worker-cores 2
--partitions 12`` predicts process and analyze on that cluster from output/bench.json's medians;
without --workers it prints the model against what that bench measured at 1, 2 and 3 workers.

Nothing from the pipeline (include/, plugins/, dags/): arithmetic over bench.json's numbers.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from pathlib import Path

import msgspec

STAGES = ("process", "analyze")
MACHINE_WORKERS = (1, 2, 3)  # the worker counts the bench's scaling part measures
# The bounds, by the name a prediction gives the one that binds.
WORKERS, PARTITIONS = "workers", "partitions"
WORKER_CORES, BROKER_CORES, SHARED_CORES = "worker cores", "broker cores", "shared cores"


class Costs(msgspec.Struct, frozen=True, kw_only=True):
    """What one record costs a stage, as the bench measured it at one worker.

    :param stage_cpu_us: s, the CPU (user + sys, all its threads) of the stage's process a record,
        in microseconds
    :param broker_cpu_us: b, the broker's CPU a record, in microseconds: all it does for the stage
        (fetches, produces, transactions, offsets; replication too, but the bench's topics have one
        replica)
    :param one_worker_per_s: r1, the records a second of one worker alone (its step is
        single-threaded, so more cores do not make it faster)
    """

    stage_cpu_us: float
    broker_cpu_us: float
    one_worker_per_s: float

    def __post_init__(self) -> None:
        """Refuse costs no measurement gives."""
        if self.stage_cpu_us < 0 or self.broker_cpu_us < 0 or self.one_worker_per_s <= 0:
            raise ValueError(f"costs must be >= 0 and the rate > 0, got {self}")


class Cluster(msgspec.Struct, frozen=True, kw_only=True):
    """Where a stage's workers run: hosts of their own (``broker_cores`` and ``worker_cores``), or
    one machine whose cores the broker and the workers share (``shared_cores``, as the bench's).

    :param workers: W, the stage's workers, a process each; worker i owns the partitions p with
        p % W == i, so past P a worker has none
    :param partitions: P, the partitions of the stage's input topic
    :param brokers: B, the brokers, the partitions' leaders spread over them evenly (not with
        ``shared_cores``: b is all of the brokers' CPU there)
    :param broker_cores: the cores of each broker's host
    :param worker_cores: the cores each worker has to itself
    :param shared_cores: instead of the two above: the cores of the one machine
    """

    workers: int
    partitions: int = 6
    brokers: int = 1
    broker_cores: float | None = None
    worker_cores: float | None = None
    shared_cores: float | None = None

    def __post_init__(self) -> None:
        """Refuse a shape that is neither hosts of their own nor one shared machine."""
        if min(self.workers, self.partitions, self.brokers) < 1:
            raise ValueError("workers, partitions and brokers must be at least 1")
        own = (self.broker_cores, self.worker_cores)
        cores = own if self.shared_cores is None else (self.shared_cores,)
        if (self.shared_cores is not None and own != (None, None)) or None in cores or min(cores) <= 0:
            raise ValueError("give shared cores, or broker cores and worker cores (each > 0), not both")


class Prediction(msgspec.Struct, frozen=True, kw_only=True):
    """A stage's throughput on a cluster: the least of its bounds.

    :param records_per_s: the throughput predicted, records a second
    :param bound: the name of the bound that binds (``WORKERS``, ``PARTITIONS``, ...)
    :param bounds: every bound, records a second by name
    """

    records_per_s: float
    bound: str
    bounds: dict[str, float]


def predict(costs: Costs, cluster: Cluster) -> Prediction:
    """The throughput of ``cluster``'s workers at ``costs``: the least of what the workers can do
    at r1 each (the busiest one's share of the partitions sets the pace), what their cores can do
    at s a record, and what the brokers' cores can do at b (one machine: what its cores can do at
    s + b)."""
    busy = working(cluster.workers, cluster.partitions)
    bounds = {PARTITIONS if cluster.workers > cluster.partitions else WORKERS: busy * costs.one_worker_per_s}
    if cluster.shared_cores is not None:
        bounds[SHARED_CORES] = _per_s(cluster.shared_cores, costs.stage_cpu_us + costs.broker_cpu_us)
    else:
        bounds[WORKER_CORES] = busy * _per_s(cluster.worker_cores, costs.stage_cpu_us)
        # A partition's records are its leader's work (RF 1): the busiest broker sets the pace.
        leaders = working(cluster.brokers, cluster.partitions)
        bounds[BROKER_CORES] = leaders * _per_s(cluster.broker_cores, costs.broker_cpu_us)
    bound = min(bounds, key=bounds.__getitem__)
    return Prediction(records_per_s=bounds[bound], bound=bound, bounds=bounds)


def working(members: int, partitions: int) -> float:
    """How many of ``members`` (workers, or brokers leading partitions) do work at full pace: the
    busiest holds ceil(P/members) of the P partitions and the others keep up with it, so they do
    the work of P / ceil(P/members) (all of them when they divide P; never more than P)."""
    return partitions / math.ceil(partitions / members)


def _per_s(cores: float, cpu_us: float) -> float:
    """Records a second that ``cores`` cores do at ``cpu_us`` of CPU a record."""
    return cores * 1e6 / cpu_us if cpu_us else math.inf


class MissingFigures(ValueError):
    """bench.json lacks a figure the model needs."""


def costs_at_one_worker(scaling: dict, stage: str) -> Costs:
    """``stage``'s costs from bench.json's ``scaling`` part: its medians at one worker."""
    return Costs(
        stage_cpu_us=median(scaling, stage, 1, "cpu_us_per_record"),
        broker_cpu_us=median(scaling, stage, 1, "broker_cpu_us_per_record"),
        one_worker_per_s=median(scaling, stage, 1, "records_per_s"),
    )


def median(scaling: dict, stage: str, workers: int, key: str) -> float:
    """The median of figure ``key`` of ``stage`` at ``workers`` in bench.json's ``scaling`` part."""
    try:
        return scaling[stage][str(workers)][key]["median"]
    except (KeyError, TypeError):
        raise MissingFigures(
            f"its scaling part has no {key} for {stage} at {workers} worker(s) (a bench from before the "
            "CPU figures were measured?): run make bench, or python -m scripts.bench --scaling-only"
        ) from None


def machine(scaling: dict) -> tuple[int, int]:
    """The cores the bench's broker and workers shared, and the partitions they split, from
    bench.json's ``scaling`` part."""
    try:
        return scaling["cores"], scaling["partitions"]
    except KeyError as missing:
        raise MissingFigures(f"its scaling part has no {missing}: run make bench again") from None


def versus_measured(scaling: dict) -> str:
    """The model against what the bench measured at 1, 2 and 3 workers on its machine (its cores
    shared by the broker and the workers), from bench.json's ``scaling`` part."""
    costs = {stage: costs_at_one_worker(scaling, stage) for stage in STAGES}
    cores, partitions = machine(scaling)
    lines = [
        f"model vs measured: the broker and the workers on {cores} shared cores, {partitions} partitions, "
        "the model from one worker's medians",
        f"{'workers':<10}{'stage':<10}{'model/s':>11}  {'bound':<14}{'measured/s':>11}{'measured/model':>16}",
    ]
    for stage, cost in costs.items():
        for workers in MACHINE_WORKERS:
            model = predict(cost, Cluster(workers=workers, partitions=partitions, shared_cores=cores))
            measured = median(scaling, stage, workers, "records_per_s")
            lines.append(
                f"{workers:<10}{stage:<10}{model.records_per_s:>11,.0f}  {model.bound:<14}{measured:>11,.0f}"
                f"{measured / model.records_per_s:>16.2f}"
            )
    lines += [
        f"{stage} at one worker: s {cost.stage_cpu_us:.2f} us and b {cost.broker_cpu_us:.2f} us of CPU a "
        f"record, r1 {cost.one_worker_per_s:,.0f} records/s" for stage, cost in costs.items()
    ]
    return "\n".join(lines)


def default_bench() -> Path:
    """Where make bench writes bench.json: PIPELINE_OUTPUT_DIR, else output/ in the project (as
    include.pipeline.settings.output_dir, not imported: this runs without the pipeline)."""
    project = Path(__file__).resolve().parents[2]
    return Path(os.environ.get("PIPELINE_OUTPUT_DIR", project / "output")) / "bench.json"


def arguments(argv: list[str] | None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(
        prog="python -m scripts.bench.model",
        description="A stage's throughput against workers, cores and brokers, from bench.json's CPU figures.",
    )
    parser.add_argument("--bench", type=Path, default=default_bench(), help="default: %(default)s")
    parser.add_argument(
        "--workers", type=int,
        help="each stage's workers (without: the model against the bench's own 1, 2 and 3 workers)",
    )
    parser.add_argument("--brokers", type=int, default=1, help="brokers (default 1)")
    parser.add_argument("--broker-cores", type=float, help="cores of each broker's host")
    parser.add_argument("--worker-cores", type=float, help="cores each worker has to itself")
    parser.add_argument(
        "--shared-cores", type=float,
        help="one machine's cores, shared by the brokers and the workers (default, without --broker-cores "
             "and --worker-cores: the bench machine's)",
    )
    parser.add_argument("--partitions", type=int, help="partitions of each topic (default: the bench's)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Print the prediction for process and analyze on the cluster asked, or the model against the
    bench's measured workers; a missing file or figure stops it with a message, not a traceback."""
    args = arguments(argv)
    try:
        bench = json.loads(args.bench.read_text())
    except OSError as error:
        sys.exit(f"model: cannot read {args.bench} ({error.strerror}): make bench writes it")
    except json.JSONDecodeError as error:
        sys.exit(f"model: {args.bench} is not JSON: {error}")
    scaling = bench.get("scaling") if isinstance(bench, dict) else None
    try:
        if scaling is None:
            raise MissingFigures("no scaling part: run make bench, or python -m scripts.bench --scaling-only")
        if args.workers is None:
            print(versus_measured(scaling))
            return 0
        costs = {stage: costs_at_one_worker(scaling, stage) for stage in STAGES}
        cores, partitions = machine(scaling)
        shared = args.shared_cores
        if shared is None and args.broker_cores is None and args.worker_cores is None:
            shared = cores  # one machine, as the bench's
        cluster = Cluster(
            workers=args.workers, partitions=partitions if args.partitions is None else args.partitions,
            brokers=args.brokers, broker_cores=args.broker_cores, worker_cores=args.worker_cores,
            shared_cores=shared,
        )
        print(render(cluster, costs))
    except MissingFigures as missing:
        sys.exit(f"model: {args.bench}: {missing}")
    except ValueError as error:
        sys.exit(f"model: {error}")
    return 0


def render(cluster: Cluster, costs: dict[str, Costs]) -> str:
    """Each stage's prediction on ``cluster``: its inputs, the throughput, the bound that binds,
    then every bound."""
    if cluster.shared_cores is not None:
        shape = f"the brokers and the workers on {cluster.shared_cores:g} shared cores"
    else:
        shape = (f"{cluster.brokers} broker(s) of {cluster.broker_cores:g} cores, "
                 f"each worker on {cluster.worker_cores:g} cores of its own")
    w, p = cluster.workers, cluster.partitions
    lines = [
        f"{w} worker(s) a stage over {p} partitions, the busiest holding {math.ceil(p / w)}: "
        f"the work of {working(w, p):g} at one worker's pace",
        shape,
        f"{'stage':<10}{'s us':>8}{'b us':>8}{'r1/s':>11}{'predicted/s':>13}  {'bound':<14}"
        "bounds (records/s)",
    ]
    for stage, cost in costs.items():
        model = predict(cost, cluster)
        bounds = ", ".join(f"{name} {value:,.0f}" for name, value in model.bounds.items())
        lines.append(
            f"{stage:<10}{cost.stage_cpu_us:>8.2f}{cost.broker_cpu_us:>8.2f}{cost.one_worker_per_s:>11,.0f}"
            f"{model.records_per_s:>13,.0f}  {model.bound:<14}{bounds}"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
