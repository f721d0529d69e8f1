"""deploy/prometheus/alerts.yml: promtool check and unit tests, annotations, runbooks."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
RULES = ROOT / "deploy" / "prometheus" / "alerts.yml"
RULE_TESTS = ROOT / "deploy" / "prometheus" / "alerts_test.yml"
RUNBOOKS = ROOT / "docs" / "runbooks"
REQUIRED_ALERTS = {
    "GpuwatchRestrictedTrainingSuspected",
    "GpuwatchHighRiskSession",
    "GpuwatchScoringStale",
    "GpuwatchScoringFailing",
    "GpuwatchQuarantineRatioHigh",
    "GpuwatchEnrichmentUnknownHigh",
}
needs_promtool = pytest.mark.skipif(
    shutil.which("promtool") is None, reason="promtool not installed (apt-get install prometheus)"
)


def alerting_rules() -> list[dict]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"] if "alert" in rule]


def promtool(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["promtool", *args], capture_output=True, text=True, check=False)


@needs_promtool
def test_promtool_check_rules():
    done = promtool("check", "rules", str(RULES))
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"SUCCESS: {len(alerting_rules())} rules found" in done.stdout


@needs_promtool
def test_promtool_test_rules():
    done = promtool("test", "rules", str(RULE_TESTS))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout


@needs_promtool
def test_promtool_test_rules_catches_a_broken_threshold(tmp_path):
    broken = RULES.read_text().replace("/ 3600 >= 8", "/ 3600 >= 80")
    assert broken != RULES.read_text()
    (tmp_path / "alerts.yml").write_text(broken)
    shutil.copy(RULE_TESTS, tmp_path / "alerts_test.yml")
    done = promtool("test", "rules", str(tmp_path / "alerts_test.yml"))
    assert done.returncode != 0
    assert "GpuwatchRestrictedTrainingSuspected" in done.stdout + done.stderr


def test_required_alerts_exist_with_severity():
    rules = alerting_rules()
    assert {rule["alert"] for rule in rules} >= REQUIRED_ALERTS
    assert {rule["labels"]["severity"] for rule in rules} <= {"critical", "warning", "info"}
    by_name = {rule["alert"]: rule for rule in rules}
    assert by_name["GpuwatchRestrictedTrainingSuspected"]["labels"]["severity"] == "critical"
    assert by_name["GpuwatchHighRiskSession"]["labels"]["severity"] == "warning"


@pytest.mark.parametrize("rule", alerting_rules(), ids=lambda rule: rule["alert"])
def test_every_alert_is_annotated_with_an_existing_runbook(rule):
    annotations = rule["annotations"]
    assert annotations["summary"] and annotations["description"]
    page = annotations["runbook_url"].rsplit("/docs/runbooks/", 1)[1]
    assert (RUNBOOKS / page).is_file()
    assert rule["alert"] in (RUNBOOKS / page).read_text()


def test_every_alert_has_firing_and_quiet_test_cases():
    cases = [
        case
        for group in yaml.safe_load(RULE_TESTS.read_text())["tests"]
        for case in group["alert_rule_test"]
    ]
    names = {rule["alert"] for rule in alerting_rules()}
    fires = {case["alertname"] for case in cases if case.get("exp_alerts")}
    quiet = {case["alertname"] for case in cases if not case.get("exp_alerts")}
    assert fires == names
    assert quiet == names
