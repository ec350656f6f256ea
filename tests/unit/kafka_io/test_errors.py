"""retrying: which Kafka errors are waited through and which fail at once."""

import pytest
from confluent_kafka import KafkaError, KafkaException

from include.pipeline.kafka_io import errors


def failing(*codes: int):
    """A call that raises ``codes`` (not marked retriable, as librdkafka raises some) in turn, then
    answers "done"."""
    left = list(codes)

    def call():
        if left:
            raise KafkaException(KafkaError(left.pop(0), "refused"))
        return "done"

    return call


@pytest.fixture(autouse=True)
def no_waiting(monkeypatch):
    monkeypatch.setattr(errors.time, "sleep", lambda seconds: None)


@pytest.mark.parametrize("code", [
    KafkaError.NOT_LEADER_FOR_PARTITION, KafkaError.LEADER_NOT_AVAILABLE, KafkaError.NOT_COORDINATOR,
    KafkaError._TRANSPORT,
])
def test_a_leader_or_coordinator_moving_or_kafka_not_answering_is_waited_through(code):
    assert errors.retrying(failing(code, code)) == "done"


@pytest.mark.parametrize("code", [KafkaError.TOPIC_AUTHORIZATION_FAILED, KafkaError.UNKNOWN_TOPIC_OR_PART])
def test_a_refusal_fails_at_once(code):
    with pytest.raises(KafkaException) as raised:
        errors.retrying(failing(code))
    assert raised.value.args[0].code() == code
