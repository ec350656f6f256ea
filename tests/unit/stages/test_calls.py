import inspect

import msgspec

from include.pipeline import topology
from include.pipeline.run.params import CATALOGUE
from include.pipeline.run.results import RunResults
from include.pipeline.stages.calls import CALLS


def test_each_stage_of_the_topology_has_one_call_taking_params_of_the_catalogue():
    assert sorted(CALLS) == sorted(topology.STAGES)
    for call in CALLS.values():
        assert set(call.names()) <= set(CATALOGUE), call.name
        taken = inspect.signature(call.run).parameters
        assert set(call.names()) <= set(taken), call.name  # passed by name: each is an argument


def test_a_call_takes_its_bounded_params_only_when_bounded():
    generate = CALLS["generate"]
    values = {name: param.default for name, param in CATALOGUE.items()}
    assert generate.kwargs(values) == {"orders": 2000, "seed": None, "rate": 0, "invalid_ratio": 0.05}
    assert generate.kwargs(values, following=True) == {"rate": 0, "invalid_ratio": 0.05}


def test_the_mapped_calls_are_the_scalable_stages_and_each_result_is_the_runs_field_of_its_name():
    assert [call.name for call in CALLS.values() if call.mapped] == topology.names(topology.SCALABLE)
    fields = {field.name: field.type for field in msgspec.structs.fields(RunResults)}
    for name, call in CALLS.items():
        assert name not in fields or fields[name] == call.result | None, name
        assert inspect.signature(call.run).return_annotation in (call.result, call.result.__name__)
