import pytest

from include.pipeline.stream.__main__ import arguments


def test_the_defaults_are_the_stream_dags_but_for_a_rate_that_may_be_0():
    args = arguments([])
    assert (args.rate, args.invalid_ratio, args.commit_interval_ms, args.workers) == (30.0, 0.05, 100, 1)
    assert (args.grace_seconds, args.dedup_horizon_seconds, args.metrics_json_days) == (3600, 86400, 7)
    assert arguments(["--rate", "0"]).rate == 0  # no generator


def test_bad_values_stop_it_at_once_naming_each_flag(capsys):
    with pytest.raises(SystemExit) as stopped:
        arguments(["--rate", "-1", "--invalid-ratio", "2", "--commit-interval-ms", "0", "--workers", "0"])
    assert stopped.value.code == 2
    error = capsys.readouterr().err
    for message in ("--rate must be 0 or more, got -1", "--invalid-ratio must be 1 or less, got 2",
                    "--commit-interval-ms must be 1 or more, got 0", "--workers must be 1 or more, got 0"):
        assert message in error


def test_a_horizon_shorter_than_the_grace_and_a_window_is_refused(capsys):
    with pytest.raises(SystemExit):
        arguments(["--grace-seconds", "600", "--dedup-horizon-seconds", "600"])
    assert "dedup_horizon_seconds" in capsys.readouterr().err


def test_help_lists_every_flag_with_its_description(capsys):
    with pytest.raises(SystemExit) as stopped:
        arguments(["--help"])
    assert stopped.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "--workers WORKERS" in text and "reads the partitions p with p % n == i" in text
