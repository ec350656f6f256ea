"""The alert rules are valid and behave as rules_test.yml says: `promtool check rules` and
`promtool test rules`, each case an alert firing or not at its edges (scripts/prometheus/).

promtool is Debian's `prometheus` package, which `.ci/run` installs; without it here the tests
skip, saying so.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

HERE = Path(__file__).resolve().parents[2] / "scripts" / "prometheus"
PROMTOOL = shutil.which("promtool")
# The contract's alert names (/work/shared/obs/contract.md, issue 34), in rules.yml's order.
ALERTS = [
    "KafkaPipelineLagGrowing", "KafkaPipelineReconcileFailed", "KafkaPipelineStalled",
    "KafkaPipelineDeadLetterShareHigh", "KafkaPipelineLatencyP99High", "KafkaPipelineStageDown",
    "KafkaPipelineKafkaUnavailable",
]

needs_promtool = pytest.mark.skipif(
    PROMTOOL is None, reason="promtool not found: `apt-get install prometheus` (.ci/run installs it)"
)


def _rules() -> list[dict]:
    groups = yaml.safe_load((HERE / "rules.yml").read_text())["groups"]
    return [rule for group in groups for rule in group["rules"]]


def _promtool(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([PROMTOOL, *args], cwd=HERE, capture_output=True, text=True, timeout=120)


def test_the_rules_are_the_contracts_alerts_each_with_for_severity_and_what_to_look_at():
    rules = _rules()
    assert [rule["alert"] for rule in rules] == ALERTS
    for rule in rules:
        assert rule["for"] and rule["labels"]["severity"] in {"warning", "critical"}, rule["alert"]
        assert set(rule["annotations"]) == {"summary", "description"}, rule["alert"]
        assert "Look at" in rule["annotations"]["description"], rule["alert"]


def test_each_alert_has_a_case_that_fires_and_one_that_does_not():
    tests = yaml.safe_load((HERE / "rules_test.yml").read_text())["tests"]
    checks = [check for test in tests for check in test["alert_rule_test"]]
    assert {check["alertname"] for check in checks if check["exp_alerts"]} == set(ALERTS)
    assert {check["alertname"] for check in checks if not check["exp_alerts"]} == set(ALERTS)


@needs_promtool
def test_promtool_checks_the_rules():
    result = _promtool("check", "rules", "rules.yml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(ALERTS)} rules found" in result.stdout


@needs_promtool
def test_promtool_unit_tests_of_the_rules_pass():
    result = _promtool("test", "rules", "rules_test.yml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.split() == ["Unit", "Testing:", "rules_test.yml", "SUCCESS"]
