from __future__ import annotations

from typing import Any, Callable

from airflow.sdk import BaseOperator

from kafka_stages.hooks import PipelineKafkaHook


class KafkaStageOperator(BaseOperator):
    """Runs one stage of ``include.pipeline.stages`` against the cluster of a Kafka connection.

    The stock ProduceToTopicOperator / ConsumeFromTopicOperator (provider 2.1.0) let a failed
    delivery pass and commit asynchronously; the stages use transactions and synchronous
    commits instead, so a lost record fails the task. The stage's counts become the XCom.
    """

    template_fields = ("op_kwargs",)
    ui_color = "#e8f0fe"

    def __init__(
        self,
        *,
        stage: Callable[..., dict],
        op_kwargs: dict[str, Any] | None = None,
        kafka_config_id: str = "kafka_default",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.stage = stage
        self.op_kwargs = op_kwargs or {}
        self.kafka_config_id = kafka_config_id

    def execute(self, context) -> dict:
        kafka = PipelineKafkaHook(self.kafka_config_id).get_kafka()
        return self.stage(kafka, **self.op_kwargs)
