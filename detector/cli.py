"""The `gpuwatch` command: parses options, calls the library, prints. Nothing else."""

from __future__ import annotations

import functools
import getpass
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

from . import __version__, labelling, quarantine, suppress
from .config import Settings, load_settings
from .engine import ENGINES, Engine
from .errors import GpuwatchError, InputError
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
    resolved = None
    if labels:
        label_table, rejected = read_labels(labels)
        table.quarantine = quarantine.combine([table.quarantine, rejected])
        resolved = labelling.resolve_labels(table.sessions, label_table)
        label_table = resolved.labels
        _warn_unmatched(app, labels, resolved)
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
        "labels_matched_by_range": resolved.by_range if resolved else 0,
        "labels_unmatched": len(resolved.unmatched) if resolved else 0,
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
@click.option(
    "--suppress",
    "rules_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Suppression rules (TOML): matching alerts are stored with alert false.",
)
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
    rules_path,
    export: ExportOptions,
) -> None:
    """Score sessions with a trained model; write scores, quarantine and metrics."""
    report = RunReport()
    try:
        rules = _load_rules(rules_path) if rules_path else None
        stored = store.load(model_dir)
        inputs = _inputs(telemetry, access, tenants, geoip_db, since, until)
        table = _build_features(app, inputs, report)
        scores = score(table.sessions, stored, report)
        if rules:
            scores = _apply_rules(scores, rules, report)
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
                    "suppressed": report.suppressed,
                    "rules_expired": report.rules_expired,
                    **_counts(report),
                },
                indent=2,
            )
        )
    else:
        _print_counts(app, report)
        _print_scores(app, scores, top, alerts)
        if silenced := {k: v for k, v in report.suppressed.items() if v}:
            app.console.print(
                "alerts suppressed by rules: "
                + ", ".join(f"{rule} ({n})" for rule, n in silenced.items())
            )
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


# Analyst commands: label, suppress, report. Each parses options and calls its library module.


@main.command("label")
@click.argument("session_ids", nargs=-1)
@click.option("--incident", "verdict", flag_value="incident", help="The sessions are incidents.")
@click.option("--benign", "verdict", flag_value="benign", help="The sessions are benign.")
@click.option("--note", help="Why: free text kept with the label.")
@click.option("--analyst", help="Who decided (default: your login name).")
@click.option("--scores", required=True, type=click.Path(exists=True, path_type=Path))
@click.option(
    "--labels",
    "labels_path",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Labels file (CSV) to append to; created when missing.",
)
@click.option(
    "--from-csv",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Import verdicts: CSV with session_id (or tenant_id, start, end), label, [note, analyst].",
)
@click.pass_obj
def label_command(
    app: App,
    session_ids: tuple[str, ...],
    verdict: str | None,
    note: str | None,
    analyst: str | None,
    scores: Path,
    labels_path: Path,
    from_csv: Path | None,
) -> None:
    """Record analyst verdicts (ids by any unique prefix) in a labels file for `train --labels`."""
    if bool(session_ids) == bool(from_csv):
        raise click.UsageError("give session ids or --from-csv (one of them)")
    if session_ids and not verdict:
        raise click.UsageError("give --incident or --benign")
    if from_csv and verdict:
        raise click.UsageError("--from-csv takes each verdict from its label column")
    table = _read_scores(scores)
    analyst = analyst or _login()
    now = pd.Timestamp.now(tz="UTC").floor("s")
    if from_csv:
        rows = labelling.import_labels(from_csv, table, str(scores), analyst, now)
    else:
        chosen = labelling.session_rows(table, session_ids, str(scores))
        chosen = chosen.drop_duplicates("session_id")
        rows = labelling.new_labels(chosen, verdict, analyst, note, now)
    labelling.append_labels(labels_path, rows)
    counts = rows["label"].value_counts()
    if not app.quiet:
        click.echo(
            f"{labels_path}: added "
            + ", ".join(f"{n} {label}" for label, n in counts.items())
            + f" label(s) by {analyst}"
        )


@main.group("suppress")
def suppress_group() -> None:
    """Suppression rules: silence known-good alerts, with a reason, an author and an expiry."""


def _rules_option(f):
    return click.option(
        "--rules",
        "rules_path",
        required=True,
        type=click.Path(dir_okay=False, path_type=Path),
        help="Rules file (TOML); its audit log is RULES.audit.jsonl beside it.",
    )(f)


@suppress_group.command("add")
@_rules_option
@click.option("--id", "rule_id", required=True, help="Short name: lower-case, digits, . _ -")
@click.option("--reason", required=True, help="Why these alerts are expected (required).")
@click.option("--author", help="Who adds the rule (default: your login name).")
@click.option("--expires", help="When the rule stops applying: YYYY-MM-DD (00:00 UTC) or a time.")
@click.option("--tenant", multiple=True, help="Tenant id; repeatable (any of them).")
@click.option("--entity", multiple=True, help="Entity id; repeatable.")
@click.option("--country", multiple=True, help="Every access country must be one of these.")
@click.option("--asn", multiple=True, help="Every access AS number must be one of these.")
@click.option("--as-org", multiple=True, help="Every access AS organisation must be one of these.")
@click.option("--when", "conditions", multiple=True, help="Condition, e.g. 'n_gpus <= 8'.")
def suppress_add(rules_path: Path, rule_id: str, author: str | None, **criteria: Any) -> None:
    """Add a rule to the rules file and log who, when and why."""
    author = author or _login()
    entry = {k: list(v) if isinstance(v, tuple) else v for k, v in criteria.items()}
    rule = suppress.add_rule(rules_path, {"id": rule_id, **entry}, author, suppress.utc_now())
    click.echo(f"{rules_path}: added rule {rule.id!r} by {author}")


@suppress_group.command("expire")
@click.argument("rule_id")
@_rules_option
@click.option("--reason", required=True, help="Why the rule ends.")
@click.option("--author", help="Who ends it (default: your login name).")
def suppress_expire(rule_id: str, rules_path: Path, reason: str, author: str | None) -> None:
    """End a rule now (it stays in the file as history) and log who, when and why."""
    author = author or _login()
    suppress.expire_rule(rules_path, rule_id, reason, author, suppress.utc_now())
    click.echo(f"{rules_path}: rule {rule_id!r} expired by {author}")


@suppress_group.command("list")
@_rules_option
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table")
@click.pass_obj
def suppress_list(app: App, rules_path: Path, fmt: str) -> None:
    """Show the rules, whether each is active, and whether the audit log is intact."""
    rules = suppress.load_rules(rules_path).rules
    log_entries, problem = suppress.audit_status(rules_path)
    now = suppress.utc_now()
    rows = [suppress.describe(rule, now) for rule in rules]
    if fmt == "json":
        click.echo(
            json.dumps(
                {"rules": rows, "audit_entries": len(log_entries), "audit_problem": problem},
                indent=2,
            )
        )
        return
    table = Table("id", "state", "expires", "author", "matches", "reason", title=str(rules_path))
    for row in rows:
        table.add_row(
            row["id"],
            row["state"],
            row["expires"] or "never",
            row["author"],
            row["matches"],
            row["reason"],
        )
    app.console.print(table)
    app.console.print(
        f"audit log: {len(log_entries)} change(s) in {suppress.audit_path(rules_path)}"
        + (f"; [bold red]{problem}[/]" if problem else "")
    )


@main.command("report")
@click.option("--scores", required=True, type=click.Path(exists=True, path_type=Path))
@click.option(
    "--telemetry",
    multiple=True,
    type=click.Path(exists=True, path_type=Path),
    help="Telemetry file or folder: per-GPU timelines of the cases.",
)
@click.option(
    "--access",
    multiple=True,
    type=click.Path(exists=True, path_type=Path),
    help="Access-event file or folder: origins of the cases over time.",
)
@click.option("--tenants", type=click.Path(exists=True, path_type=Path), help="KYC registry.")
@click.option(
    "--geoip-db", multiple=True, type=click.Path(exists=True, path_type=Path), help="As in score."
)
@click.option("--top", default=10, show_default=True, type=click.IntRange(0), help="Cases shown.")
@click.option("--out", required=True, type=click.Path(dir_okay=False, path_type=Path))
@click.pass_obj
def report_command(
    app: App,
    scores: Path,
    telemetry: tuple[Path, ...],
    access: tuple[Path, ...],
    tenants: Path | None,
    geoip_db: tuple[Path, ...],
    top: int,
    out: Path,
) -> None:
    """Write one self-contained HTML page: fleet overview and the top cases with evidence."""
    from .export.textfile import atomic_write
    from .report import render, select_cases
    from .report.inputs import case_events, case_samples

    table = _read_scores(scores)
    cases = select_cases(table, top)
    samples = case_samples(telemetry, cases) if telemetry else None
    events = case_events(access, cases, app.settings, tenants, geoip_db) if access else None
    page = render(table, app.settings, top=top, samples=samples, events=events, source=str(scores))
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(out, page.encode())
    if not app.quiet:
        click.echo(f"{out}: {len(table)} sessions, {len(cases)} cases ({len(page) / 1e6:.1f} MB)")


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
    try:
        if path.suffix != ".csv":
            return pd.read_parquet(path)
        table = pd.read_csv(path)
        for column in ("start", "end"):
            if column in table:
                table[column] = pd.to_datetime(table[column], utc=True, format="ISO8601")
        return table
    except (OSError, ValueError) as exc:  # pyarrow's errors are ValueError or OSError
        raise InputError(f"cannot read scores: {exc}", path=str(path)) from exc


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


def _warn_unmatched(app: App, path: Path, resolved: labelling.Resolved) -> None:
    """Labels that match no session are said, never dropped in silence."""
    if resolved.by_range:
        log.info("%s: %d label(s) matched by tenant and time range", path, resolved.by_range)
    if len(resolved.unmatched):
        first = resolved.unmatched.iloc[0]
        name = first["session_id"] if pd.notna(first["session_id"]) else first["tenant_id"]
        log.warning(
            "%s: %d label(s) match no session of this data and are not used (first: %s: %s)",
            path,
            len(resolved.unmatched),
            name,
            first["reason"],
        )


def _load_rules(path: Path) -> suppress.RuleSet:
    rules = suppress.load_rules(path)
    _, problem = suppress.audit_status(path)
    if problem:
        log.warning("%s", problem)
    return rules


def _apply_rules(scores: pd.DataFrame, rules: suppress.RuleSet, report: RunReport) -> pd.DataFrame:
    outcome = suppress.apply_rules(scores, rules, suppress.utc_now())
    report.suppressed, report.rules_expired = outcome.suppressed, outcome.expired
    return outcome.scores


def _login() -> str:
    """Who runs the command, for labels and the audit log when no name is given."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"
