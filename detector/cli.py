"""The `gpuwatch` command: parses options, calls the library, prints. Nothing else."""

from __future__ import annotations

import functools
import json
import logging
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click
import pandas as pd
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

from . import __version__, quarantine
from .config import Settings, load_settings
from .engine import ENGINES, Engine
from .errors import GpuwatchError
from .export import (
    ExportOptions,
    export_options,
    publish,
    publish_failure,
    serve_command,
    write_run_sidecar,
)
from .features import FEATURES
from .ingest import FORMATS
from .ingest.options import SourceOptions, load_tenant_map
from .ingest.prometheus_api import PrometheusSource
from .model import store
from .model.calibrate import average_precision
from .model.labels import match_truth
from .pipeline import FeatureTable, Inputs, build_features, finish, read_labels, score, train
from .runinfo import RunReport

log = logging.getLogger("gpuwatch")
EXIT_ALERTS = 1


class Group(click.Group):
    """Turns library errors into one clean line and exit code 2."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except GpuwatchError as exc:
            err = click.ClickException(str(exc))
            err.exit_code = exc.exit_code
            raise err from exc


@dataclass
class App:
    settings: Settings
    console: Console
    quiet: bool


@click.group(cls=Group)
@click.version_option(__version__, prog_name="gpuwatch")
@click.option(
    "--config",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    envvar="GPUWATCH_CONFIG",
    help="Policy and settings TOML (default: the bundled one).",
)
@click.option("-v", "--verbose", count=True, help="Log stages (-vv: debug).")
@click.option("-q", "--quiet", is_flag=True, help="Print nothing but errors (for cron).")
@click.pass_context
def main(ctx: click.Context, config: Path | None, verbose: int, quiet: bool) -> None:
    """Find tenants training large AI models on your GPUs from restricted jurisdictions."""
    levels = [logging.WARNING, logging.INFO, logging.DEBUG]
    level = logging.ERROR if quiet else levels[min(verbose, 2)]
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        settings = load_settings(config)
    except GpuwatchError as exc:
        raise click.UsageError(str(exc)) from exc
    console = Console(quiet=quiet)
    if not console.is_terminal:
        console = Console(quiet=quiet, width=160)  # pipes and logs: no wrapping at 80
    ctx.obj = App(settings, console, quiet)


_SOURCE_OPTIONS = (
    "telemetry_format",
    "access_format",
    "columns",
    "tenant_label",
    "tenant_map",
    "prometheus_url",
    "step",
    "bearer_token_file",
    "ca_file",
    "insecure_skip_verify",
)
_ENGINE_OPTIONS = ("engine", "scheduler", "partitions", "work_dir")


def input_options(f):
    """--telemetry/--access (repeatable, file or folder), --tenants, --geoip-db, window, and how
    to read foreign formats (kept in the click context for `_inputs`, so commands need not
    name them)."""
    inner = f

    @functools.wraps(inner)
    def command(*args, **kwargs):
        click.get_current_context().meta["gpuwatch.sources"] = {
            k: kwargs.pop(k) for k in _SOURCE_OPTIONS
        }
        click.get_current_context().meta["gpuwatch.engine"] = {
            k: kwargs.pop(k) for k in _ENGINE_OPTIONS
        }
        return inner(*args, **kwargs)

    f = command
    for option in reversed(
        [
            click.option(
                "--telemetry",
                multiple=True,
                type=click.Path(path_type=Path),
                help="Telemetry file or folder (.parquet, .csv, .jsonl, .prom, optionally .gz).",
            ),
            click.option(
                "--access",
                multiple=True,
                required=True,
                type=click.Path(path_type=Path),
                help="Access-event file or folder.",
            ),
            click.option("--tenants", type=click.Path(path_type=Path), help="Tenant KYC registry."),
            click.option(
                "--geoip-db",
                multiple=True,
                type=click.Path(path_type=Path),
                help="MaxMind/DB-IP .mmdb (country and/or ASN); default: bundled geoip2fast.",
            ),
            click.option("--since", type=click.DateTime(), help="Only data at or after (UTC)."),
            click.option("--until", type=click.DateTime(), help="Only data before (UTC)."),
            click.option(
                "--quarantine",
                "quarantine_path",
                type=click.Path(path_type=Path),
                help="Where rejected rows go (default: beside the output).",
            ),
            click.option(
                "--telemetry-format",
                default="auto",
                show_default=True,
                type=click.Choice(["auto", *FORMATS, "prometheus", "nvml"]),
                help="Format of --telemetry files; auto: extension, then content.",
            ),
            click.option(
                "--access-format",
                default="auto",
                show_default=True,
                type=click.Choice(["auto", *FORMATS, "cloudtrail", "vpcflow", "sshd"]),
                help="Format of --access files; auto: extension, then content.",
            ),
            click.option(
                "--columns",
                help="Column mapping for nvml telemetry: a TOML file or a "
                "bundled name (nvml-spar, alibaba-genai).",
            ),
            click.option(
                "--tenant-label",
                default="namespace",
                show_default=True,
                help="Prometheus label naming the tenant.",
            ),
            click.option(
                "--tenant-map",
                type=click.Path(exists=True, dir_okay=False, path_type=Path),
                help="CSV kind,key,tenant_id (kind: pod, namespace, host, account, "
                "instance, interface, address); wins over labels and accounts.",
            ),
            click.option(
                "--prometheus-url",
                help="Pull DCGM telemetry from this Prometheus (query_range; needs --since).",
            ),
            click.option(
                "--step",
                default=15.0,
                show_default=True,
                type=click.FloatRange(min=0.001),
                help="query_range step in seconds; at most the scrape interval.",
            ),
            click.option(
                "--bearer-token-file", type=click.Path(exists=True, dir_okay=False, path_type=Path)
            ),
            click.option(
                "--ca-file",
                type=click.Path(exists=True, dir_okay=False, path_type=Path),
                help="CA bundle to verify the Prometheus server's TLS certificate.",
            ),
            click.option(
                "--insecure-skip-verify",
                is_flag=True,
                help="Do not verify the Prometheus server's TLS certificate.",
            ),
            click.option(
                "--engine",
                default="local",
                show_default=True,
                type=click.Choice(ENGINES),
                help="Where feature extraction runs: this process, or a Dask cluster.",
            ),
            click.option(
                "--scheduler",
                help="Dask scheduler (tcp://HOST:PORT); default: start a "
                "LocalCluster. Needs --engine dask.",
            ),
            click.option(
                "--partitions",
                type=click.IntRange(min=1),
                help="Tenant partitions (default: one per ~1M telemetry rows).",
            ),
            click.option(
                "--work-dir",
                type=click.Path(file_okay=False, path_type=Path),
                help="Folder for partition files (default: temp; Dask workers must see it).",
            ),
        ]
    ):
        f = option(f)
    return f


def _inputs(telemetry, access, tenants, geoip_db, since, until) -> Inputs:
    utc = lambda t: pd.Timestamp(t, tz="UTC") if t else None  # noqa: E731
    o = click.get_current_context().meta["gpuwatch.sources"]
    if not telemetry and not o["prometheus_url"]:
        raise click.UsageError("give --telemetry or --prometheus-url")
    prometheus = None
    if o["prometheus_url"]:
        if not since:
            raise click.UsageError("--prometheus-url needs --since")
        until = until or pd.Timestamp.now(tz="UTC").tz_localize(None)
        prometheus = PrometheusSource(
            o["prometheus_url"],
            o["step"],
            o["bearer_token_file"],
            o["ca_file"],
            o["insecure_skip_verify"],
        )
    tenant_map = load_tenant_map(o["tenant_map"]) if o["tenant_map"] else None
    return Inputs(
        tuple(telemetry),
        tuple(access),
        tenants,
        tuple(geoip_db),
        utc(since),
        utc(until),
        o["telemetry_format"],
        o["access_format"],
        SourceOptions(o["tenant_label"], tenant_map, o["columns"]),
        SourceOptions(tenant_map=tenant_map),
        prometheus,
    )


@main.command("train")
@input_options
@click.option(
    "--labels",
    type=click.Path(path_type=Path),
    help="Analyst labels: incidents stay out of the fit and set the alert threshold.",
)
@click.option("--model-dir", required=True, type=click.Path(file_okay=False, path_type=Path))
@click.option("--seed", default=0, show_default=True, help="Random seed of the forest.")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table")
@click.pass_obj
def train_command(
    app: App,
    telemetry,
    access,
    tenants,
    geoip_db,
    since,
    until,
    quarantine_path,
    labels,
    model_dir,
    seed,
    fmt,
) -> None:
    """Train a model on a period of telemetry and access logs."""
    inputs = _inputs(telemetry, access, tenants, geoip_db, since, until)
    table = _build_features(app, inputs, RunReport())
    label_table = None
    if labels:
        label_table, rejected = read_labels(labels)
        table.quarantine = quarantine.combine([table.quarantine, rejected])
    stored, calibration = train(table.sessions, app.settings, label_table, seed)
    store.save(stored, model_dir)
    _write_quarantine(table, quarantine_path or model_dir / "quarantine.csv")
    finish(table.report)
    summary = {
        "model_dir": str(model_dir),
        "model_version": stored.version,
        "sessions": len(table.sessions),
        "alert_risk": stored.alert_risk,
        "calibration": calibration.as_dict() if calibration else None,
        **_counts(table.report),
    }
    if fmt == "json":
        click.echo(json.dumps(summary, indent=2))
        return
    _print_counts(app, table.report)
    app.console.print(
        f"trained model [bold]{stored.version}[/] on {len(table.sessions)} sessions -> {model_dir}"
    )
    if calibration:
        c = calibration
        app.console.print(
            f"alert threshold from labels: risk >= {c.threshold:.1f} "
            f"(F1 {c.f1:.2f}, precision {c.precision:.2f}, recall {c.recall:.2f}, "
            f"AP {c.average_precision:.2f}; {c.n_incident} incident, "
            f"{c.n_benign} benign)"
        )


@main.command("score")
@input_options
@click.option("--model-dir", required=True, type=click.Path(file_okay=False, path_type=Path))
@click.option(
    "--out",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Scores file (.parquet or .csv).",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["table", "json"]),
    default="table",
    help="What to print: a ranked table, or a JSON summary for scripts.",
)
@click.option("--top", default=15, show_default=True, help="Sessions in the printed table.")
@click.option("--fail-on-alert", is_flag=True, help="Exit 1 when any session alerts.")
@export_options
@click.pass_obj
def score_command(
    app: App,
    telemetry,
    access,
    tenants,
    geoip_db,
    since,
    until,
    quarantine_path,
    model_dir,
    out,
    fmt,
    top,
    fail_on_alert,
    export: ExportOptions,
) -> None:
    """Score sessions with a trained model; write scores, quarantine and metrics."""
    report = RunReport()
    try:
        stored = store.load(model_dir)
        inputs = _inputs(telemetry, access, tenants, geoip_db, since, until)
        table = _build_features(app, inputs, report)
        scores = score(table.sessions, stored, report)
        with report.stage("write"):
            _write_scores(scores, out)
            _write_quarantine(table, quarantine_path or out.with_suffix(".quarantine.csv"))
        finish(report)
        write_run_sidecar(out, report)
        publish(scores, report, export)
    except GpuwatchError:
        try:
            publish_failure(report, export)
        except GpuwatchError as exc:
            log.error("could not publish the failure metrics: %s", exc)
        raise
    alerts = int(scores["alert"].sum())
    if fmt == "json":
        click.echo(
            json.dumps(
                {
                    "out": str(out),
                    "sessions": len(scores),
                    "alerts": alerts,
                    "model_version": stored.version,
                    "run_id": report.run_id,
                    **_counts(report),
                },
                indent=2,
            )
        )
    else:
        _print_counts(app, report)
        _print_scores(app, scores, top, alerts)
    if fail_on_alert and alerts:
        sys.exit(EXIT_ALERTS)


@main.command("explain")
@click.argument("session_id")
@click.option("--scores", required=True, type=click.Path(exists=True, path_type=Path))
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table")
@click.pass_obj
def explain_command(app: App, session_id: str, scores: Path, fmt: str) -> None:
    """Why a session scored as it did: its features and what pushed its score."""
    table = _read_scores(scores)
    rows = table[table["session_id"].astype(str).str.startswith(session_id)]
    if len(rows) != 1:
        raise click.ClickException(
            f"{scores}: {len(rows)} sessions match {session_id!r}; give more of the id"
        )
    row = rows.iloc[0]
    top = json.loads(row["top_features"] or "[]")
    if fmt == "json":
        click.echo(
            json.dumps({k: _jsonable(v) for k, v in row.items()} | {"top_features": top}, indent=2)
        )
        return
    c = app.console
    c.print(
        f"session [bold]{row['session_id']}[/] of tenant [bold]{row['tenant_id']}[/]: "
        f"{row['start']} -> {row['end']}, {row['n_gpus']} GPUs on {row['n_hosts']} hosts, "
        f"{row['gpu_hours']:.1f} GPU-hours"
    )
    c.print(
        f"risk {row['risk_score']:.1f} ({row['severity']}), alert: {bool(row['alert'])}, "
        f"model {row['model_version']}"
    )
    pushed = Table("feature", "value", "contribution", "meaning", title="what pushed the score")
    for item in top:
        meaning = next((f.description for f in FEATURES if f.name == item["feature"]), "")
        pushed.add_row(item["feature"], _fmt(item["value"]), f"{item['contribution']:.3f}", meaning)
    c.print(pushed)
    everything = Table("feature", "value", "unit", "family", title="all features")
    for f in FEATURES:
        if f.name in row:
            everything.add_row(f.name, _fmt(row[f.name]), f.unit, f.family)
    c.print(everything)


@main.command("features")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table")
@click.pass_obj
def features_command(app: App, fmt: str) -> None:
    """List the session features: name, unit, family and meaning."""
    if fmt == "json":
        click.echo(json.dumps([f.__dict__ for f in FEATURES], indent=2))
        return
    table = Table("name", "unit", "family", "description")
    for f in FEATURES:
        table.add_row(f.name, f.unit, f.family, f.description)
    app.console.print(table)


@main.command("evaluate")
@click.option("--scores", required=True, type=click.Path(exists=True, path_type=Path))
@click.option(
    "--truth",
    required=True,
    type=click.Path(exists=True, path_type=Path),
    help="truth.csv from `gpuwatch simulate` (tenant_id, start, end, scenario, "
    "restricted_training).",
)
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table")
@click.pass_obj
def evaluate_command(app: App, scores: Path, truth: Path, fmt: str) -> None:
    """Rank quality of scores against known outcomes (average precision)."""
    table = _read_scores(scores)
    matched = match_truth(table, pd.read_csv(truth))
    ap = average_precision(table["risk_score"], matched["restricted_training"])
    per = (
        table.assign(scenario=matched["scenario"])
        .groupby("scenario")
        .agg(
            sessions=("risk_score", "size"),
            mean_risk=("risk_score", "mean"),
            max_risk=("risk_score", "max"),
            alerts=("alert", "sum"),
        )
    )
    if fmt == "json":
        click.echo(
            json.dumps(
                {"average_precision": ap, "scenarios": per.reset_index().to_dict("records")},
                indent=2,
                default=float,
            )
        )
        return
    out = Table(
        "scenario",
        "sessions",
        "mean risk",
        "max risk",
        "alerts",
        title=f"average precision for restricted training: {ap:.3f}",
    )
    for name, r in per.sort_values("mean_risk", ascending=False).iterrows():
        out.add_row(
            str(name),
            str(int(r["sessions"])),
            f"{r['mean_risk']:.1f}",
            f"{r['max_risk']:.1f}",
            str(int(r["alerts"])),
        )
    app.console.print(out)


@main.command("simulate")
@click.option("--out", required=True, type=click.Path(file_okay=False, path_type=Path))
@click.option("--tenants", "n_tenants", default=40, show_default=True, type=click.IntRange(1))
@click.option("--days", default=3.0, show_default=True, type=click.FloatRange(min=0.1))
@click.option("--seed", default=7, show_default=True)
@click.option(
    "--interval",
    default=60,
    show_default=True,
    type=click.IntRange(1),
    help="Seconds between telemetry samples.",
)
@click.option("--start", default="2026-10-05", show_default=True, help="First day (UTC).")
@click.pass_obj
def simulate_command(
    app: App, out: Path, n_tenants: int, days: float, seed: int, interval: int, start: str
) -> None:
    """Write a seeded synthetic fleet: telemetry, access, tenants and truth."""
    from .simulate import simulate

    summary = simulate(out, n_tenants, days, seed, interval_s=interval, start=start)
    if not app.quiet:
        click.echo(json.dumps(summary, indent=2, default=str))


main.add_command(serve_command)


def _build_features(app: App, inputs: Inputs, report: RunReport) -> FeatureTable:
    """build_features on the engine the options name, with progress bars on a terminal."""
    o = click.get_current_context().meta["gpuwatch.engine"]
    engine = Engine(o["engine"], o["scheduler"], o["partitions"], o["work_dir"])
    if app.quiet or not app.console.is_terminal:
        return build_features(inputs, app.settings, report, engine)
    columns = (
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=app.console, transient=True) as bar:

        def start(phase: str, total: int):
            task = bar.add_task(phase, total=total)
            return lambda n: bar.advance(task, n)

        return build_features(inputs, app.settings, report, engine, start)


def _write_scores(scores: pd.DataFrame, out: Path) -> None:
    """Write atomically (temp file, then rename) so `gpuwatch serve` never reads half a file."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    if out.suffix == ".csv":
        scores.to_csv(tmp, index=False)
    else:
        scores.to_parquet(tmp, index=False)
    os.replace(tmp, out)


def _read_scores(path: Path) -> pd.DataFrame:
    if path.suffix == ".csv":
        return pd.read_csv(path, parse_dates=["start", "end"])
    return pd.read_parquet(path)


def _write_quarantine(table: FeatureTable, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    quarantine.write(table.quarantine, path)
    if len(table.quarantine):
        log.warning("%d rejected rows written to %s", len(table.quarantine), path)


def _counts(report: RunReport) -> dict[str, Any]:
    return {
        "rows_read": dict(report.rows_read),
        "rows_accepted": dict(report.rows_accepted),
        "rows_quarantined": {f"{s}: {r}": n for (s, r), n in report.rows_quarantined.items()},
        "stage_seconds": {k: round(v, 3) for k, v in report.stage_seconds.items()},
    }


def _print_counts(app: App, report: RunReport) -> None:
    table = Table("input", "read", "accepted", "quarantined", title="input rows")
    for source, read in report.rows_read.items():
        bad = sum(n for (s, _), n in report.rows_quarantined.items() if s == source)
        table.add_row(source, f"{read:,}", f"{report.rows_accepted[source]:,}", f"{bad:,}")
    app.console.print(table)


def _print_scores(app: App, scores: pd.DataFrame, top: int, alerts: int) -> None:
    table = Table(
        "rank",
        "session",
        "tenant",
        "start",
        "hours",
        "GPUs",
        "GPU h",
        "risk",
        "severity",
        "top feature",
        title=f"{len(scores)} sessions scored, {alerts} alerting (top {top})",
    )
    for rank, row in enumerate(scores.head(top).itertuples(), 1):
        first = json.loads(row.top_features or "[]")
        table.add_row(
            str(rank),
            row.session_id[:12],
            str(row.tenant_id),
            row.start.strftime("%Y-%m-%d %H:%M"),
            f"{row.duration_s / 3600:.1f}",
            str(row.n_gpus),
            f"{row.gpu_hours:.0f}",
            f"{row.risk_score:.1f}",
            row.severity,
            first[0]["feature"] if first else "",
        )
    app.console.print(table)


def _fmt(value: Any) -> str:
    if value is None or (isinstance(value, float) and pd.isna(value)):
        return "n/a"
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _jsonable(value: Any) -> Any:
    if isinstance(value, pd.Timestamp):
        return value.isoformat()
    if hasattr(value, "item"):
        return value.item()
    return None if pd.isna(value) else value
