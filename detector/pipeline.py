"""The main job, stage by stage: ingest, enrich, sessions, features, then train or score.

Pure orchestration over the stage modules; file reading happens in ingest, model files in
the model registry, and printing in the CLI.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd

from . import quarantine
from . import state as carry
from .config import Settings
from .engine import Engine, Progress, extract
from .enrich import enrich_access, open_database
from .errors import InputError
from .features import NAMES as FEATURE_NAMES
from .features import TEXT_COLUMNS, complete_features, session_features
from .features.risk import compute_scale, hours_scale
from .ingest import Batch, Counts, Source, expand, open_source, read_table
from .ingest.options import SourceOptions
from .ingest.prometheus_api import PrometheusSource, query_prometheus, read_prometheus
from .ingest.validate import empty_table, to_arrow
from .model.calibrate import (
    ALERT_RISK_RANGE,
    Calibration,
    budget_threshold,
    calibrate_threshold,
    calibration_at,
)
from .model.drift import profile
from .model.evaluate import evaluate
from .model.explain import top_features
from .model.forest import SessionRiskModel, severity
from .model.labels import label_sessions
from .model.store import StoredModel
from .model.supervised import (
    FIT_MIN_PER_CLASS,
    FOREST,
    MIN_PER_CLASS,
    SupervisedLayer,
    blend,
    model_features,
)
from .runinfo import RunReport
from .schema import ACCESS, LABELS, SCORE_HEAD, TELEMETRY, TENANTS, TableSchema
from .sessions import SESSION_COLUMNS, cut_sessions
from .state import State

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Inputs:
    """Where the data comes from (each list: files or folders)."""

    telemetry: Sequence[Path]
    access: Sequence[Path]
    tenants: Path | None = None
    geoip_db: Sequence[Path] = ()
    since: pd.Timestamp | None = None
    until: pd.Timestamp | None = None
    telemetry_format: str = "auto"
    access_format: str = "auto"
    telemetry_options: SourceOptions = field(default_factory=SourceOptions)
    access_options: SourceOptions = field(default_factory=SourceOptions)
    prometheus: PrometheusSource | None = None  # pull telemetry from a live server too
    allow_missing_access: bool = False  # run even if access events do not cover telemetry


@dataclass
class FeatureTable:
    """Sessions with their features, and every input row that was not used."""

    sessions: pd.DataFrame
    quarantine: pd.DataFrame
    report: RunReport = field(default_factory=RunReport)
    state: State | None = None  # the next run's, when this run carried one


def build_features(
    inputs: Inputs,
    settings: Settings,
    report: RunReport | None = None,
    engine: Engine | None = None,
    progress: Progress | None = None,
) -> FeatureTable:
    """Read, validate, enrich, cut sessions and extract features.

    Telemetry goes through the engine (`detector.engine`): ingest's validated batches are
    written to tenant partitions, never held whole.
    """
    report = report or RunReport()
    rejected: list[pd.DataFrame] = []
    window = {"since": inputs.since, "until": inputs.until}
    with report.stage("ingest"):
        telemetry = (
            open_source(
                inputs.telemetry,
                TELEMETRY,
                fmt=inputs.telemetry_format,
                options=inputs.telemetry_options,
                **window,
            )
            if inputs.telemetry
            else Source(TELEMETRY, (), TELEMETRY.name, inputs.telemetry_options)
        )
        extra, extra_name = [], ""
        if inputs.prometheus:
            where, raw = query_prometheus(
                inputs.prometheus, inputs.since, inputs.until, options=inputs.telemetry_options
            )
            extra, extra_name = list(where.raw_batches(raw, 0)), where.names[0]
        access = _read(inputs.access, ACCESS, inputs, settings, report, rejected)
        tenants = (
            _read([inputs.tenants], TENANTS, inputs, settings, report, rejected)
            if inputs.tenants
            else None
        )
    with report.stage("enrich"):
        db = open_database(inputs.geoip_db)
        access, stats = enrich_access(access, db, settings, tenants)
        report.ips_total, report.ips_unknown = stats.ips_total, stats.ips_unknown_country
    workload, bad, counts = extract(
        telemetry,
        settings,
        report,
        engine=engine or Engine(),
        extra=extra,
        extra_name=extra_name,
        progress=progress,
    )
    _count(report, TELEMETRY.name, counts, bad)
    rejected.append(bad)
    if counts.read and not counts.accepted + counts.out_of_window:
        raise InputError(
            f"telemetry: none of the {counts.read} rows read was accepted; first reason: "
            f"{bad['file'].iloc[0]}, row {bad['row'].iloc[0]}: {bad['reason'].iloc[0]}"
        )
    report.access_coverage = access_coverage(workload, access)
    if report.access_coverage < 1 and not inputs.allow_missing_access:
        raise InputError(
            f"access events cover {report.access_coverage:.0%} of the days with GPU sessions"
            " (is the access-log export broken?); --allow-missing-access runs anyway",
            path=", ".join(str(p) for p in inputs.access),
        )
    table = _features(workload, access, settings, tenants, report)
    return FeatureTable(table, quarantine.combine(rejected), report)


def _features(
    workload: pd.DataFrame,
    access: pd.DataFrame,
    settings: Settings,
    tenants: pd.DataFrame | None,
    report: RunReport,
) -> pd.DataFrame:
    """The global pass over sessions with their workload features: every feature."""
    with report.stage("features"):
        if workload.empty:
            table = session_features(
                *cut_sessions(empty_table(TELEMETRY), settings.sessions),
                access,
                settings,
                tenants,
            )
        else:
            table = complete_features(
                workload[SESSION_COLUMNS],
                workload.drop(columns=SESSION_COLUMNS),
                access,
                settings,
                tenants,
            )
    report.sessions = len(table)
    return table


def build_incremental(
    inputs: Inputs,
    settings: Settings,
    state: State,
    report: RunReport | None = None,
    engine: Engine | None = None,
    progress: Progress | None = None,
) -> FeatureTable:
    """build_features for a scheduled run that carries `state` (`detector.state`): only files
    not read before (and rows after the watermark of files that changed) are read; sessions
    are cut from them with the carried rows; closed sessions keep their stored workload
    features. The returned table's `state` is the next run's."""
    report = report or RunReport()
    rejected: list[pd.DataFrame] = []
    after = state.watermark + pd.Timedelta(1, "ns") if state.watermark is not None else None
    since = (
        max(t for t in (after, inputs.since) if t is not None) if after or inputs.since else None
    )
    manifest = state.files  # stamped before reading: a file that grows meanwhile is read again
    tables: dict[str, list[pd.DataFrame]] = {}
    with report.stage("ingest"):
        for schema, paths, fmt in (
            (TELEMETRY, inputs.telemetry, inputs.telemetry_format),
            (ACCESS, inputs.access, inputs.access_format),
        ):
            files = [f.path for f in expand(paths, fmt)] if paths else []
            new, changed = carry.split_files(state, schema.name, files)
            manifest = carry.record_files(manifest, schema.name, new + changed)
            if schema is ACCESS:  # access files that changed: events after the latest kept
                latest = state.access["timestamp"].max() if len(state.access) else None
                changed_since = latest + pd.Timedelta(1, "ns") if latest is not None else None
            else:  # telemetry files that changed, and a Prometheus pull: after the watermark
                changed_since = since
            after_mark = replace(inputs, since=changed_since)
            parts = [
                _read(new, schema, replace(inputs, prometheus=None), settings, report, rejected)
                if new
                else None,
                _read(changed, schema, after_mark, settings, report, rejected,
                      {"since": changed_since, "until": inputs.until})
                if changed or (schema is TELEMETRY and inputs.prometheus)
                else None,
            ]  # fmt: skip
            tables[schema.name] = [p for p in parts if p is not None]
        tenants = (
            _read([inputs.tenants], TENANTS, inputs, settings, report, rejected)
            if inputs.tenants
            else None
        )
    telemetry = _concat(tables[TELEMETRY.name], TELEMETRY)
    rows, late, report.late_merged = carry.merge_late(
        state, telemetry, settings.sessions.gap_seconds
    )
    if len(late):
        rejected.append(late)
        report.rows_accepted[TELEMETRY.name] -= len(late)
        report.rows_quarantined[(TELEMETRY.name, carry.LATE_REASON)] += len(late)
    raw_access = _concat([state.access, *tables[ACCESS.name]], ACCESS)
    with report.stage("enrich"):
        db = open_database(inputs.geoip_db)
        access, stats = enrich_access(raw_access.reset_index(drop=True), db, settings, tenants)
        report.ips_total, report.ips_unknown = stats.ips_total, stats.ips_unknown_country
    carried = Batch(
        0, to_arrow(rows, TELEMETRY), np.zeros(len(rows), np.int64), quarantine.empty(), len(rows)
    )
    fresh, bad, _ = extract(
        Source(TELEMETRY, (), TELEMETRY.name),
        settings,
        report,
        engine=engine or Engine(),
        extra=[carried] if len(rows) else [],
        extra_name="(telemetry carried by the state, and new)",
        progress=progress,
    )
    # the rows were counted when read; duplicates among them leave the accepted count
    _count(report, TELEMETRY.name, Counts(accepted=-len(bad)), bad)
    rejected.append(bad)
    workload, nxt = carry.advance(state, rows, fresh, settings)
    latest = max(
        (
            t
            for t in (nxt.watermark, raw_access["timestamp"].max() if len(raw_access) else None)
            if t is not None
        ),
        default=None,
    )
    nxt = replace(
        nxt,
        access=carry.keep_access(raw_access, latest, settings),
        files=manifest,
        late_merged=report.late_merged,
        late_reported=len(late),
    )
    table = _features(workload, access, settings, tenants, report)
    return FeatureTable(table, quarantine.combine(rejected), report, state=nxt)


def _concat(frames: Sequence[pd.DataFrame], schema) -> pd.DataFrame:
    frames = [f for f in frames if len(f)]
    if not frames:
        return empty_table(schema)
    return pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]


def access_coverage(sessions: pd.DataFrame, access: pd.DataFrame) -> float:
    """Share of the UTC days with GPU sessions on which some access event was seen (1 when
    there is no session)."""
    if sessions.empty:
        return 1.0
    first, last = (
        sessions[c].dt.floor("D").to_numpy(dtype="datetime64[D]") for c in ("start", "end")
    )
    span = (last - first).astype(np.int64) + 1
    offsets = np.arange(span.sum()) - np.repeat(np.cumsum(span) - span, span)
    days = np.unique(np.repeat(first, span) + offsets.astype("timedelta64[D]"))
    return float(np.isin(days, _days(access["timestamp"])).mean())


def _days(ts: pd.Series) -> np.ndarray:
    return ts.dt.tz_convert(None).to_numpy(dtype="datetime64[D]")


def _read(
    paths: Sequence[Path],
    schema: TableSchema,
    inputs: Inputs,
    settings: Settings,
    report: RunReport,
    rejected: list[pd.DataFrame],
    window: dict[str, pd.Timestamp | None] | None = None,
) -> pd.DataFrame:
    """Read one table (with `window`: only rows in it), counting every row in `report`."""
    if window is None:
        window = {} if schema is TENANTS else {"since": inputs.since, "until": inputs.until}
        if schema is ACCESS:  # origin evidence uses the history, whatever the scoring window
            history = pd.Timedelta(days=settings.features.origin_history_days)
            window = {"since": inputs.since - history if inputs.since is not None else None}
    fmt, options = {
        TELEMETRY.name: (inputs.telemetry_format, inputs.telemetry_options),
        ACCESS.name: (inputs.access_format, inputs.access_options),
    }.get(schema.name, ("auto", None))
    loads = [read_table(paths, schema, fmt=fmt, options=options, **window)] if paths else []
    if schema is TELEMETRY and inputs.prometheus:
        loads.append(
            read_prometheus(
                inputs.prometheus, inputs.since, inputs.until, options=inputs.telemetry_options
            )
        )
    for loaded in loads:
        _count(report, schema.name, loaded.counts, loaded.quarantine)
        rejected.append(loaded.quarantine)
    return _concat([loaded.table for loaded in loads], schema)


def _count(report: RunReport, source: str, counts: Counts, rejected: pd.DataFrame) -> None:
    """The one place where a table's row counts enter the run report."""
    report.rows_read[source] += counts.read
    report.rows_accepted[source] += counts.accepted
    for reason, count in rejected["reason"].value_counts().items():
        report.rows_quarantined[(source, str(reason))] += int(count)


def read_labels(path: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    loaded = read_table([path], LABELS)
    return loaded.table, loaded.quarantine


HOLDOUT_SHARE = 0.25  # with labels: the latest quarter of the period is held out of every fit


def train(
    table: pd.DataFrame,
    settings: Settings,
    labels: pd.DataFrame | None = None,
    seed: int = 0,
    test_from: pd.Timestamp | None = None,
    holdout_share: float = HOLDOUT_SHARE,
    target_precision: float | None = None,
    alert_budget: float | None = None,
) -> tuple[StoredModel, Calibration | None]:
    """Fit the forest on sessions not labelled incident; with labels, fit the supervised
    layer (model/supervised.py) when each kind has enough, and set the threshold from them:
    best F1, `target_precision`, or `alert_budget` alerts per day over the training period.

    With labels, the split is by time: sessions starting at or after `test_from` (default:
    the start that leaves `holdout_share` of the sessions after it) are held out of every
    fit; their labelled ones measure the model (`heldout` in the metadata).
    """
    label = (
        label_sessions(table, labels)
        if labels is not None
        else pd.Series(pd.NA, index=table.index, dtype="string")
    )
    labelled = label.notna().to_numpy()
    later, cut = np.zeros(len(table), dtype=bool), None
    if labelled.any() and (test_from is not None or holdout_share > 0):
        cut = test_from if test_from is not None else table["start"].quantile(1 - holdout_share)
        later = (table["start"] >= cut).to_numpy(copy=True)
        if later.all():  # every session starts at or after the cut: nothing left to fit on
            log.warning("labels: the sessions start too close together to hold any out by time")
            later[:] = False
    fit_rows = table[label.ne("incident").fillna(True).to_numpy() & ~later]
    model = SessionRiskModel(
        reference=reference_case(settings),
        reference_risk=settings.scoring.alert_risk,
        gates=(
            ("origin_evidence", settings.scoring.alert_origin_evidence),
            ("training_evidence", settings.scoring.alert_training_evidence),
            ("group_gpu_hours", settings.scoring.alert_gpu_hours),
        ),
        random_state=seed,
    ).fit(fit_rows)
    calibration, supervised, threshold_source = None, None, "policy"
    alert_risk = settings.scoring.alert_risk
    earlier = labelled & ~later
    if labels is not None and labelled.any():
        incident = (label[earlier] == "incident").to_numpy()
        if incident.all() or not incident.any():
            raise InputError(
                "labels: the alert threshold is set on labelled incident and benign sessions, "
                f"got {int(incident.sum())} incident and {int((~incident).sum())} benign"
                + (" before the held-out period" if later.any() else "")
                + "; label both kinds, or train without --labels"
            )
        forest_risk = model.risk_score(table[earlier])
        risk = forest_risk
        fewest = min(int(incident.sum()), int((~incident).sum()))
        if fewest < FIT_MIN_PER_CLASS:
            log.warning(
                "labels: %d incident and %d benign sessions: no supervised layer (it needs %d "
                "of each, %d recommended); the labels set the threshold only",
                incident.sum(), (~incident).sum(), FIT_MIN_PER_CLASS, MIN_PER_CLASS,
            )  # fmt: skip
        else:
            if fewest < MIN_PER_CLASS:
                log.warning(
                    "labels: only %d sessions of the rarer kind; the supervised layer is noisy "
                    "below %d of each (label more)", fewest, MIN_PER_CLASS,
                )  # fmt: skip
            names = model_features(table, FEATURE_NAMES)
            supervised = SupervisedLayer(names, random_state=seed).fit(
                table.loc[earlier, names].assign(**{FOREST: forest_risk}), incident
            )
            # The threshold is set on out-of-fold probabilities, not on what the layer memorised.
            risk = blend(forest_risk, supervised.oof_)
        calibration = calibrate_threshold(risk, incident, target_precision)
        if target_precision is not None:
            alert_risk, threshold_source = calibration.threshold, "target-precision"
        elif fewest >= MIN_PER_CLASS:
            alert_risk, threshold_source = calibration.threshold, "labels"
        else:  # a best-F1 threshold on a handful of labels is noise: the policy's stays
            log.warning(
                "labels: %d of the rarer kind; the alert threshold stays at the policy's %.1f "
                "(best F1 on these labels: %.1f; labels set it from %d of each, or pass "
                "--target-precision or --alert-budget)",
                fewest, alert_risk, calibration.threshold, MIN_PER_CLASS,
            )  # fmt: skip
        if alert_budget is not None:
            past = table[~later]
            stored_now = StoredModel(model, alert_risk, {}, None, supervised)
            days = (past["end"].max() - past["start"].min()) / pd.Timedelta(days=1)
            alert_risk = budget_threshold(stored_now.risk_score(past), days, alert_budget)
            calibration = calibration_at(risk, incident, alert_risk)
            threshold_source = "alert-budget"
        alert_risk = float(np.clip(alert_risk, *ALERT_RISK_RANGE))
    heldout = None
    held = labelled & later
    if held.any():
        columns = ["session_id", "start", *[n for n in FEATURE_NAMES if n in table.columns]]
        heldout = table.loc[held, columns].reset_index(drop=True)
        heldout["incident"] = (label[held] == "incident").to_numpy()
    trained_at = pd.Timestamp.now(tz="UTC").strftime("%Y-%m-%dT%H:%M:%SZ")
    data_hash = hashlib.sha256(
        pd.util.hash_pandas_object(fit_rows[list(model.features)], index=False).to_numpy().tobytes()
    ).hexdigest()
    meta = {
        "model_version": f"{trained_at[:10].replace('-', '')}-{data_hash[:8]}",
        "trained_at": trained_at,
        "training": {
            "sessions": int(len(table)),
            "fit_sessions": int(len(fit_rows)),
            "labelled_incident": int((label == "incident").sum()),
            "labelled_benign": int((label == "benign").sum()),
            "data_sha256": data_hash,
            "period": _period(table),
        },
        "threshold_source": threshold_source,
        "calibration": calibration.as_dict() if calibration else None,
        "settings_source": list(settings.source),
        "drift": profile(table[~later], model_features(table, FEATURE_NAMES)),
    }
    stored = StoredModel(model, float(alert_risk), meta, heldout, supervised)
    if heldout is not None:
        risk = stored.risk_score(heldout)
        result = evaluate(risk, heldout["incident"], risk >= stored.alert_risk)
        meta["heldout"] = {
            "sessions": result.sessions,
            "incident": result.positive,
            "average_precision": result.average_precision,
            "roc_auc": result.roc_auc,
            "precision_at_alert": result.precision_at_alert,
            "recall_at_alert": result.recall_at_alert,
            "recall_at_1pct_fpr": result.recall_at_1pct_fpr,
            "test_from": _iso(cut),
        }
    return stored, calibration


def _period(table: pd.DataFrame) -> list[str]:
    if table.empty:
        return []
    return [_iso(table["start"].min()), _iso(table["end"].max())]


def _iso(t: pd.Timestamp) -> str:
    return pd.Timestamp(t).strftime("%Y-%m-%dT%H:%M:%SZ")


def reference_case(settings: Settings) -> tuple[float, float]:
    """The policy's reference case in the forest's features (features/risk.py): the session
    that should just alert, whatever the training fleet."""
    s = settings.scoring
    both = s.alert_origin_evidence * s.alert_training_evidence
    return both * float(compute_scale(s.alert_flop)), both * float(hours_scale(s.alert_gpu_hours))


def score(table: pd.DataFrame, stored: StoredModel, report: RunReport) -> pd.DataFrame:
    """The scores table of the data contract, highest risk first."""
    model = stored.model
    with report.stage("score"):
        anomaly = model.anomaly_score(table)
        risk = stored.risk_score(table)
    with report.stage("explain"):
        explained = top_features(table)
    head = [*SCORE_HEAD[:4], "job_id", *TEXT_COLUMNS, *SCORE_HEAD[4:]]
    features = [n for n in FEATURE_NAMES if n not in head]
    scores = table[head + features].copy()
    scores["anomaly_score"] = anomaly
    scores["risk_score"] = np.round(risk, 2)
    scores["severity"] = severity(risk)
    scores["alert"] = risk >= stored.alert_risk
    scores["top_features"] = explained
    scores["model_version"] = stored.version
    scores["run_id"] = report.run_id
    report.model_version = stored.version
    report.model_trained_at = stored.metadata.get("trained_at", "")
    return scores.sort_values("risk_score", ascending=False, kind="stable").reset_index(drop=True)


def finish(report: RunReport) -> RunReport:
    report.finished_at = time.time()
    report.success = True
    for stage, seconds in report.stage_seconds.items():
        log.info("stage %s: %.2f s", stage, seconds)
    return report
