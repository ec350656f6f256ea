from __future__ import annotations

from airflow.providers.apache.kafka.hooks.base import KafkaBaseHook

from include.pipeline.kafka_io import Kafka


class PipelineKafkaHook(KafkaBaseHook):
    """The provider's connection handling (extra JSON as the librdkafka config, allow-listed
    callbacks, managed-auth tokens), handed to the stages as a config rather than one client:
    a stage needs consumers and transactional producers with settings of its own."""

    def get_kafka(self) -> Kafka:
        # _build_config is the provider's single place for resolving a connection (2.1.0, pinned).
        return Kafka(self._build_config())
