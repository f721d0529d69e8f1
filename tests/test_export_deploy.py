"""deploy/: the dashboard queries real metrics with valid PromQL; the examples use real flags."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from export_fixtures import run_report, scores_frame

from detector.cli import main
from detector.export import ExportOptions, snapshot_families

DEPLOY = Path(__file__).resolve().parent.parent / "deploy"


def exported_names() -> set[str]:
    names = set()
    for family in snapshot_families(scores_frame(), run_report(), ExportOptions(max_series=1)):
        names |= {sample.name for sample in family.samples}
    return names


def dashboard_exprs() -> list[str]:
    dashboard = json.loads((DEPLOY / "grafana" / "gpuwatch.json").read_text())
    return [target["expr"] for panel in dashboard["panels"] for target in panel.get("targets", [])]


def test_dashboard_uses_only_exported_metrics():
    used = {name for expr in dashboard_exprs() for name in re.findall(r"gpuwatch_\w+", expr)}
    assert used and used <= exported_names()


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool not installed")
def test_dashboard_promql_parses(tmp_path):
    rules = {
        "groups": [
            {
                "name": "dashboard",
                "rules": [
                    {"record": f"dashboard:expr{i}", "expr": expr.replace("$job", ".*")}
                    for i, expr in enumerate(dashboard_exprs())
                ],
            }
        ]
    }
    (tmp_path / "rules.yml").write_text(yaml.safe_dump(rules))
    done = subprocess.run(
        ["promtool", "check", "rules", str(tmp_path / "rules.yml")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def flags(command: str) -> set[str]:
    return {opt for param in main.commands[command].params for opt in param.opts}


def test_cronjob_passes_real_score_flags():
    job = yaml.safe_load((DEPLOY / "kubernetes" / "cronjob.yaml").read_text())
    container = job["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]
    assert container["args"][0] == "score"
    used = {arg.split("=", 1)[0] for arg in container["args"][1:]}
    assert used <= flags("score")


@pytest.mark.parametrize(
    ("unit", "command"),
    [("gpuwatch-score.service", "score"), ("gpuwatch-exporter.service", "serve")],
)
def test_systemd_units_pass_real_flags(unit, command):
    text = (DEPLOY / "systemd" / unit).read_text().replace("\\\n", " ")
    exec_start = next(line for line in text.splitlines() if line.startswith("ExecStart="))
    assert exec_start.split()[1] == command
    assert set(re.findall(r"--[\w-]+", exec_start)) <= flags(command)


def test_alert_rules_use_only_exported_metrics():
    rules = yaml.safe_load((DEPLOY / "prometheus" / "alerts.yml").read_text())
    exprs = [rule["expr"] for group in rules["groups"] for rule in group["rules"]]
    used = {name for expr in exprs for name in re.findall(r"gpuwatch_\w+", expr)}
    assert "gpuwatch_last_run_rows_read" in used and used <= exported_names()


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool not installed")
def test_exposition_passes_promtool_lint():
    from detector.export.source import render

    families = snapshot_families(scores_frame(), run_report(), ExportOptions())
    linted = subprocess.run(
        ["promtool", "check", "metrics"], input=render(lambda: families), capture_output=True
    )
    assert linted.returncode == 0 and not linted.stdout and not linted.stderr, linted
