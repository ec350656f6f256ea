"""A trigger that watches consumer lag: it observes offsets, it consumes and commits nothing.

In plugins/ because the triggerer imports trigger code from its own path, which has the plugins
folder but not the DAGs folder.
"""
from __future__ import annotations

import asyncio
import json
import math
import time
from typing import Any, AsyncIterator

import msgspec
from airflow.triggers.base import BaseEventTrigger, TriggerEvent
from asgiref.sync import sync_to_async
from confluent_kafka import KafkaException

from include.pipeline.kafka_io.lag import GAVE_UP, Backlog, LagReport, Memory, positions
from include.pipeline.kafka_io.lag_probe import LagProbe
from kafka_stages.hooks import PipelineKafkaHook

MAX_BACKOFF_SECONDS = 30.0
LOOK_TIMEOUT = 10.0  # seconds one look at the offsets may take


class ConsumerLagTrigger(BaseEventTrigger):
    """Fires when consumer groups fall behind on their topics: when the lag (last stable offset
    minus the group's committed offset, over every partition of every watched topic) reaches
    ``min_records``, or when it has been above zero for ``max_wait_seconds``.

    Records it has fired for are not fired for again while the group works through them, so a
    watcher that keeps running after each event (an AssetWatcher) makes one event per backlog.
    A watcher keeps that memory in its asset's state store, so it survives a triggerer restart;
    it saves it before each event, so a crash between the two loses that one event (its records
    wait for the next one, or the hourly run) but never starts a second run for a backlog.
    The client calls run in a thread, off the event loop. A broker that does not answer is
    retried with exponential backoff (up to 30 s), logged once when it goes and once when it
    comes back; the trigger itself does not fail for it. A look whose offsets differ from the last
    one's is logged at DEBUG: ``[logging] namespace_levels = kafka_stages.triggers=DEBUG``, and
    ``airflow.jobs.triggerer_job_runner=DEBUG`` too for a watcher, whose lines the triggerer logs.

    :param groups: topic -> the consumer group whose lag on it counts.
    :param min_records: lag that fires at once (at least 1).
    :param max_wait_seconds: fire with any lag above zero once it has been there this long;
        None waits for ``min_records``.
    :param give_up_after_seconds: fire a ``gave_up`` event with no records when nothing fired
        within this time (for a sensor that must end); None watches forever.
    :param poll_interval: seconds between two looks at the offsets.
    :param kafka_config_id: the Airflow connection of the cluster.
    """

    def __init__(
        self,
        groups: dict[str, str],
        min_records: int = 1,
        max_wait_seconds: float | None = None,
        give_up_after_seconds: float | None = None,
        poll_interval: float = 2.0,
        kafka_config_id: str = "kafka_default",
    ) -> None:
        super().__init__()
        self.groups = dict(groups)
        self.min_records, self.max_wait_seconds = int(min_records), max_wait_seconds
        self.give_up_after_seconds, self.poll_interval = give_up_after_seconds, float(poll_interval)
        self.kafka_config_id = kafka_config_id
        Backlog(self.min_records, max_wait_seconds)  # fail at definition time on a bad threshold

    def serialize(self) -> tuple[str, dict[str, Any]]:
        """The trigger's class path and arguments, for the triggerer to make it again."""
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "groups": self.groups, "min_records": self.min_records,
                "max_wait_seconds": self.max_wait_seconds,
                "give_up_after_seconds": self.give_up_after_seconds, "poll_interval": self.poll_interval,
                "kafka_config_id": self.kafka_config_id,
            },
        )

    def _memory_key(self) -> str:
        # Named after the groups: a watcher changed to another group does not take this memory over.
        return f"signalled {json.dumps(self.groups, sort_keys=True)}"

    def _say_what_it_watches(self) -> None:
        watched = ", ".join(f"{topic} (group {group})" for topic, group in self.groups.items())
        self.log.info(
            "watching the lag of %s: firing at %d records%s", watched, self.min_records,
            "" if self.max_wait_seconds is None else f", or at any after {self.max_wait_seconds:g}s",
        )

    def _say_what_it_saw(self, seen: dict[str, tuple[int, int]]) -> None:
        self.log.debug("looked: %s", "; ".join(
            f"{topic} ends at {end}, its group {self.groups[topic]} at {position} ({end - position} behind)"
            for topic, (end, position) in seen.items()
        ) or "no watched topic has partitions yet")

    def _remember(self, backlog: Backlog, saved: Any) -> None:
        """Restore what the watcher fired for before the triggerer restarted (None: nothing)."""
        if saved is None:
            return
        try:
            backlog.restore(Memory.from_payload(saved))
        except msgspec.ValidationError as exc:
            self.log.warning("forgetting the unreadable memory %r from before a restart: %s", saved, exc)
        if signalled := backlog.memory().signalled:
            self.log.info("remembering what it fired for before a restart: %s", "; ".join(
                f"{topic} up to offsets {offsets}" for topic, offsets in signalled.items()
            ))

    async def run(self) -> AsyncIterator[TriggerEvent]:
        """An event per backlog worth firing for; a last ``gave_up`` event once its time is up."""
        kafka = await sync_to_async(PipelineKafkaHook(self.kafka_config_id).get_kafka)()
        self._say_what_it_watches()
        backlog = Backlog(self.min_records, self.max_wait_seconds)
        store, key = self.asset_state_store, self._memory_key()  # no store under a sensor
        if store is not None:
            self._remember(backlog, await store.aget(key))
        with LagProbe(kafka, self.groups, quiet=True) as probe:
            async for event in self._watch(kafka, probe, backlog):
                yield event

    async def _watch(self, kafka, probe: LagProbe, backlog: Backlog) -> AsyncIterator[TriggerEvent]:
        """The looks of ``probe``, and an event per backlog worth firing for; in flight when the
        watch is cancelled, a look is waited for before the probe closes."""
        store, key = self.asset_state_store, self._memory_key()
        failures, look, seen = 0, None, None
        patience = math.inf if self.give_up_after_seconds is None else self.give_up_after_seconds
        gives_up_at = time.monotonic() + patience
        try:
            while True:
                delay = self.poll_interval
                look = asyncio.ensure_future(asyncio.to_thread(probe.offsets, LOOK_TIMEOUT))
                try:
                    offsets = await asyncio.shield(look)
                except KafkaException as exc:
                    failures += 1
                    if failures == 1:
                        self.log.warning(
                            "cannot read the offsets from Kafka at %s (%s); trying again with backoff",
                            kafka.config["bootstrap.servers"], exc.args[0].str(),
                        )
                    delay = min(self.poll_interval * 2 ** failures, MAX_BACKOFF_SECONDS)
                else:
                    if failures:
                        self.log.info("Kafka answers again (after %d failed looks)", failures)
                        failures = 0
                    if (saw := positions(*offsets)) != seen:
                        seen = saw
                        self._say_what_it_saw(seen)
                    if report := backlog.observe(time.monotonic(), *offsets):
                        if store is not None:
                            # Saved before the event: a crash in between loses this event, but a
                            # restarted watcher never fires twice for one backlog (two runs).
                            await store.aset(key, backlog.memory().to_payload())
                        self.log.info(
                            "firing: %d records of lag (%s): %s", report.records, report.reason, report.topics
                        )
                        yield TriggerEvent(report.to_payload())
                if time.monotonic() >= gives_up_at:
                    yield TriggerEvent(LagReport(0, {}, GAVE_UP).to_payload())
                    return
                await asyncio.sleep(delay)
        finally:
            if look is not None and not look.done():
                await asyncio.wait([look])  # cancelled mid-look: the clients are busy in their thread
