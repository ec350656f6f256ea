"""A DAG's tasks as the DAG tests look at them: an argument of a task's operator (``arg``) and
whether a task runs a stage (``is_stage``), mapped or not."""

import inspect

from kafka_stages.operators import KafkaStageOperator


def arg(task, name: str):
    """An argument of a task's operator, mapped or not (None: it has no such argument)."""
    if not task.is_mapped:
        return getattr(task, name, None)
    if name in task.partial_kwargs:
        return task.partial_kwargs[name]
    return inspect.signature(task.operator_class.__init__).parameters[name].default


def is_stage(task, kind: type = KafkaStageOperator) -> bool:
    """Whether the task runs a stage (a ``kind`` of KafkaStageOperator), mapped or not."""
    return issubclass(task.operator_class if task.is_mapped else type(task), kind)
