"""Metric families: exact exposition, cardinality bounds, origin rule, pseudonyms, promtool."""

from __future__ import annotations

import shutil
import subprocess

import pandas as pd
import pytest
from export_fixtures import run_report, scores_frame
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from detector.errors import SchemaError
from detector.export import ExportOptions, origin_of, run_families, snapshot_families
from detector.export.collector import registry_of

EXPECTED = """\
# HELP gpuwatch_last_run_timestamp_seconds Unix time at which the last scoring run ended.
# TYPE gpuwatch_last_run_timestamp_seconds gauge
gpuwatch_last_run_timestamp_seconds 1.7172000905e+09
# HELP gpuwatch_last_run_success 1 if the last scoring run succeeded, 0 if it failed.
# TYPE gpuwatch_last_run_success gauge
gpuwatch_last_run_success 1.0
# HELP gpuwatch_run_duration_seconds Wall time of each pipeline stage in the last run.
# TYPE gpuwatch_run_duration_seconds gauge
gpuwatch_run_duration_seconds{stage="ingest"} 1.5
gpuwatch_run_duration_seconds{stage="score"} 0.25
# HELP gpuwatch_last_run_rows_read Input rows read by the last run, by source.
# TYPE gpuwatch_last_run_rows_read gauge
gpuwatch_last_run_rows_read{source="access"} 40.0
gpuwatch_last_run_rows_read{source="telemetry"} 100.0
# HELP gpuwatch_last_run_rows_accepted Input rows accepted by the last run, by source.
# TYPE gpuwatch_last_run_rows_accepted gauge
gpuwatch_last_run_rows_accepted{source="access"} 40.0
gpuwatch_last_run_rows_accepted{source="telemetry"} 98.0
# HELP gpuwatch_last_run_rows_quarantined Input rows rejected by the last run, by source and reason.
# TYPE gpuwatch_last_run_rows_quarantined gauge
gpuwatch_last_run_rows_quarantined{reason="gpu_util out of range",source="telemetry"} 2.0
# HELP gpuwatch_enrichment_unknown_ratio Share (0-1) of source IPs with no country or ASN in \
the last run.
# TYPE gpuwatch_enrichment_unknown_ratio gauge
gpuwatch_enrichment_unknown_ratio 0.1
# HELP gpuwatch_access_coverage_ratio Share (0-1) of the days with GPU sessions on which access \
events were seen.
# TYPE gpuwatch_access_coverage_ratio gauge
gpuwatch_access_coverage_ratio 1.0
# HELP gpuwatch_last_success_timestamp_seconds Unix time at which the last successful \
scoring run ended.
# TYPE gpuwatch_last_success_timestamp_seconds gauge
gpuwatch_last_success_timestamp_seconds 1.7172000905e+09
# HELP gpuwatch_sessions_scored Sessions scored by the last successful run.
# TYPE gpuwatch_sessions_scored gauge
gpuwatch_sessions_scored 4.0
# HELP gpuwatch_model_info The model that scored the last successful run.
# TYPE gpuwatch_model_info gauge
gpuwatch_model_info{trained_at="2024-05-30T12:00:00Z",version="m1"} 1.0
# HELP gpuwatch_sessions Sessions in the last successful run, by severity.
# TYPE gpuwatch_sessions gauge
gpuwatch_sessions{severity="low"} 1.0
gpuwatch_sessions{severity="medium"} 1.0
gpuwatch_sessions{severity="high"} 1.0
gpuwatch_sessions{severity="critical"} 1.0
# HELP gpuwatch_alert_sessions Sessions in alert in the last successful run.
# TYPE gpuwatch_alert_sessions gauge
gpuwatch_alert_sessions 2.0
# HELP gpuwatch_tenants Tenants with at least one session in the last successful run.
# TYPE gpuwatch_tenants gauge
gpuwatch_tenants 3.0
# HELP gpuwatch_gpu_seconds GPU time (GPU-seconds) of the sessions in the last successful run, \
by severity and access origin (restricted: origin evidence at or above the policy's alert level).
# TYPE gpuwatch_gpu_seconds gauge
gpuwatch_gpu_seconds{origin="restricted",severity="low"} 0.0
gpuwatch_gpu_seconds{origin="other",severity="low"} 7200.0
gpuwatch_gpu_seconds{origin="restricted",severity="medium"} 0.0
gpuwatch_gpu_seconds{origin="other",severity="medium"} 7200.0
gpuwatch_gpu_seconds{origin="restricted",severity="high"} 0.0
gpuwatch_gpu_seconds{origin="other",severity="high"} 28800.0
gpuwatch_gpu_seconds{origin="restricted",severity="critical"} 57600.0
gpuwatch_gpu_seconds{origin="other",severity="critical"} 0.0
# HELP gpuwatch_session_risk_score Risk scores (0-100) of the sessions in the last successful run.
# TYPE gpuwatch_session_risk_score histogram
gpuwatch_session_risk_score_bucket{le="10.0"} 0.0
gpuwatch_session_risk_score_bucket{le="20.0"} 1.0
gpuwatch_session_risk_score_bucket{le="30.0"} 1.0
gpuwatch_session_risk_score_bucket{le="40.0"} 2.0
gpuwatch_session_risk_score_bucket{le="50.0"} 2.0
gpuwatch_session_risk_score_bucket{le="60.0"} 2.0
gpuwatch_session_risk_score_bucket{le="70.0"} 2.0
gpuwatch_session_risk_score_bucket{le="80.0"} 3.0
gpuwatch_session_risk_score_bucket{le="90.0"} 3.0
gpuwatch_session_risk_score_bucket{le="100.0"} 4.0
gpuwatch_session_risk_score_bucket{le="+Inf"} 4.0
gpuwatch_session_risk_score_count 4.0
gpuwatch_session_risk_score_sum 220.0
# HELP gpuwatch_tenant_risk_score Highest session risk score (0-100) of the tenant.
# TYPE gpuwatch_tenant_risk_score gauge
gpuwatch_tenant_risk_score{tenant="a"} 95.0
# HELP gpuwatch_tenant_alert_sessions Sessions of the tenant in alert.
# TYPE gpuwatch_tenant_alert_sessions gauge
gpuwatch_tenant_alert_sessions{tenant="a"} 1.0
# HELP gpuwatch_tenant_gpu_seconds GPU time (GPU-seconds) of the tenant's sessions, by access \
origin.
# TYPE gpuwatch_tenant_gpu_seconds gauge
gpuwatch_tenant_gpu_seconds{origin="restricted",tenant="a"} 57600.0
gpuwatch_tenant_gpu_seconds{origin="other",tenant="a"} 7200.0
# HELP gpuwatch_alert_session_risk_score Risk score (0-100) of each session in alert, with its \
strongest feature.
# TYPE gpuwatch_alert_session_risk_score gauge
gpuwatch_alert_session_risk_score{session_id="s1",severity="critical",tenant="a",\
top_feature="origin:direct"} 95.0
# HELP gpuwatch_export_dropped_series Alerting tenants, entities or sessions left out of the \
per-entity series by --max-series.
# TYPE gpuwatch_export_dropped_series gauge
gpuwatch_export_dropped_series{kind="tenant"} 1.0
gpuwatch_export_dropped_series{kind="entity"} 0.0
gpuwatch_export_dropped_series{kind="session"} 1.0
# HELP gpuwatch_export_series_limit The --max-series cap; present only when it was hit in this \
export.
# TYPE gpuwatch_export_series_limit gauge
gpuwatch_export_series_limit 1.0
"""


def exposition(scores: pd.DataFrame, options: ExportOptions, success: bool = True) -> str:
    families = snapshot_families(scores, run_report(success), options)
    return generate_latest(registry_of(lambda: families)).decode()


def samples(text: str, name: str) -> dict[tuple, float]:
    """{sorted label items: value} of one sample name in an exposition."""
    return {
        tuple(sorted(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == name
    }


def test_exact_exposition_with_caps_hit():
    assert exposition(scores_frame(), ExportOptions(top_n=1, max_series=1)) == EXPECTED


def test_default_budget_keeps_every_alert_and_no_cap_metric():
    text = exposition(scores_frame(), ExportOptions(top_n=1))
    assert samples(text, "gpuwatch_tenant_risk_score") == {
        (("tenant", "a"),): 95.0,
        (("tenant", "b"),): 75.0,
    }
    assert {k[0][1] for k in samples(text, "gpuwatch_alert_session_risk_score")} == {"s1", "s3"}
    assert samples(text, "gpuwatch_export_dropped_series") == {
        (("kind", "session"),): 0.0,
        (("kind", "entity"),): 0.0,
        (("kind", "tenant"),): 0.0,
    }
    assert "gpuwatch_export_series_limit" not in text


def test_top_n_adds_riskiest_tenants_without_alerts():
    text = exposition(scores_frame(), ExportOptions(top_n=3))
    assert samples(text, "gpuwatch_tenant_alert_sessions") == {
        (("tenant", "a"),): 1.0,
        (("tenant", "b"),): 1.0,
        (("tenant", "c"),): 0.0,
    }


@pytest.mark.parametrize("n_tenants", [0, 1, 50, 400])
@pytest.mark.parametrize(("top_n", "max_series"), [(0, 1), (5, 20), (10, 500)])
def test_series_count_never_exceeds_documented_worst_case(n_tenants, top_n, max_series):
    base = with_entities(scores_frame())
    rows = base.iloc[[0] * n_tenants].reset_index(drop=True)
    rows["tenant_id"] = [f"t{i}" for i in range(n_tenants)]
    rows["entity_id"] = [f"e{i}" for i in range(n_tenants)]
    rows["session_id"] = [f"x{i}" for i in range(n_tenants)]
    rows["risk_score"] = [float(i % 100) for i in range(n_tenants)]
    rows["alert"] = rows["risk_score"] >= 30
    thresholds = (1e23, 1e24)
    options = ExportOptions(top_n=top_n, max_series=max_series, flop_thresholds=thresholds)
    text = exposition(rows, options)
    per_entity = sum(
        len(family.samples)
        for family in text_string_to_metric_families(text)
        if family.name.startswith(
            ("gpuwatch_tenant_", "gpuwatch_entity_", "gpuwatch_alert_session_")
        )
    )
    # per tenant 4 series, per entity 6, per alerting session 1
    assert per_entity <= 10 * (top_n + max_series) + max_series
    report = run_report()
    total = sum(len(family.samples) for family in text_string_to_metric_families(text))
    assert total <= (
        10 * top_n
        + 11 * max_series
        + 38
        + len(thresholds)
        + len(report.stage_seconds)
        + 2 * len(report.rows_read)
        + len(report.rows_quarantined)
    )
    assert per_entity <= 10 * min(n_tenants, top_n + max_series) + min(n_tenants, max_series)


def with_entities(scores: pd.DataFrame) -> pd.DataFrame:
    """Tenants a and b linked into entity e1 (1e24 FLOP, 2e24 at the high bound); c alone."""
    entity = scores["tenant_id"].map({"a": "e1", "b": "e1", "c": "e2"})
    flop = entity.map({"e1": 1e24, "e2": 0.0})
    return scores.assign(
        entity_id=entity,
        entity_tenants=entity.map({"e1": 2, "e2": 1}),
        entity_gpu_hours=entity.map({"e1": 26.0, "e2": 2.0}),
        entity_training_flop=flop,
        entity_training_flop_low=flop / 2,
        entity_training_flop_high=flop * 2,
    )


def test_entities_carry_their_compute_and_count_past_each_threshold():
    options = ExportOptions(top_n=1, flop_thresholds=(1e23, 1e24, 1e25))
    text = exposition(with_entities(scores_frame()), options)
    assert samples(text, "gpuwatch_entities_over_flop_threshold") == {
        (("threshold", "1e+23"),): 1.0,
        (("threshold", "1e+24"),): 1.0,
        (("threshold", "1e+25"),): 0.0,
    }
    # top_n=1 keeps the riskiest entity; e2 has no alert and stays out
    assert samples(text, "gpuwatch_entity_risk_score") == {(("entity", "e1"),): 95.0}
    assert samples(text, "gpuwatch_entity_tenants") == {(("entity", "e1"),): 2.0}
    assert samples(text, "gpuwatch_entity_gpu_seconds") == {(("entity", "e1"),): 26.0 * 3600}
    assert samples(text, "gpuwatch_entity_training_flop") == {
        (("bound", "low"), ("entity", "e1")): 5e23,
        (("bound", "estimate"), ("entity", "e1")): 1e24,
        (("bound", "high"), ("entity", "e1")): 2e24,
    }


def test_alerting_entities_are_capped_and_the_cap_reported():
    scores = with_entities(scores_frame())
    scores["entity_id"] = ["e1", "e1", "e3", "e2"]  # two alerting entities
    text = exposition(scores, ExportOptions(top_n=0, max_series=1))
    assert samples(text, "gpuwatch_entity_risk_score") == {(("entity", "e1"),): 95.0}
    assert samples(text, "gpuwatch_export_dropped_series")[(("kind", "entity"),)] == 1.0


def test_origin_is_restricted_from_the_origin_evidence():
    frame = pd.DataFrame({"origin_evidence": [0.5, 0.49, None, 0.99]})
    assert origin_of(frame, 0.5).tolist() == ["restricted", "other", "other", "restricted"]
    assert origin_of(frame[[]], 0.5).tolist() == ["other"] * 4


def test_pseudonymized_labels_hide_ids_and_are_stable():
    options = ExportOptions(pseudonymize_salt="s3cret")
    text = exposition(scores_frame(), options)
    assert exposition(scores_frame(), options) == text
    labels = samples(text, "gpuwatch_alert_session_risk_score")
    for key in labels:
        values = dict(key)
        assert values["tenant"].startswith("t_") and len(values["tenant"]) == 18
        assert values["session_id"].startswith("s_") and values["session_id"] not in {"s1", "s3"}
    other = exposition(scores_frame(), ExportOptions(pseudonymize_salt="other"))
    assert samples(other, "gpuwatch_tenant_risk_score") != samples(
        text, "gpuwatch_tenant_risk_score"
    )


def test_empty_scores_give_zero_fleet_series():
    text = exposition(scores_frame().iloc[0:0], ExportOptions())
    assert samples(text, "gpuwatch_alert_sessions") == {(): 0.0}
    assert samples(text, "gpuwatch_session_risk_score_count") == {(): 0.0}
    assert samples(text, "gpuwatch_tenant_risk_score") == {}


def test_failed_run_families_say_failure():
    text = generate_latest(registry_of(lambda: run_families(run_report(False)))).decode()
    assert samples(text, "gpuwatch_last_run_success") == {(): 0.0}
    assert "gpuwatch_last_success_timestamp_seconds" not in text


@pytest.mark.parametrize("column", ["tenant_id", "risk_score", "alert"])
def test_missing_column_is_a_schema_error(column):
    with pytest.raises(SchemaError, match=column):
        exposition(scores_frame().drop(columns=column), ExportOptions())


def test_unknown_severity_is_a_schema_error():
    scores = scores_frame().assign(severity=["low", "low", "severe", "low"])
    with pytest.raises(SchemaError, match="severe"):
        exposition(scores, ExportOptions())


@pytest.mark.skipif(
    shutil.which("promtool") is None, reason="promtool not installed (apt-get install prometheus)"
)
@pytest.mark.parametrize(
    "options", [ExportOptions(top_n=1, max_series=1), ExportOptions(pseudonymize_salt="x")]
)
def test_promtool_check_metrics_reports_nothing(options):
    done = subprocess.run(
        ["promtool", "check", "metrics"],
        input=exposition(scores_frame(), options),
        capture_output=True,
        text=True,
        check=False,
    )
    assert (done.returncode, done.stdout, done.stderr) == (0, "", "")
