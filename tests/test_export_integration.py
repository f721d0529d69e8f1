"""Against real servers: Pushgateway push/push-add, `gpuwatch serve`, Prometheus scraping it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from export_fixtures import run_report, scores_frame
from prom_servers import free_port, get, gpuwatch_serve, prometheus, pushgateway, query, wait_until
from prometheus_client.parser import text_string_to_metric_families

from detector.export import (
    ExportError,
    ExportOptions,
    write_run_sidecar,
)
from detector.export.publish import publish, publish_failure
from detector.export.source import ScoresSource

ROOT = Path(__file__).resolve().parent.parent


def gateway_values(url: str, job: str) -> dict[str, float]:
    """{name + sorted labels without job/instance: value} of one job's pushed gpuwatch series."""
    status, text = get(url + "/metrics")
    assert status == 200
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name.startswith("gpuwatch_") and s.labels.get("job") == job:
                labels = {k: v for k, v in s.labels.items() if k not in ("job", "instance")}
                out[s.name + str(sorted(labels.items()))] = s.value
    return out


def write_scores(path: Path, scores, report) -> None:
    """Write scores + sidecar the way the score command does: temp file, then rename."""
    tmp = path.with_name("." + path.name + ".tmp")
    scores.to_parquet(tmp)
    os.replace(tmp, path)
    write_run_sidecar(path, report)


@pytest.mark.integration
def test_pushgateway_success_replaces_failure_push_adds(tmp_path):
    with pushgateway(tmp_path) as url:
        options = ExportOptions(pushgateway=url, job="gpuwatch-it", grouping={"cluster": "eu1"})
        publish(scores_frame(), run_report(), options)
        pushed = gateway_values(url, "gpuwatch-it")
        assert pushed["gpuwatch_tenant_risk_score[('cluster', 'eu1'), ('tenant', 'a')]"] == 95.0
        assert pushed["gpuwatch_last_run_success[('cluster', 'eu1')]"] == 1.0

        failed = run_report(success=False)
        failed.finished_at = 1_717_210_000.0
        publish_failure(failed, options)
        after_failure = gateway_values(url, "gpuwatch-it")
        assert after_failure["gpuwatch_last_run_success[('cluster', 'eu1')]"] == 0.0
        assert (
            after_failure["gpuwatch_last_run_timestamp_seconds[('cluster', 'eu1')]"]
            == 1_717_210_000.0
        )
        assert (
            after_failure["gpuwatch_last_success_timestamp_seconds[('cluster', 'eu1')]"]
            == 1_717_200_090.5
        )
        assert (
            after_failure["gpuwatch_tenant_risk_score[('cluster', 'eu1'), ('tenant', 'a')]"] == 95.0
        )

        quiet = scores_frame().assign(alert=False, risk_score=10.0, severity="low")
        publish(quiet, run_report(), options)
        final = gateway_values(url, "gpuwatch-it")
        assert final["gpuwatch_last_run_success[('cluster', 'eu1')]"] == 1.0
        assert not [k for k in final if k.startswith("gpuwatch_alert_session_risk_score")]
        assert final["gpuwatch_alert_sessions[('cluster', 'eu1')]"] == 0.0


def test_unreachable_pushgateway_raises_export_error():
    url = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(ExportError, match="127.0.0.1"):
        publish(scores_frame(), run_report(), ExportOptions(pushgateway=url))


def test_source_keeps_last_good_snapshot_when_newest_file_is_broken(tmp_path):
    write_scores(tmp_path / "2024-06-01.parquet", scores_frame(), run_report())
    source = ScoresSource(tmp_path, ExportOptions())
    assert source.current().name == "2024-06-01.parquet"
    (tmp_path / "2024-06-02.parquet").write_bytes(b"not parquet")
    snapshot = source.current()
    assert snapshot.name == "2024-06-01.parquet"
    assert "2024-06-02.parquet" in source.error
    write_scores(tmp_path / "2024-06-03.parquet", scores_frame().head(1), run_report())
    assert len(source.current().scores) == 1 and source.error is None


@pytest.mark.integration
def test_serve_health_metrics_and_reload(tmp_path):
    scores = tmp_path / "scores.parquet"
    with gpuwatch_serve(tmp_path, scores) as url:
        status, body = get(url + "/healthz")
        assert status == 503 and "no scores file" in body
        write_scores(scores, scores_frame(), run_report())
        assert get(url + "/healthz")[0] == 200
        status, text = get(url + "/metrics")
        assert status == 200
        assert 'gpuwatch_tenant_risk_score{tenant="a"} 95.0' in text
        assert "gpuwatch_last_success_timestamp_seconds 1.7172000905e+09" in text
        write_scores(scores, scores_frame().assign(risk_score=50.0), run_report())
        assert 'gpuwatch_tenant_risk_score{tenant="a"} 50.0' in get(url + "/metrics")[1]
        assert get(url + "/nope")[0] == 404


@pytest.mark.integration
def test_prometheus_scrapes_serve_and_loads_rules(tmp_path):
    scores = tmp_path / "scores.parquet"
    write_scores(scores, scores_frame(), run_report())
    rules = ROOT / "deploy" / "prometheus" / "alerts.yml"
    with (
        gpuwatch_serve(tmp_path, scores) as serve_url,
        prometheus(tmp_path, serve_url.removeprefix("http://"), [rules]) as prom,
    ):
        risk = wait_until(
            lambda: query(prom, "gpuwatch_tenant_risk_score"),
            "Prometheus to scrape gpuwatch_tenant_risk_score",
        )
        assert {r["metric"]["tenant"]: float(r["value"][1]) for r in risk} == {
            "a": 95.0,
            "b": 75.0,
            "c": 35.0,
        }
        assert {r["metric"]["job"] for r in risk} == {"gpuwatch"}
        assert (
            float(query(prom, "gpuwatch_last_success_timestamp_seconds")[0]["value"][1])
            == 1_717_200_090.5
        )
        assert (
            float(
                query(prom, 'gpuwatch_tenant_gpu_seconds{tenant="a",origin="restricted"}')[0][
                    "value"
                ][1]
            )
            == 57600.0
        )
        assert query(prom, 'up{job="gpuwatch"}')[0]["value"][1] == "1"

        write_scores(scores, scores_frame().assign(risk_score=42.0), run_report())
        wait_until(
            lambda: query(prom, 'gpuwatch_tenant_risk_score{tenant="a"} == 42'),
            "Prometheus to see the reloaded scores",
        )

        alerts = wait_until(
            lambda: [
                a
                for a in query(prom, "ALERTS")
                if a["metric"]["alertname"] == "GpuwatchRestrictedTrainingSuspected"
            ],
            "GpuwatchRestrictedTrainingSuspected to fire in the real Prometheus",
        )
        assert alerts[0]["metric"]["tenant"] == "a"
        status, body = get(prom + "/api/v1/rules")
        assert status == 200 and '"health":"err"' not in body
