"""Kafka not answering (a broker restarting: waited through, said once) or refusing (settings
that cannot work: said at once, naming what to fix)."""

from __future__ import annotations

import logging
import math
import threading
import time

from confluent_kafka import KafkaError, KafkaException

log = logging.getLogger(__name__)

# How long a stage waits for Kafka to answer again (a broker restarting) before it fails: its
# transaction stays open meanwhile, and the broker aborts one open longer than librdkafka's
# transaction.timeout.ms (60 s), so longer would not help.
OUTAGE_SECONDS = 60.0
# A transaction call still waiting this long means Kafka does not answer (said at once).
OUTAGE_NOTICE_SECONDS = 5.0


class Misconfigured(ValueError):
    """The client's settings cannot work (credentials, TLS trust, ACLs): no retry fixes them."""


# Errors that say the cluster is not answering (yet), as opposed to refusing.
UNREACHABLE = frozenset(
    {KafkaError._ALL_BROKERS_DOWN, KafkaError._TRANSPORT, KafkaError._RESOLVE, KafkaError._TIMED_OUT}
)
# Retriable in Kafka's protocol, though librdkafka does not mark them so on every call (a
# consumer's watermark query): a coordinator moving, a partition's leader moving or not yet
# elected (a topic just created, or deleted and created again).
MOVING = frozenset(
    {KafkaError.NOT_COORDINATOR, KafkaError.NOT_LEADER_FOR_PARTITION, KafkaError.LEADER_NOT_AVAILABLE}
)


class Outage:
    """One log line when Kafka stops answering and one when it answers again, instead of one per
    failed connect or retried call; a stage waits through an outage of up to OUTAGE_SECONDS.

    The errors a client queued while it was down arrive when it is next polled, after Kafka has
    answered again: for SETTLE_SECONDS after an outage ends, they are not a new one. Likewise, a
    call that succeeds within BRIEFEST_SECONDS of the first refusal was served by what the client
    had buffered (records fetched before, a queued callback), not by Kafka answering again.
    """

    SETTLE_SECONDS = 10.0
    BRIEFEST_SECONDS = 2.0

    def __init__(self) -> None:
        self.since: float | None = None
        self.ended_at = -math.inf
        self.past = 0.0  # seconds of the outages that have ended
        self.lock = threading.Lock()  # began() also comes from a transaction call's thread (Transactions)

    def began(self, reason: str, servers: str = "") -> None:
        """Says that Kafka does not answer, unless an outage is already on or has just ended."""
        with self.lock:
            now = time.monotonic()
            if self.since is not None or now - self.ended_at < self.SETTLE_SECONDS:
                return
            self.since = now
        log.warning(
            "Kafka%s does not answer (%s): waiting for it, up to %.0fs within a transaction",
            f" at {servers}" if servers else "", reason, OUTAGE_SECONDS,
        )

    def ended(self) -> None:
        """Says that Kafka answers again, if an outage was on."""
        with self.lock:
            if self.since is None:
                return
            now = time.monotonic()
            if now - self.since < self.BRIEFEST_SECONDS:
                return
            since, self.since, self.ended_at = self.since, None, now
            self.past += now - since
        log.warning("Kafka answers again, after %.0fs: going on", self.ended_at - since)


    def seconds(self) -> float:
        """Seconds Kafka has not answered in this process, the outage going on included (the
        metric ``kafka_pipeline_kafka_unavailable_seconds_total`` reads it when collected)."""
        with self.lock:
            return self.past + (0.0 if self.since is None else time.monotonic() - self.since)


OUTAGE = Outage()  # per process: the clients of a stage share the one cluster


def reason(error: KafkaError) -> str:
    """The reason librdkafka gives, without the broker it names first."""
    # librdkafka's text names the broker, then the reason: "ssl://host:port/id: SSL handshake failed: ..."
    return error.str().split(": ", 1)[-1]


def retrying(call, *args, **kwargs):
    """call(), again while Kafka does not answer or answers with a retriable error (a broker
    restarting, a coordinator still loading on a fresh broker, a leader moving), for up to
    OUTAGE_SECONDS."""
    give_up = time.monotonic() + OUTAGE_SECONDS
    while True:
        try:
            result = call(*args, **kwargs)
        except KafkaException as exc:
            error = exc.args[0]
            transient = error.retriable() or error.code() in UNREACHABLE | MOVING
            if not transient or time.monotonic() > give_up:
                raise
            if error.code() in UNREACHABLE:
                OUTAGE.began(error.str())
            else:
                log.info("retrying after a transient Kafka error: %s", error.str())
            time.sleep(0.5)
            continue
        OUTAGE.ended()
        return result
