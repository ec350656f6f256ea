import msgspec

from include.pipeline.run.params import CATALOGUE, overridden, problems

PARAMS = {"orders": 2000, "grace_seconds": 3600, "dedup_horizon_seconds": 86400, "wait_for_orders_seconds": 0}


def test_known_keys_and_consistent_values_pass():
    assert problems(
        {"orders": 5, "grace_seconds": 60}, PARAMS, {**PARAMS, "orders": 5, "grace_seconds": 60}
    ) == []


def test_an_unknown_key_is_named_with_the_valid_ones():
    # The run's params have the conf merged in, unknown keys included.
    assert problems({"ordrs": 10}, PARAMS, {**PARAMS, "ordrs": 10}) == [
        "unknown param 'ordrs': the valid ones are dedup_horizon_seconds, grace_seconds, orders, "
        "wait_for_orders_seconds"
    ]
    assert problems({"a": 1, "b": 2}, ["orders"], {"orders": 1, "a": 1, "b": 2}) == [
        "unknown params 'a', 'b': the valid ones are orders"
    ]


def test_a_horizon_shorter_than_the_grace_period_is_refused():
    assert problems({}, PARAMS, {**PARAMS, "grace_seconds": 7200, "dedup_horizon_seconds": 60}) == [
        "need 0 <= grace_seconds and grace_seconds + 60 <= dedup_horizon_seconds, got 7200 and 60: an order "
        "forgotten by the dedup horizon must already be late (its window has ended, plus the grace period)"
    ]


def test_params_of_other_dags_have_no_horizon_rule():
    assert problems({"start": "x"}, ["start", "end"], {"start": "x", "end": "y"}) == []


RUN = "manual__2026-01-05T09:00:00+00:00"
NOTICE_END = " (a run's conf wins over -t; pick a date without a run to use -t)"


def test_a_t_param_the_conf_overrode_is_named_with_both_values():
    used = {**PARAMS, "orders": 0}
    assert overridden({"orders": 5}, used, {"orders": 0}, RUN) == (
        f"-t params overridden by the conf of run {RUN}: orders=0 used, not 5" + NOTICE_END
    )


def test_each_overridden_param_is_named_in_one_line_in_the_order_given():
    given = {"seed": 7, "orders": 500, "rate": 10}
    used = {"orders": 0, "seed": None, "rate": 10}
    line = overridden(given, used, {"orders": 0, "seed": None}, RUN)
    assert line == (
        f"-t params overridden by the conf of run {RUN}: seed=null used, not 7; orders=0 used, not 500"
        + NOTICE_END
    )
    assert "\n" not in line


def test_no_notice_without_an_override():
    assert overridden({}, PARAMS, {"orders": 0}, RUN) is None  # no -t
    assert overridden({"orders": 5}, {**PARAMS, "orders": 5}, {}, RUN) is None  # a run without conf
    assert overridden({"orders": 5}, {**PARAMS, "orders": 5}, {"seed": 1}, RUN) is None  # conf of others
    assert overridden({"orders": 5}, {**PARAMS, "orders": 5}, {"orders": 5}, RUN) is None  # the conf agrees
    # dag_run_conf_overrides_params off: the -t value is the one used, whatever the conf says.
    assert overridden({"orders": 5}, {**PARAMS, "orders": 5}, {"orders": 0}, RUN) is None


def test_values_are_shown_as_the_json_they_were_given_in():
    line = overridden({"invalid_ratio": 0.5, "label": "a b"}, {"invalid_ratio": 0.05, "label": "c"},
                      {"invalid_ratio": 0.05, "label": "c"}, RUN)
    assert ': invalid_ratio=0.05 used, not 0.5; label="c" used, not "a b" (' in line


def test_a_param_names_what_is_wrong_with_a_value_by_its_bounds():
    rate, ratio = CATALOGUE["rate"], CATALOGUE["invalid_ratio"]
    assert rate.problem(-1) == "rate must be 0 or more, got -1"
    assert ratio.problem(1.5, "--invalid-ratio") == "--invalid-ratio must be 1 or less, got 1.5"
    assert [ratio.problem(value) for value in (0, 0.05, 1)] == [None, None, None]
    stream_rate = msgspec.structs.replace(rate, minimum=None, exclusiveMinimum=0)
    assert stream_rate.problem(0) == "rate must be above 0, got 0"


def test_a_params_schema_is_its_type_and_bounds_as_json_schema_has_them():
    assert CATALOGUE["seed"].schema() == {"type": ["null", "integer"]}
    assert CATALOGUE["commit_interval_ms"].schema() == {"type": "integer", "minimum": 1, "maximum": 60000}
    assert CATALOGUE["start"].schema() == {"type": "string", "format": "date-time"}
    assert CATALOGUE["workers"].flag == "--workers" and CATALOGUE["grace_seconds"].flag == "--grace-seconds"
