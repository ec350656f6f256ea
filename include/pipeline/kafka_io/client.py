"""``Kafka``: the clients of one cluster, built from one librdkafka config, and failing fast
when that config cannot work."""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer
from confluent_kafka.admin import AdminClient

from include.pipeline import settings
from include.pipeline.kafka_io.errors import OUTAGE, UNREACHABLE, Misconfigured, reason

log = logging.getLogger(__name__)

PRODUCER_TUNING = {
    "enable.idempotence": True,
    "acks": "all",
    "linger.ms": 20,
    "batch.size": 1_000_000,
    "compression.type": "lz4",
    "queue.buffering.max.messages": 1_000_000,
    # The default, pinned: the tail of a batch is placed as it would place it (writing.WrittenEnds).
    "partitioner": "consistent_random",
    # Room for a dead-lettered record at the broker's largest size plus its headers.
    "message.max.bytes": 4 * 1024 * 1024,
}
CONSUMER_TUNING = {
    "enable.auto.commit": False,
    "enable.auto.offset.store": False,
    "auto.offset.reset": "earliest",
    "isolation.level": "read_committed",
    "enable.partition.eof": True,
    "fetch.min.bytes": 100_000,
    "fetch.wait.max.ms": 100,
    # The prefetch queue is bounded by size, not left at its 64 MB default: a stage's memory
    # must not grow with its input, and a few MB ahead already keeps the stage busy.
    "queued.max.messages.kbytes": 1024,
    "fetch.queue.backoff.ms": 5,  # when it is full, fetch again soon (the default waits 1 s)
}
# Continuous mode: a fetch returns as soon as there is a record, and a produced record is sent
# almost at once (the transaction commit would flush it anyway, later).
FOLLOW_CONSUMER = {"fetch.min.bytes": 1}
FOLLOW_PRODUCER = {"linger.ms": 5}
TIMEOUT = 30.0  # seconds for metadata, commits and transaction calls


class Kafka:
    """Clients for one cluster, built from a librdkafka config (the Airflow connection's extra).

    :param config: the librdkafka config; ``bootstrap.servers`` at least.
    :param origin: where it came from, for messages that say what to fix.
    """

    def __init__(self, config: dict, origin: str = "the Kafka config") -> None:
        if not config.get("bootstrap.servers"):
            raise ValueError(f"{origin} needs 'bootstrap.servers'")
        self.config, self.origin = dict(config), origin

    @classmethod
    def from_env(cls) -> Kafka:
        """KAFKA_CLIENT_CONFIG (a JSON librdkafka config file), else KAFKA_BOOTSTRAP_SERVERS."""
        path = os.environ.get("KAFKA_CLIENT_CONFIG")
        if not path:
            return cls({"bootstrap.servers": settings.bootstrap_servers()}, "KAFKA_BOOTSTRAP_SERVERS")
        try:
            config = json.loads(Path(path).read_text())
        except (OSError, ValueError) as exc:
            raise ValueError(
                f"KAFKA_CLIENT_CONFIG={path}: not a readable JSON librdkafka config ({exc})"
            ) from None
        return cls(config, f"KAFKA_CLIENT_CONFIG ({path})")

    def check(self, seconds: float = 10) -> None:
        """Fail fast, naming what to fix: credentials the cluster rejects or a certificate the
        client does not trust (``Misconfigured``, at the first refusal), or no answer at all."""
        refusals: list[KafkaError] = []
        admin = AdminClient({**self._base(quiet=True), "error_cb": refusals.append})
        ends = time.monotonic() + seconds
        while True:
            try:  # in short waits: a refusal comes through error_cb, served by poll()
                admin.list_topics(timeout=0.5)
                return
            except KafkaException as exc:
                last = exc.args[0]
            admin.poll(0)
            for error in refusals:
                if error.code() == KafkaError._AUTHENTICATION:
                    mechanism = self.config.get(
                        "sasl.mechanism", self.config.get("sasl.mechanisms", "GSSAPI")
                    )
                    raise Misconfigured(
                        f"authentication failed for {self.config.get('sasl.username', '(no sasl.username)')} "
                        f"({mechanism}) at {self.config['bootstrap.servers']}: check {self.origin}'s "
                        "sasl.username / sasl.password"
                    )
                if error.code() == KafkaError._SSL:
                    raise Misconfigured(
                        f"TLS with {self.config['bootstrap.servers']} failed: {reason(error)}. "
                        f"Check {self.origin}'s ssl.ca.location (the CA that signed the brokers' "
                        "certificates) and that each certificate names the host it is reached at"
                    )
            if time.monotonic() > ends:
                raise ConnectionError(
                    f"cannot reach Kafka at {self.config['bootstrap.servers']} ({last.str()}): "
                    "start the local broker with `make kafka-up`, "
                    "or point KAFKA_BOOTSTRAP_SERVERS / the kafka_default connection at yours"
                )

    def cluster_id(self) -> str:
        """The cluster's id: offsets kept outside Kafka (the metrics store's) hold on this cluster only."""
        return self.admin().list_topics(timeout=TIMEOUT).cluster_id

    def admin(self, quiet: bool = False) -> AdminClient:
        """An admin client; a ``quiet`` one leaves saying what failed to its caller."""
        return AdminClient(self._base(quiet))

    def producer(self, transactional_id: str | None = None, follow: bool = False) -> Producer:
        """An idempotent producer, transactional given a ``transactional_id``; ``follow`` sends sooner."""
        config = {**self._base(), **PRODUCER_TUNING, **(FOLLOW_PRODUCER if follow else {})}
        if transactional_id:
            config["transactional.id"] = transactional_id
        return Producer(config)

    def consumer(self, group_id: str, quiet: bool = False, follow: bool = False) -> Consumer:
        """A read_committed consumer in ``group_id``, committing only when told; ``follow`` fetches sooner."""
        tuning = {**CONSUMER_TUNING, **(FOLLOW_CONSUMER if follow else {})}
        return Consumer({**self._base(quiet), **tuning, "group.id": group_id})

    def _base(self, quiet: bool = False) -> dict:
        # A consumer group in the connection would make every stage share one: each sets its own.
        base = {k: v for k, v in self.config.items() if k != "group.id"}
        # No librdkafka log line for every failed connect (a line every 50 ms while a broker is
        # down): its errors come to error_cb, and a quiet client's caller says what failed once.
        base["log_level"] = 2
        if not quiet:
            base["error_cb"] = self._on_error
        return base

    def _on_error(self, error: KafkaError) -> None:
        if error.code() in UNREACHABLE:
            OUTAGE.began(error.str(), self.config["bootstrap.servers"])
        else:
            log.warning("Kafka client error: %s", error.str())
