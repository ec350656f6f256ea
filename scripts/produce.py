"""make produce: write realistic orders to the `orders` topic as an outside producer would
(plain idempotent producer, no transaction, no Airflow), event times over the last hour.
Creates the pipeline's topics first if they are missing. With kafka_pipeline_on_orders unpaused,
enough of them start a run.

  .venv/bin/python scripts/produce.py --orders 10000 [--invalid-ratio 0.05] [--seed 7]
"""

from __future__ import annotations

import argparse
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from include.pipeline import settings, stages  # noqa: E402
from include.pipeline.domain import generator
from include.pipeline.kafka_io.client import TIMEOUT, Kafka  # noqa: E402
from include.pipeline.kafka_io.writing import produce_all  # noqa: E402
from include.pipeline.stages.progress import Progress  # noqa: E402


def main() -> int:
    """Create the missing topics, then produce the orders; returns 1 if Kafka is out of reach or
    misconfigured, or if some orders were not delivered."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=10_000, help="how many (default 10000)")
    parser.add_argument(
        "--invalid-ratio", type=float, default=0.05, help="share deliberately invalid (default 0.05)",
    )
    parser.add_argument("--seed", type=int, default=None, help="makes the orders reproducible")
    args = parser.parse_args()
    if args.orders < 0 or not 0 <= args.invalid_ratio <= 1:
        parser.error("--orders must be >= 0 and --invalid-ratio within [0, 1]")
    try:
        kafka = Kafka.from_env()
        stages.create_topics(kafka, ("generate",))
    except (ConnectionError, ValueError) as exc:
        print(exc, file=sys.stderr)
        return 1
    end = datetime.now(timezone.utc)
    producer = kafka.producer()
    progress = Progress(f"produce -> {settings.ORDERS}")
    for chunk in generator.chunks(args.orders, end - timedelta(hours=1), end, args.invalid_ratio, args.seed):
        produce_all(producer, settings.ORDERS, chunk)
        progress.add(len(chunk))
    if producer.flush(TIMEOUT):
        print(f"{len(producer)} orders were not delivered within {TIMEOUT:.0f}s", file=sys.stderr)
        return 1
    print(f"{progress.count} orders produced to {settings.ORDERS} at {kafka.config['bootstrap.servers']}; "
          f"the last at {datetime.now(timezone.utc):%H:%M:%S.%f} UTC "
          f"({time.monotonic() - progress.started:.1f}s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
