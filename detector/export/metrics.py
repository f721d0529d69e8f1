"""Metric families from a scores table and a run report: bounded cardinality by construction.

Fleet-level families cover every session; per-tenant and per-entity families only the top-N
tenants (entities) by risk plus those in alert; per-session families only sessions in alert.
Every alert list is capped at ``max_series`` (highest risk first) and the cap is itself
reported when it bites.
"""

from __future__ import annotations

import json
from collections.abc import Generator, Iterator
from typing import Any

import numpy as np
import pandas as pd
from prometheus_client.core import (
    GaugeMetricFamily,
    HistogramMetricFamily,
    InfoMetricFamily,
    Metric,
)
from prometheus_client.utils import floatToGoString

from ..errors import SchemaError
from ..runinfo import RunReport
from ..state import ALERT_STATUSES
from .options import ExportOptions
from .pseudonym import pseudonymize

SEVERITIES = ("low", "medium", "high", "critical")
ORIGINS = ("restricted", "other")
RISK_BUCKETS = (10.0, 20.0, 30.0, 40.0, 50.0, 60.0, 70.0, 80.0, 90.0, 100.0)
FLOP_BOUNDS = (("low", "_low"), ("estimate", ""), ("high", "_high"))
REQUIRED = ("session_id", "tenant_id", "gpu_hours", "risk_score", "severity", "alert")


def origin_of(scores: pd.DataFrame, restricted_evidence: float) -> pd.Series:
    """'restricted' where the origin evidence (direct, VPN clock and leaks, reseller, ...)
    reaches `restricted_evidence`, else 'other' (also without the column)."""
    if "origin_evidence" in scores:
        evidence = pd.to_numeric(scores["origin_evidence"], errors="coerce")
        restricted = (evidence >= restricted_evidence).fillna(False).to_numpy(bool)
    else:
        restricted = np.zeros(len(scores), dtype=bool)
    return pd.Series(np.where(restricted, ORIGINS[0], ORIGINS[1]), index=scores.index)


def score_families(scores: pd.DataFrame, options: ExportOptions) -> Iterator[Metric]:
    """Fleet, per-tenant and per-alerting-session families of one scores table."""
    _check(scores)
    frame = pd.DataFrame(
        {
            "tenant": scores["tenant_id"].astype(str),
            "session": scores["session_id"].astype(str),
            "risk": pd.to_numeric(scores["risk_score"], errors="coerce"),
            "severity": scores["severity"].astype(str),
            "alert": scores["alert"].fillna(False).astype(bool),
            "gpu_seconds": pd.to_numeric(scores["gpu_hours"], errors="coerce").fillna(0.0) * 3600.0,
            "origin": origin_of(scores, options.restricted_evidence),
        }
    )
    yield from _fleet(frame)
    if "alert_status" in scores:  # scored with --state: alerts have an identity
        yield _alert_status(scores["alert_status"])
    tenants, dropped_tenants = _chosen(frame, "tenant", options)
    yield from _tenants(frame, tenants, options)
    sessions = frame[frame["alert"]].sort_values(["risk", "session"], ascending=[False, True])
    dropped_sessions = max(len(sessions) - options.max_series, 0)
    sessions = sessions.head(options.max_series)
    yield _alert_sessions(sessions, scores, options)
    dropped_entities = 0
    if "entity_id" in scores:
        dropped_entities = yield from _entities(scores, frame, options)
    dropped = GaugeMetricFamily(
        "gpuwatch_export_dropped_series",
        "Alerting tenants, entities or sessions left out of the per-entity series by --max-series.",
        labels=["kind"],
    )
    dropped.add_metric(["tenant"], dropped_tenants)
    dropped.add_metric(["entity"], dropped_entities)
    dropped.add_metric(["session"], dropped_sessions)
    yield dropped
    if dropped_tenants or dropped_entities or dropped_sessions:
        yield GaugeMetricFamily(
            "gpuwatch_export_series_limit",
            "The --max-series cap; present only when it was hit in this export.",
            value=options.max_series,
        )


def run_families(report: RunReport) -> Iterator[Metric]:
    """What the last run did, whether it succeeded or failed."""
    yield GaugeMetricFamily(
        "gpuwatch_last_run_timestamp_seconds",
        "Unix time at which the last scoring run ended.",
        value=report.finished_at or report.started_at,
    )
    yield GaugeMetricFamily(
        "gpuwatch_last_run_success",
        "1 if the last scoring run succeeded, 0 if it failed.",
        value=float(report.success),
    )
    duration = GaugeMetricFamily(
        "gpuwatch_run_duration_seconds",
        "Wall time of each pipeline stage in the last run.",
        labels=["stage"],
    )
    for stage, seconds in sorted(report.stage_seconds.items()):
        duration.add_metric([stage], seconds)
    yield duration
    # gauges, not counters: each run reports its own rows, and rate() of a value that starts
    # again every run would be nonsense
    for name, rows_by_source, what in (
        ("gpuwatch_last_run_rows_read", report.rows_read, "read"),
        ("gpuwatch_last_run_rows_accepted", report.rows_accepted, "accepted"),
    ):
        family = GaugeMetricFamily(
            name, f"Input rows {what} by the last run, by source.", labels=["source"]
        )
        for source, rows in sorted(rows_by_source.items()):
            family.add_metric([source], rows)
        yield family
    quarantined = GaugeMetricFamily(
        "gpuwatch_last_run_rows_quarantined",
        "Input rows rejected by the last run, by source and reason.",
        labels=["source", "reason"],
    )
    for (source, reason), rows in sorted(report.rows_quarantined.items()):
        quarantined.add_metric([source, reason], rows)
    yield quarantined
    yield GaugeMetricFamily(
        "gpuwatch_enrichment_unknown_ratio",
        "Share (0-1) of source IPs with no country or ASN in the last run.",
        value=report.enrichment_unknown_ratio,
    )
    yield GaugeMetricFamily(
        "gpuwatch_access_coverage_ratio",
        "Share (0-1) of the days with GPU sessions on which access events were seen.",
        value=report.access_coverage,
    )


def success_families(report: RunReport) -> Iterator[Metric]:
    """Kept from the last successful run: its time, its session count and its model."""
    yield GaugeMetricFamily(
        "gpuwatch_last_success_timestamp_seconds",
        "Unix time at which the last successful scoring run ended.",
        value=report.finished_at or report.started_at,
    )
    yield GaugeMetricFamily(
        "gpuwatch_sessions_scored",
        "Sessions scored by the last successful run.",
        value=report.sessions,
    )
    info = InfoMetricFamily("gpuwatch_model", "The model that scored the last successful run.")
    info.add_metric([], {"version": report.model_version, "trained_at": report.model_trained_at})
    yield info
    if report.suppressed or report.rules_expired:  # the run had --suppress; rules are few
        silenced = GaugeMetricFamily(
            "gpuwatch_suppressed_alerts",
            "Alerts silenced by each active suppression rule in the last successful run.",
            labels=["rule"],
        )
        for rule, count in sorted(report.suppressed.items()):
            silenced.add_metric([rule], count)
        yield silenced
        rules = GaugeMetricFamily(
            "gpuwatch_suppression_rules",
            "Suppression rules by state; expired rules no longer apply.",
            labels=["state"],
        )
        rules.add_metric(["active"], len(report.suppressed))
        rules.add_metric(["expired"], len(report.rules_expired))
        yield rules


def _check(scores: pd.DataFrame) -> None:
    for column in REQUIRED:
        if column not in scores:
            raise SchemaError(
                f"scores lack the column {column!r} needed for metrics", column=column
            )
    for column in ("session_id", "tenant_id"):
        missing = scores[column].isna()
        if missing.any():
            raise SchemaError(
                f"{int(missing.sum())} scores have no {column} (first at row "
                f"{int(missing.to_numpy().argmax()) + 1})",
                column=column,
            )
    unknown = sorted(set(scores["severity"].dropna().astype(str)) - set(SEVERITIES))
    if unknown:
        raise SchemaError(
            f"unknown severity {unknown[0]!r}, expected one of {SEVERITIES}", column="severity"
        )


def _alert_status(status: pd.Series) -> Metric:
    """Alerts by status: `new` counts only alerts first raised by this run (page on it)."""
    counts = status.value_counts()
    family = GaugeMetricFamily(
        "gpuwatch_alerts",
        "Alerts of the last successful run by status: new (first raised by this run), "
        "ongoing (raised before, still in alert), resolved (no longer in alert).",
        labels=["status"],
    )
    for name in ALERT_STATUSES:
        family.add_metric([name], int(counts.get(name, 0)))
    return family


def _fleet(frame: pd.DataFrame) -> Iterator[Metric]:
    by_severity = frame["severity"].value_counts().reindex(SEVERITIES, fill_value=0)
    sessions = GaugeMetricFamily(
        "gpuwatch_sessions",
        "Sessions in the last successful run, by severity.",
        labels=["severity"],
    )
    for severity, count in by_severity.items():
        sessions.add_metric([severity], count)
    yield sessions
    yield GaugeMetricFamily(
        "gpuwatch_alert_sessions",
        "Sessions in alert in the last successful run.",
        value=int(frame["alert"].sum()),
    )
    yield GaugeMetricFamily(
        "gpuwatch_tenants",
        "Tenants with at least one session in the last successful run.",
        value=frame["tenant"].nunique(),
    )
    gpu = (
        frame.groupby(["severity", "origin"])["gpu_seconds"]
        .sum()
        .reindex(pd.MultiIndex.from_product([SEVERITIES, ORIGINS]), fill_value=0.0)
    )
    gpu_family = GaugeMetricFamily(
        "gpuwatch_gpu_seconds",
        "GPU time (GPU-seconds) of the sessions in the last successful run, by severity and "
        "access origin (restricted: origin evidence at or above the policy's alert level).",
        labels=["severity", "origin"],
    )
    for (severity, origin), seconds in gpu.items():
        gpu_family.add_metric([severity, origin], seconds)
    yield gpu_family
    risk = frame["risk"].dropna()
    counts = np.searchsorted(np.sort(risk.to_numpy()), RISK_BUCKETS, side="right")
    buckets = [(floatToGoString(le), int(n)) for le, n in zip(RISK_BUCKETS, counts, strict=True)]
    buckets.append(("+Inf", len(risk)))
    yield HistogramMetricFamily(
        "gpuwatch_session_risk_score",
        "Risk scores (0-100) of the sessions in the last successful run.",
        buckets=buckets,
        sum_value=float(risk.sum()),
    )


def _chosen(frame: pd.DataFrame, by: str, options: ExportOptions) -> tuple[pd.DataFrame, int]:
    """Per value of column `by` (tenant, entity): highest risk and alerts, for the top_n
    riskiest plus those in alert (capped at max_series); and how many in alert the cap left
    out."""
    per_key = (
        frame.groupby(by)
        .agg(risk=("risk", "max"), alerts=("alert", "sum"))
        .reset_index()
        .sort_values(["risk", by], ascending=[False, True], na_position="last")
    )
    alerting = per_key[per_key["alerts"] > 0]
    keep = set(per_key[by].head(options.top_n)) | set(alerting[by].head(options.max_series))
    dropped = max(len(alerting) - options.max_series, 0)
    return per_key[per_key[by].isin(keep)], dropped


def _tenants(
    frame: pd.DataFrame, tenants: pd.DataFrame, options: ExportOptions
) -> Iterator[Metric]:
    names = pseudonymize(tenants["tenant"], options.pseudonymize_salt, "t_").tolist()
    risk = GaugeMetricFamily(
        "gpuwatch_tenant_risk_score",
        "Highest session risk score (0-100) of the tenant.",
        labels=["tenant"],
    )
    alerts = GaugeMetricFamily(
        "gpuwatch_tenant_alert_sessions", "Sessions of the tenant in alert.", labels=["tenant"]
    )
    for name, value, count in zip(names, tenants["risk"], tenants["alerts"], strict=True):
        risk.add_metric([name], value)
        alerts.add_metric([name], count)
    yield risk
    yield alerts
    gpu = (
        frame[frame["tenant"].isin(tenants["tenant"])]
        .groupby(["tenant", "origin"])["gpu_seconds"]
        .sum()
        .unstack(fill_value=0.0)
        .reindex(index=tenants["tenant"], columns=list(ORIGINS), fill_value=0.0)
    )
    gpu_family = GaugeMetricFamily(
        "gpuwatch_tenant_gpu_seconds",
        "GPU time (GPU-seconds) of the tenant's sessions, by access origin.",
        labels=["tenant", "origin"],
    )
    for name, row in zip(names, gpu.itertuples(index=False), strict=True):
        for origin, seconds in zip(ORIGINS, row, strict=True):
            gpu_family.add_metric([name, origin], seconds)
    yield gpu_family


def _entities(
    scores: pd.DataFrame, frame: pd.DataFrame, options: ExportOptions
) -> Generator[Metric, None, int]:
    """Per entity (linked tenants, features/entities.py): its compute totals for the top-N
    and alerting entities, and the fleet's count of entities past each FLOP threshold.
    Returns the alerting entities left out by --max-series."""
    totals = scores.groupby(scores["entity_id"].astype(str), sort=True).agg(
        tenants=("entity_tenants", "max"),
        **{
            f"flop_{bound}": (f"entity_training_flop{suffix}", "max")
            for bound, suffix in FLOP_BOUNDS
        },
        gpu_hours=("entity_gpu_hours", "max"),
    )
    over = GaugeMetricFamily(
        "gpuwatch_entities_over_flop_threshold",
        "Entities whose estimated training FLOP over the accounting window reaches each "
        "threshold of the policy.",
        labels=["threshold"],
    )
    for threshold in options.flop_thresholds:
        over.add_metric([f"{threshold:g}"], int((totals["flop_estimate"] >= threshold).sum()))
    yield over
    chosen, dropped = _chosen(
        frame.assign(entity=scores["entity_id"].astype(str)), "entity", options
    )
    names = pseudonymize(chosen["entity"], options.pseudonymize_salt, "e_").tolist()
    chosen_totals = totals.reindex(chosen["entity"])
    risk = GaugeMetricFamily(
        "gpuwatch_entity_risk_score",
        "Highest session risk score (0-100) of the entity (tenants linked by billing, "
        "principals, source prefixes or jobs run in step).",
        labels=["entity"],
    )
    tenants = GaugeMetricFamily(
        "gpuwatch_entity_tenants", "Tenants linked into the entity.", labels=["entity"]
    )
    gpu = GaugeMetricFamily(
        "gpuwatch_entity_gpu_seconds",
        "GPU time (GPU-seconds) of the entity over the accounting window.",
        labels=["entity"],
    )
    flop = GaugeMetricFamily(
        "gpuwatch_entity_training_flop",
        "Estimated training FLOP of the entity over the accounting window, with the bounds "
        "of the estimate.",
        labels=["entity", "bound"],
    )
    for name, value, row in zip(
        names, chosen["risk"], chosen_totals.itertuples(index=False), strict=True
    ):
        risk.add_metric([name], value)
        tenants.add_metric([name], row.tenants)
        gpu.add_metric([name], float(np.nan_to_num(row.gpu_hours)) * 3600.0)
        for bound, _ in FLOP_BOUNDS:
            flop.add_metric([name, bound], float(np.nan_to_num(getattr(row, f"flop_{bound}"))))
    yield from (risk, tenants, gpu, flop)
    return dropped


def _alert_sessions(sessions: pd.DataFrame, scores: pd.DataFrame, options: ExportOptions) -> Metric:
    family = GaugeMetricFamily(
        "gpuwatch_alert_session_risk_score",
        "Risk score (0-100) of each session in alert, with its strongest feature.",
        labels=["tenant", "session_id", "severity", "top_feature"],
    )
    tenants = pseudonymize(sessions["tenant"], options.pseudonymize_salt, "t_")
    ids = pseudonymize(sessions["session"], options.pseudonymize_salt, "s_")
    explained = (
        scores["top_features"].reindex(sessions.index)
        if "top_features" in scores
        else pd.Series("", index=sessions.index)
    )
    for tenant, session, severity, risk, features in zip(
        tenants, ids, sessions["severity"], sessions["risk"], explained, strict=True
    ):
        family.add_metric([tenant, session, severity, _top_feature(features)], risk)
    return family


def _top_feature(features: object) -> str:
    """Name of the first feature in a top_features JSON list, '' when there is none."""
    try:
        parsed: Any = json.loads(features) if isinstance(features, str) else features
        return str(parsed[0]["feature"])
    except (ValueError, TypeError, KeyError, IndexError):
        return ""
