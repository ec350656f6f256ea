from include.pipeline.run_params import problems

PARAMS = {"orders": 2000, "grace_seconds": 3600, "dedup_horizon_seconds": 86400, "wait_for_orders_seconds": 0}


def test_known_keys_and_consistent_values_pass():
    assert problems({"orders": 5, "grace_seconds": 60}, PARAMS, {**PARAMS, "orders": 5, "grace_seconds": 60}) == []


def test_an_unknown_key_is_named_with_the_valid_ones():
    # The run's params have the conf merged in, unknown keys included.
    assert problems({"ordrs": 10}, PARAMS, {**PARAMS, "ordrs": 10}) == [
        "unknown param 'ordrs': the valid ones are dedup_horizon_seconds, grace_seconds, orders, wait_for_orders_seconds"
    ]
    assert problems({"a": 1, "b": 2}, ["orders"], {"orders": 1, "a": 1, "b": 2}) == ["unknown params 'a', 'b': the valid ones are orders"]


def test_a_horizon_shorter_than_the_grace_period_is_refused():
    assert problems({}, PARAMS, {**PARAMS, "grace_seconds": 7200, "dedup_horizon_seconds": 60}) == [
        "need 0 <= grace_seconds <= dedup_horizon_seconds, got 7200 and 60: "
        "an order forgotten by the dedup horizon must already be late"
    ]


def test_params_of_other_dags_have_no_horizon_rule():
    assert problems({"start": "x"}, ["start", "end"], {"start": "x", "end": "y"}) == []
