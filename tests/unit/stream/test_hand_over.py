import io
import threading

from include.pipeline.stream.supervisor import to_finish
from include.pipeline.stream.worker import FINISH, listen

STAGES = ["generate", "process", "analyze", "sink"]


def test_no_stage_is_told_to_finish_before_the_generator_has_ended():
    assert to_finish(STAGES, set()) is None


def test_each_stage_is_told_once_every_stage_before_it_has_ended():
    assert to_finish(STAGES, {"generate"}) == "process"
    assert to_finish(STAGES, {"generate", "process"}) == "analyze"
    assert to_finish(STAGES, {"generate", "process", "analyze"}) == "sink"
    assert to_finish(STAGES, set(STAGES)) is None


def test_a_stage_whose_upstream_has_not_ended_waits_whatever_ended_after_it():
    assert to_finish(STAGES, {"generate", "analyze", "sink"}) == "process"
    assert to_finish(STAGES, {"process", "analyze"}) is None  # the generator goes on


def test_without_a_generator_the_first_stage_is_told_at_once():
    assert to_finish(STAGES[1:], set()) == "process"


def test_a_worker_is_told_by_the_finish_line_only():
    told = threading.Event()
    listen(io.BytesIO(b"finis\nfinish now\n"), told)
    assert not told.is_set()
    listen(io.BytesIO(b"hello\n" + FINISH), told)
    assert told.is_set()
