"""A sensor that waits for records the consuming stages have not read yet, and reads none itself."""
from __future__ import annotations

from datetime import timedelta
from typing import Any

from airflow.sdk import BaseSensorOperator
from airflow.sdk.exceptions import AirflowSkipException

from include.pipeline.kafka_io import access
from include.pipeline.kafka_io.errors import retrying
from include.pipeline.kafka_io.lag import GAVE_UP, LOOKED, LagReport, lag
from include.pipeline.kafka_io.lag_probe import LagProbe
from kafka_stages.hooks import PipelineKafkaHook
from kafka_stages.operators import log_params_overridden
from kafka_stages.triggers import ConsumerLagTrigger


class ConsumerLagSensor(BaseSensorOperator):
    """Waits for work: records on the given topics that their consumer groups have not committed.

    It looks once and passes at once if there are any (the report is its XCom). Otherwise it
    defers to ``ConsumerLagTrigger`` for up to ``wait_seconds``, and when nothing arrives it skips
    itself, and with it everything downstream, saying why. It consumes and commits nothing.

    The provider's ``AwaitMessageSensor`` is not used: its trigger commits every message it polls
    in its group, which would move the offsets the stages own.

    :param groups: topic -> the consumer group whose lag on it counts.
    :param wait_seconds: how long to wait for records (templated); 0 looks once, without deferring.
    :param poll_interval: seconds between two looks while deferred.
    :param kafka_config_id: the Airflow connection of the cluster.
    """

    template_fields = ("wait_seconds",)
    ui_color = "#e6f4ea"

    def __init__(
        self, *, groups: dict[str, str], wait_seconds: Any = 0, poll_interval: float = 2.0,
        kafka_config_id: str = "kafka_default", **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.groups, self.wait_seconds = dict(groups), wait_seconds
        self.poll_interval, self.kafka_config_id = poll_interval, kafka_config_id

    def pre_execute(self, context) -> None:
        """Says which ``airflow tasks test -t`` params the run's conf overrode."""
        log_params_overridden(self, context)

    def execute(self, context) -> dict:
        """The lag report when records are there; else it defers for up to ``wait_seconds``, or skips."""
        report = self._look()
        if report.records:
            self.log.info("%d records to work on: %s", report.records, report.topics)
            return report.to_payload()
        wait = float(self.wait_seconds)
        if wait <= 0:
            self._skip(wait)
        self.log.info("nothing new yet; waiting up to %.0fs (deferred to the triggerer)", wait)
        self.defer(
            trigger=ConsumerLagTrigger(
                self.groups, give_up_after_seconds=wait, poll_interval=self.poll_interval,
                kafka_config_id=self.kafka_config_id,
            ),
            method_name="execute_complete",
            timeout=timedelta(seconds=wait + 300),  # only if the triggerer itself is stuck
        )

    def execute_complete(self, context, event: dict) -> dict:
        """The trigger's report once records came; it skips when the trigger gave up waiting."""
        report = LagReport.from_payload(event)
        if report.reason == GAVE_UP:
            self._skip(float(self.wait_seconds))
        self.log.info("%d records to work on: %s", report.records, report.topics)
        return event

    def _look(self) -> LagReport:
        kafka = PipelineKafkaHook(self.kafka_config_id).get_kafka()
        access.ready(kafka)
        with LagProbe(kafka, self.groups) as probe:
            per_topic = lag(*retrying(probe.offsets))
        return LagReport(sum(per_topic.values()), per_topic, LOOKED)

    def _skip(self, waited: float) -> None:
        watched = ", ".join(f"{topic} (group {group})" for topic, group in self.groups.items())
        later = self.get_flat_relative_ids(upstream=False)
        downstream = (
            ", ".join(t.task_id for t in self.dag.topological_sort() if t.task_id in later) or "nothing"
        )
        message = (
            f"nothing to do: no records on {watched} past what the groups have committed, "
            f"after waiting {waited:.0f}s; skipping {downstream}"
        )
        self.log.info(message)
        raise AirflowSkipException(message)
