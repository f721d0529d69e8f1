"""The HTML report: evidence from any scores table, and the page rendered in headless Chromium."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import chromium
import pandas as pd
import pytest
from click.testing import CliRunner
from export_fixtures import scores_frame
from factories import SAMPLE_INPUTS

from detector.cli import main
from detector.config import load_settings
from detector.errors import SchemaError
from detector.report import render, select_cases

INPUTS = SAMPLE_INPUTS
NOW = pd.Timestamp("2024-06-10T12:00:00Z")
TOP = 6


def run(*args: str, code: int = 0) -> str:
    result = CliRunner().invoke(main, list(args))
    assert result.exit_code == code, result.output + repr(result.exception)
    return result.output


def page(scores: pd.DataFrame, **kwargs) -> str:
    return render(scores, load_settings(None), generated_at=NOW, **kwargs)


def test_cases_are_alerts_first_then_highest_risk():
    scores = scores_frame().assign(risk_score=[95.0, 99.0, 75.0, 35.0])
    assert select_cases(scores, 3)["session_id"].tolist() == ["s1", "s3", "s2"]


def test_a_suppressed_case_says_which_rule_silenced_it():
    scores = scores_frame().assign(
        alert=[False, False, True, False],
        suppressed_by=["below-80", None, None, None],
        suppression_reason=["known benchmark tenants", None, None, None],
    )
    assert "Suppressed by rule <b>below-80</b>: known benchmark tenants." in page(scores)


def test_minimal_scores_degrade_cleanly():
    scores = scores_frame()[
        ["session_id", "tenant_id", "start", "end", "risk_score", "severity", "alert"]
    ]
    html = page(scores)
    assert "Give <code>--telemetry</code> to see this plot." in html
    assert "neither GPU-hours nor estimated FLOP" in html
    assert html.count('id="plot-') == 2  # risk distribution and alerts by severity


def test_missing_required_column_is_a_schema_error():
    with pytest.raises(SchemaError, match="'severity'"):
        page(scores_frame().drop(columns="severity"))


def test_text_from_the_data_is_escaped_and_the_page_is_deterministic():
    scores = scores_frame().assign(tenant_id=["<script>alert(1)</script>", "a", "b", "c"])
    html = page(scores)
    assert "<script>alert(1)</script>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert page(scores) == html


def test_the_page_fetches_nothing():
    html = page(scores_frame())
    assert not re.search(r"<script[^>]+src=|<link[^>]+href=|<img", html)


@pytest.fixture(scope="module")
def scored(tmp_path_factory) -> dict[str, Path]:
    """The samples trained and scored once, with a rule suppressing alerts below risk 80."""
    tmp = tmp_path_factory.mktemp("report")
    run("train", *INPUTS, "--model-dir", str(tmp / "model"), "--format", "json")
    rules = tmp / "rules.toml"
    run("suppress", "add", "--rules", str(rules), "--id", "below-80", "--author", "ana",
        "--reason", "known benchmark tenants", "--when", "risk_score < 80")  # fmt: skip
    summary = run(
        "score", *INPUTS, "--model-dir", str(tmp / "model"), "--out", str(tmp / "scores.parquet"),
        "--metrics-file", str(tmp / "g.prom"), "--suppress", str(rules), "--format", "json",
    )  # fmt: skip
    report = tmp / "report.html"
    run("report", "--scores", str(tmp / "scores.parquet"), *INPUTS, "--top", str(TOP),
        "--out", str(report))  # fmt: skip
    return {"tmp": tmp, "summary": json.loads(summary), "report": report}


def test_score_suppresses_alerts_but_keeps_them_scored(scored):
    tmp, summary = scored["tmp"], scored["summary"]
    scores = pd.read_parquet(tmp / "scores.parquet")
    threshold = json.loads((tmp / "model" / "metadata.json").read_text())["alert_risk"]
    would_alert = scores["risk_score"] >= threshold
    silenced = would_alert & (scores["risk_score"] < 80)
    assert silenced.any()
    assert scores["suppressed_by"].eq("below-80").fillna(False).tolist() == silenced.tolist()
    assert scores["alert"].tolist() == (would_alert & ~silenced).tolist()
    assert summary["alerts"] == int(scores["alert"].sum())
    assert summary["suppressed"] == {"below-80": int(silenced.sum())}
    metrics = (tmp / "g.prom").read_text()
    assert f'gpuwatch_suppressed_alerts{{rule="below-80"}} {float(silenced.sum())}' in metrics
    assert f"gpuwatch_alert_sessions {float(scores['alert'].sum())}" in metrics


def test_report_command_names_bad_scores(tmp_path):
    bad = tmp_path / "scores.csv"
    pd.DataFrame({"session_id": ["x"]}).to_csv(bad, index=False)
    out = run("report", "--scores", str(bad), "--out", str(tmp_path / "r.html"), code=2)
    assert "lack the column" in out and not (tmp_path / "r.html").exists()


def test_report_holds_every_case_with_its_plots(scored):
    html = scored["report"].read_text()
    assert html.count('class="case"') == TOP
    plots = html.count('id="plot-')
    without = html.count("No telemetry samples of this") + html.count("No access events of this")
    assert plots + without == 3 + 2 * TOP  # overview, then timeline and origins per case
    assert without <= 1
    for heading in ("1. Fleet overview", "2. Top cases", "3. Glossary"):
        assert heading in html


def need_chromium() -> str:
    executable = chromium.binary()
    if executable is None:
        pytest.skip("chromium not installed (apt-get install chromium)")
    return executable


def drawn_plots(tab: chromium.Page, expected: int) -> int:
    """Plots plotly has drawn (a layout and an SVG), waiting up to the harness timeout."""
    deadline = time.monotonic() + chromium.TIMEOUT
    script = (
        "[...document.querySelectorAll('.plotly-graph-div')]"
        ".filter(p => p._fullLayout && p.querySelector('svg.main-svg')).length"
    )
    while (drawn := tab.evaluate(script)) < expected and time.monotonic() < deadline:
        time.sleep(0.2)
    return drawn


@pytest.mark.integration
def test_report_loads_in_headless_chromium_without_errors_or_network(scored):
    report = scored["report"]
    expected = report.read_text().count('id="plot-')
    with chromium.browser(need_chromium()) as tab:
        tab.load(report.as_uri())
        assert drawn_plots(tab, expected) == expected
        assert tab.evaluate("document.querySelectorAll('g.hm, image').length") >= TOP  # heatmaps
        assert tab.errors() == []
        assert {url.split(":")[0] for url in tab.requests()} <= {"file", "data"}


@pytest.mark.integration
def test_the_chromium_harness_sees_errors_and_requests(tmp_path):
    broken = tmp_path / "broken.html"
    broken.write_text(
        "<html><body><div class='plotly-graph-div'></div>"
        "<script>console.error('bad data')</script>"
        "<script>undefinedFunction()</script>"
        "<img src='http://127.0.0.1:9/missing.png'></body></html>"
    )
    with chromium.browser(need_chromium()) as tab:
        tab.load(broken.as_uri())
        assert drawn_plots(tab, 0) == 0
        errors = " ".join(tab.errors())
        assert "bad data" in errors and "undefinedFunction" in errors
        assert "http://127.0.0.1:9/missing.png" in tab.requests()
