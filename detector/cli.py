"""The `gpuwatch` command: parses options, calls the library, prints. Nothing else.

Adding a command is writing one function under `@main.command`, stacked with the shared
decorators it needs; each builds one typed object from its options and passes it by name:

    @input_options    -> inputs: pipeline.Inputs    (--telemetry, --access, --since, ...)
    @engine_options   -> engine: engine.Engine      (--engine, --scheduler, ...)
    @export_options   -> export: ExportOptions      (--metrics-file, --pushgateway, --top-n, ...)
    @series_options   -> export: ExportOptions      (--top-n, --max-series, ... only)
    @quarantine_option, @format_option              plain shared options
    @click.pass_obj   -> app: App                   (settings, console, quiet)

Heavy libraries (pandas, pyarrow, scikit-learn, rich.progress, requests, ...) are imported
inside the commands that use them, so `gpuwatch --help` starts fast. `Gpuwatch.main` turns every
outcome into one exit code and every error into one line (see `detector.errors` for the codes).
"""

from __future__ import annotations

import contextlib
import functools
import getpass
import inspect
import json
import logging
import os
import re
import signal
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from .config import CONFIG_ENV, LOG_DIR_ENV, MAX_INPUT_MIB, SALT_ENV, Settings, load_settings
from .errors import (
    EXIT_ALERTS,
    EXIT_INTERNAL,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_USAGE,
    GpuwatchError,
    InputError,
)
from .export.options import DEFAULT_PORT, ExportOptions
from .redact import RedactFilter, redact, register

if TYPE_CHECKING:
    import pandas as pd
    from rich.console import Console

    from .engine import Engine
    from .labelling import Resolved
    from .pipeline import FeatureTable, Inputs
    from .runinfo import RunReport
    from .state import State
    from .suppress import RuleSet

log = logging.getLogger("gpuwatch")
F = TypeVar("F", bound=Callable[..., Any])


class Gpuwatch(click.Group):
    """The command group; `main` maps every outcome to one exit code and one line."""

    def main(  # type: ignore[override]
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> int:
        def run() -> Any:
            return super(Gpuwatch, self).main(
                args, prog_name or "gpuwatch", complete_var, standalone_mode=False, **extra
            )

        code = _run(run)
        if standalone_mode:
            sys.exit(code)
        return code


class Interrupted(BaseException):
    """Ctrl-C, raised by our SIGINT handler: a BaseException that no `except Exception` in a
    library swallows, and that click does not print as it does a KeyboardInterrupt."""


def _run(command: Callable[[], Any]) -> int:
    """Run `command`; errors become one line on stderr, and the result an exit code."""
    interrupted = False
    main_pid = os.getpid()

    def on_sigint(signum: int, frame: Any) -> None:
        nonlocal interrupted
        if os.getpid() != main_pid:  # a forked worker: end quietly, the parent reports
            os._exit(EXIT_INTERRUPTED)
        interrupted = True
        raise Interrupted

    in_main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGINT, on_sigint) if in_main_thread else None
    try:
        result = command()
        return result if isinstance(result, int) and not isinstance(result, bool) else EXIT_OK
    except (Interrupted, KeyboardInterrupt, click.Abort):
        interrupted = True
    except GpuwatchError as exc:
        if not interrupted:
            _error(str(exc))
            return exc.exit_code
    except click.ClickException as exc:
        if not interrupted:
            _error(_click_message(exc))
            return EXIT_USAGE
    except Exception as exc:  # noqa: BLE001 -- the one place every bug is caught
        if not interrupted:
            _error(_internal_error(exc))
            return EXIT_INTERNAL
    finally:
        if in_main_thread:
            signal.signal(signal.SIGINT, previous)
    if in_main_thread:  # a second Ctrl-C while exiting changes nothing
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    _error("interrupted")
    return EXIT_INTERRUPTED


def one_line(text: str) -> str:
    """A message fit for one line of stderr or a log: whitespace runs joined, secrets masked."""
    return redact(re.sub(r"\s*\n\s*", " ", text).strip())


def _error(message: str) -> None:
    click.echo(f"Error: {one_line(message)}", err=True)


def _click_message(exc: click.ClickException) -> str:
    message = exc.format_message()
    ctx = getattr(exc, "ctx", None)
    if isinstance(exc, click.UsageError) and ctx is not None:
        message += f" (see '{ctx.command_path} --help')"
    return message


def _internal_error(exc: BaseException) -> str:
    """Log the traceback to a file (secrets masked); return the line that names the file."""
    what = f"internal error ({type(exc).__name__}: {one_line(str(exc))[:200]})"
    folder = os.environ.get(LOG_DIR_ENV) or tempfile.gettempdir()
    try:
        fd, path = tempfile.mkstemp(
            prefix=f"gpuwatch-{time.strftime('%Y%m%dT%H%M%S')}-", suffix=".log", dir=folder
        )
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(redact("".join(traceback.format_exception(exc))))
    except OSError as err:
        return f"{what}; could not write the traceback to {folder} ({err.strerror})"
    return f"{what}; the traceback is in {path}; please report it"


@dataclass
class App:
    """What every command gets from the group: settings, where to print, and how much."""

    settings: Settings
    console: Console
    quiet: bool


@click.group(cls=Gpuwatch)
@click.version_option(package_name="gpuwatch", prog_name="gpuwatch")
@click.option(
    "--config",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    envvar=CONFIG_ENV,
    help="Policy and settings TOML (default: the bundled one).",
)
@click.option("-v", "--verbose", count=True, help="Log stages (-vv: debug).")
@click.option("-q", "--quiet", is_flag=True, help="Print nothing but errors (for cron).")
@click.pass_context
def main(ctx: click.Context, config: Path | None, verbose: int, quiet: bool) -> None:
    """Find tenants training large AI models on your GPUs from restricted jurisdictions."""
    from rich.console import Console

    levels = [logging.WARNING, logging.INFO, logging.DEBUG]
    level = logging.ERROR if quiet else levels[min(verbose, 2)]
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, RedactFilter) for f in handler.filters):
            handler.addFilter(RedactFilter())
    try:
        settings = load_settings(config)
    except GpuwatchError as exc:
        raise click.UsageError(str(exc)) from exc
    console = Console(quiet=quiet)
    if not console.is_terminal:
        console = Console(quiet=quiet, width=160)  # pipes and logs: no wrapping at 80
    ctx.obj = App(settings, console, quiet)


# --- parameter types -------------------------------------------------------------------------


class Instant(click.ParamType):
    """A date or time in ISO 8601 (`2026-10-06`, `...T00:00:00Z`, `...T08:00+08:00`), as UTC;
    without an offset it is UTC."""

    name = "TIME"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, datetime):
            t = value
        else:
            try:
                t = datetime.fromisoformat(str(value).strip())
            except ValueError:
                self.fail(
                    f"{value!r} is not an ISO 8601 date or time (e.g. 2026-10-06, "
                    "2026-10-06T00:00:00Z, 2026-10-06T08:00:00+08:00)",
                    param,
                    ctx,
                )
        return t.replace(tzinfo=UTC) if t.tzinfo is None else t.astimezone(UTC)


class Output(click.Path):
    """A file (or folder) gpuwatch will write: checked when the options are parsed, before any
    work starts: its folder must exist and be writable."""

    def __init__(self, *, folder: bool = False) -> None:
        super().__init__(file_okay=not folder, dir_okay=folder, path_type=Path)

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        path = Path(os.fsdecode(super().convert(value, param, ctx)))
        parent = path.absolute().parent
        if path.exists():
            if not os.access(path, os.W_OK):
                self.fail(f"{path} is not writable", param, ctx)
        elif not parent.is_dir():
            self.fail(f"folder {parent} does not exist", param, ctx)
        elif not os.access(parent, os.W_OK | os.X_OK):
            self.fail(f"folder {parent} is not writable", param, ctx)
        return path


class LazyChoice(click.Choice):
    """A choice among names a library module declares, imported only when first needed (so
    that `gpuwatch --help` does not import the engines)."""

    def __init__(self, load: Callable[[], Sequence[str]]) -> None:
        self._load = load
        self.case_sensitive = True

    @functools.cached_property
    def choices(self) -> tuple[str, ...]:  # type: ignore[override]
        return tuple(self._load())


def _telemetry_formats() -> list[str]:
    from .ingest.files import FORMATS

    return ["auto", *FORMATS, "prometheus", "nvml"]


def _access_formats() -> list[str]:
    from .ingest.files import FORMATS

    return ["auto", *FORMATS, "cloudtrail", "vpcflow", "sshd"]


def _engines() -> Sequence[str]:
    from .engine import ENGINES

    return ENGINES


# --- shared option decorators ----------------------------------------------------------------


def builds(name: str, build: Callable[..., Any], *options: Callable[[F], F]) -> Callable[[F], F]:
    """A decorator adding `options` to a command, which then receives `name=build(...)`: the
    parameters of `build` are the options' names, removed from the command's arguments."""
    params = list(inspect.signature(build).parameters)

    def decorator(f: F) -> F:
        @functools.wraps(f)
        def command(*args: Any, **kwargs: Any) -> Any:
            kwargs[name] = build(**{p: kwargs.pop(p) for p in params})
            return f(*args, **kwargs)

        decorated: Any = command
        for option in reversed(options):
            decorated = option(decorated)
        return decorated

    return decorator


def _build_inputs(
    telemetry: tuple[Path, ...],
    access: tuple[Path, ...],
    tenants: Path | None,
    geoip_db: tuple[Path, ...],
    since: datetime | None,
    until: datetime | None,
    allow_missing_access: bool,
    telemetry_format: str,
    access_format: str,
    columns: str | None,
    tenant_label: str,
    tenant_map: Path | None,
    prometheus_url: str | None,
    step: float,
    bearer_token_file: Path | None,
    ca_file: Path | None,
    insecure_skip_verify: bool,
    max_input_mib: int,
) -> Inputs:
    import pandas as pd

    from .ingest.files import MIB, Limits
    from .ingest.options import SourceOptions, load_tenant_map
    from .ingest.prometheus_api import PrometheusSource
    from .pipeline import Inputs

    if not telemetry and not prometheus_url:
        raise click.UsageError("give --telemetry or --prometheus-url")
    prometheus = None
    if prometheus_url:
        if not since:
            raise click.UsageError("--prometheus-url needs --since")
        until = until or datetime.now(UTC)
        prometheus = PrometheusSource(
            prometheus_url, step, bearer_token_file, ca_file, insecure_skip_verify
        )
    if since and until and since >= until:
        raise click.BadParameter(
            f"the window is empty: --since {since.isoformat()} is not before "
            f"--until {until.isoformat()}",
            param_hint="'--since'/'--until'",
        )
    loaded_map = load_tenant_map(tenant_map) if tenant_map else None
    limits = Limits(max_bytes=max_input_mib * MIB)
    return Inputs(
        telemetry,
        access,
        tenants,
        geoip_db,
        pd.Timestamp(since) if since else None,
        pd.Timestamp(until) if until else None,
        telemetry_format,
        access_format,
        SourceOptions(tenant_label, loaded_map, columns, limits),
        SourceOptions(tenant_map=loaded_map, limits=limits),
        prometheus,
        allow_missing_access=allow_missing_access,
    )


input_options = builds(
    "inputs",
    _build_inputs,
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
    click.option(
        "--since", type=Instant(), help="Only data at or after (ISO 8601; UTC unless an offset)."
    ),
    click.option(
        "--until", type=Instant(), help="Only data before (ISO 8601; UTC unless an offset)."
    ),
    click.option(
        "--allow-missing-access",
        is_flag=True,
        help="Run even when access events do not cover the telemetry window.",
    ),
    click.option(
        "--telemetry-format",
        default="auto",
        show_default=True,
        type=LazyChoice(_telemetry_formats),
        help="Format of --telemetry files; auto: extension, then content.",
    ),
    click.option(
        "--access-format",
        default="auto",
        show_default=True,
        type=LazyChoice(_access_formats),
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
        "--bearer-token-file",
        type=click.Path(exists=True, dir_okay=False, path_type=Path),
        help="File holding the bearer token for --prometheus-url.",
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
        "--max-input-mib",
        default=MAX_INPUT_MIB,
        show_default=True,
        type=click.IntRange(min=1),
        help="Refuse an input file that holds more (after gzip decompression).",
    ),
)


def _build_engine(
    engine: str, scheduler: str | None, partitions: int | None, work_dir: Path | None
) -> Engine:
    from .engine import Engine

    return Engine(engine, scheduler, partitions, work_dir)


engine_options = builds(
    "engine",
    _build_engine,
    click.option(
        "--engine",
        default="local",
        show_default=True,
        type=LazyChoice(_engines),
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
)


def _build_series(
    top_n: int, max_series: int, pseudonymize_tenants: bool, salt: str | None
) -> ExportOptions:
    if pseudonymize_tenants and not salt:
        raise click.UsageError(f"--pseudonymize-tenants needs --salt or ${SALT_ENV}")
    register(salt)
    return ExportOptions(
        top_n=top_n,
        max_series=max_series,
        pseudonymize_salt=salt if pseudonymize_tenants else None,
    )


_SERIES_OPTIONS = (
    click.option(
        "--top-n",
        type=click.IntRange(min=0),
        default=ExportOptions.top_n,
        show_default=True,
        help="Per-tenant series for the N riskiest tenants (plus all in alert).",
    ),
    click.option(
        "--max-series",
        type=click.IntRange(min=1),
        default=ExportOptions.max_series,
        show_default=True,
        help="Cap on alerting-session series and on alerting-tenant series.",
    ),
    click.option(
        "--pseudonymize-tenants",
        is_flag=True,
        help="Replace tenant and session ids in labels by salted HMAC pseudonyms.",
    ),
    click.option(
        "--salt",
        envvar=SALT_ENV,
        show_envvar=True,
        help="Secret salt for --pseudonymize-tenants.",
    ),
)
series_options = builds("export", _build_series, *_SERIES_OPTIONS)


def _build_export(
    metrics_file: Path | None,
    pushgateway: str | None,
    job: str,
    grouping: tuple[str, ...],
    top_n: int,
    max_series: int,
    pseudonymize_tenants: bool,
    salt: str | None,
) -> ExportOptions:
    pairs: dict[str, str] = {}
    for item in grouping:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"expected KEY=VALUE, got {item!r}", param_hint="--grouping")
        pairs[key] = value
    return replace(
        _build_series(top_n, max_series, pseudonymize_tenants, salt),
        metrics_file=metrics_file,
        pushgateway=pushgateway,
        job=job,
        grouping=pairs,
    )


def policy_export(export: ExportOptions, settings: Settings) -> ExportOptions:
    """The export with the policy's numbers: the origin evidence that labels a session
    origin="restricted" (as the alert gate) and the accounting FLOP thresholds."""
    return replace(
        export,
        restricted_evidence=settings.scoring.alert_origin_evidence,
        flop_thresholds=settings.accounting.thresholds_flop,
    )


export_options = builds(
    "export",
    _build_export,
    click.option(
        "--metrics-file",
        type=Output(),
        help="Write metrics atomically to this file (node_exporter textfile).",
    ),
    click.option(
        "--pushgateway",
        metavar="URL",
        help="Push metrics to this Pushgateway (e.g. http://pushgateway:9091).",
    ),
    click.option(
        "--job",
        default=ExportOptions.job,
        show_default=True,
        help="Pushgateway job name (grouping key).",
    ),
    click.option(
        "--grouping",
        multiple=True,
        metavar="KEY=VALUE",
        help="Extra Pushgateway grouping-key label; repeatable.",
    ),
    *_SERIES_OPTIONS,
)

quarantine_option = click.option(
    "--quarantine",
    "quarantine_path",
    type=Output(),
    help="Where rejected rows go (default: beside the output).",
)


def registry_option(write: bool) -> Callable[[F], F]:
    """--registry DIR: the model registry (a folder of model folders and registry.json)."""
    return click.option(
        "--registry",
        default="models",
        show_default=True,
        envvar="GPUWATCH_REGISTRY",
        type=Output(folder=True) if write else click.Path(file_okay=False, path_type=Path),
        help="The model registry (env GPUWATCH_REGISTRY).",
    )


def model_options(f: F) -> F:
    """--registry, --model ID, --model-dir DIR: which model scores (see `_load_model`)."""
    f = click.option(
        "--model-dir",
        type=click.Path(file_okay=False, path_type=Path),
        help="A model folder outside the registry.",
    )(f)
    f = click.option(
        "--model", "model_id", help="A model of the registry by id (default: the promoted)."
    )(f)
    return registry_option(write=False)(f)


def _load_model(registry: Path, model_id: str | None, model_dir: Path | None) -> Any:
    """The model `--model-dir` names, else `--model` of the registry, else its promoted one."""
    from .model import store
    from .model.registry import Registry

    if model_dir:
        if model_id:
            raise click.UsageError("--model and --model-dir are exclusive")
        return store.load(model_dir)
    return Registry(registry).load(model_id)


def _num(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def format_option(f: F) -> F:
    """--format table|json: a table for people, or JSON for scripts."""
    return click.option(
        "--format",
        "fmt",
        type=click.Choice(["table", "json"]),
        default="table",
        show_default=True,
        help="What to print: tables, or JSON for scripts.",
    )(f)


# --- commands --------------------------------------------------------------------------------


@main.command("train")
@input_options
@engine_options
@quarantine_option
@click.option(
    "--labels",
    type=click.Path(path_type=Path),
    help="Analyst labels: incidents stay out of the fit, set the alert threshold and, with "
    "enough of each kind, train the supervised layer.",
)
@registry_option(write=True)
@click.option(
    "--model-dir",
    type=Output(folder=True),
    help="Write the model to this folder instead of a new folder of the registry.",
)
@click.option(
    "--test-from",
    type=Instant(),
    help="With --labels: sessions starting at or after this time are held out of every fit "
    "and measure the model (default: the latest --holdout-share of the sessions).",
)
@click.option(
    "--holdout-share",
    default=0.25,
    show_default=True,
    type=click.FloatRange(0.0, 0.9),
    help="With --labels: the share of sessions, the latest, held out (0: none).",
)
@click.option(
    "--target-precision",
    type=click.FloatRange(0.0, 1.0, min_open=True),
    help="With --labels: the alert threshold that reaches this precision on the labels.",
)
@click.option(
    "--alert-budget",
    type=click.FloatRange(0.0, min_open=True),
    help="With --labels: the alert threshold that raises at most this many alerts a day.",
)
@click.option(
    "--promote",
    is_flag=True,
    help="Promote the new model unless it ranks held-out labels worse (`models promote`).",
)
@click.option("--seed", default=0, show_default=True, help="Random seed of the forest.")
@format_option
@click.pass_obj
def train_command(
    app: App,
    inputs: Inputs,
    engine: Engine,
    quarantine_path: Path | None,
    labels: Path | None,
    registry: Path,
    model_dir: Path | None,
    test_from: datetime | None,
    holdout_share: float,
    target_precision: float | None,
    alert_budget: float | None,
    promote: bool,
    seed: int,
    fmt: str,
) -> None:
    """Train a model on a period of telemetry and access logs, into the model registry."""
    import pandas as pd

    if promote and model_dir:
        raise click.UsageError("--promote needs the registry, not --model-dir")
    if (target_precision or alert_budget) and not labels:
        raise click.UsageError("--target-precision and --alert-budget need --labels")
    if target_precision and alert_budget:
        raise click.UsageError("give one of --target-precision and --alert-budget")
    from . import quarantine
    from .labelling import resolve_labels
    from .model import store
    from .model.registry import Registry
    from .pipeline import finish, read_labels, train
    from .runinfo import RunReport

    table = _build_features(app, inputs, engine, RunReport())
    label_table, resolved = None, None
    if labels:
        label_table, rejected = read_labels(labels)
        table.quarantine = quarantine.combine([table.quarantine, rejected])
        resolved = resolve_labels(table.sessions, label_table)
        label_table = resolved.labels
        _warn_unmatched(labels, resolved)
    stored, calibration = train(
        table.sessions,
        app.settings,
        label_table,
        seed,
        test_from=pd.Timestamp(test_from) if test_from else None,
        holdout_share=holdout_share,
        target_precision=target_precision,
        alert_budget=alert_budget,
    )
    promoted: bool | None = None  # None: outside the registry
    if model_dir:
        store.save(stored, model_dir)
    else:
        models = Registry(registry)
        model_dir = models.root / models.add(stored)
        if promote and models.state()["promoted"] != stored.version:
            models.promote(stored.version)
        promoted = models.state()["promoted"] == stored.version
    quarantine_default = (
        model_dir / "quarantine.csv"
        if promoted is None
        else registry / f"{stored.version}.quarantine.csv"
    )
    _write_quarantine(table, quarantine_path or quarantine_default)
    finish(table.report)
    summary = {
        "model_dir": str(model_dir),
        "model_version": stored.version,
        "promoted": promoted,
        "heldout": stored.metadata.get("heldout"),
        "supervised": stored.supervised is not None,
        "threshold_source": stored.metadata["threshold_source"],
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
        + (" (promoted)" if promoted else "")
    )
    if held := stored.metadata.get("heldout"):
        app.console.print(
            f"held out from {held['test_from']}: {held['sessions']} labelled sessions "
            f"({held['incident']} incident), average precision "
            f"{_num(held['average_precision'])}, recall at 1 % FPR "
            f"{_num(held['recall_at_1pct_fpr'])}"
        )
    if promoted is False:  # --promote refused it, or was not asked
        app.console.print(
            f"not promoted: `gpuwatch models compare {stored.version}`, then "
            f"`gpuwatch models promote {stored.version}` to score with it by default"
        )
    if stored.supervised:
        sup = stored.supervised
        app.console.print(
            f"supervised layer: {len(sup.features)} features and the forest's risk, "
            f"{sup.n_incident_} incident and {sup.n_benign_} benign labels"
        )
    if calibration and stored.metadata["threshold_source"] != "policy":
        c = calibration
        app.console.print(
            f"alert threshold ({stored.metadata['threshold_source']}): risk >= {c.threshold:.1f} "
            f"(F1 {c.f1:.2f}, precision {c.precision:.2f}, recall {c.recall:.2f}, "
            f"AP {c.average_precision:.2f}; {c.n_incident} incident, "
            f"{c.n_benign} benign)"
        )
    elif calibration:
        app.console.print(
            f"alert threshold (policy): risk >= {stored.alert_risk:.1f}; too few labels to move it"
        )


@main.group("models")
def models_group() -> None:
    """The model registry: list, show, compare, promote and roll back models."""


@models_group.command("list")
@registry_option(write=False)
@format_option
@click.pass_obj
def models_list(app: App, registry: Path, fmt: str) -> None:
    """Every model of the registry; * marks the promoted one."""
    from rich.table import Table

    from .model.registry import Registry, summary

    models = Registry(registry)
    current = models.state().get("promoted")
    rows = []
    for model_id in models.ids():
        try:
            rows.append(summary(models.load(model_id)) | {"promoted": model_id == current})
        except GpuwatchError as exc:
            rows.append({"model": model_id, "promoted": model_id == current, "error": str(exc)})
    if fmt == "json":
        click.echo(json.dumps(rows, indent=2))
        return
    table = Table("", "model", "trained", "sessions", "labels i/b", "alert at", "held-out AP")
    for r in rows:
        if "error" in r:
            table.add_row("*" if r["promoted"] else "", r["model"], f"[red]{r['error']}[/]")
            continue
        table.add_row(
            "*" if r["promoted"] else "",
            r["model"],
            r["trained_at"],
            str(r["sessions"]),
            "{}/{}".format(*r["labels"]),
            f"{r['alert_risk']:.1f} ({r['threshold_source']})",
            _num(r["heldout_ap"]),
        )
    app.console.print(table)


@models_group.command("show")
@click.argument("model_id", required=False)
@registry_option(write=False)
@format_option
@click.pass_obj
def models_show(app: App, model_id: str | None, registry: Path, fmt: str) -> None:
    """A model's card (default: the promoted model); --format json: its metadata."""
    from .model.registry import Registry
    from .model.store import CARD_FILE

    models = Registry(registry)
    stored = models.load(model_id)
    if fmt == "json":
        click.echo(json.dumps(stored.metadata, indent=2))
        return
    click.echo((models.path(model_id) / CARD_FILE).read_text())


@models_group.command("compare")
@click.argument("candidate")
@click.argument("current", required=False)
@registry_option(write=False)
@format_option
@click.pass_obj
def models_compare(app: App, candidate: str, current: str | None, registry: Path, fmt: str) -> None:
    """Two models on the same held-out labelled sessions (default CURRENT: the promoted)."""
    from dataclasses import asdict

    from .model.registry import Registry

    models = Registry(registry)
    current = models.resolve(current) if current else models.state().get("promoted")
    result = models.compare(candidate, current)
    if fmt == "json":
        click.echo(json.dumps(asdict(result) | {"worse": result.worse}, indent=2))
        return
    if not result.sessions:
        app.console.print("neither model has held-out labelled sessions: nothing to compare on")
        return
    app.console.print(
        f"on {result.sessions} held-out labelled sessions ({result.incident} incident): "
        f"{result.candidate} AP {_num(result.candidate_ap)}, "
        f"{result.current} AP {_num(result.current_ap)}"
        + (" [red](worse)[/]" if result.worse else "")
    )


@models_group.command("promote")
@click.argument("model_id")
@click.option("--force", is_flag=True, help="Promote even if it ranks the held-out labels worse.")
@registry_option(write=False)
@click.pass_obj
def models_promote(app: App, model_id: str, force: bool, registry: Path) -> None:
    """Make a model the default of `gpuwatch score`, if it does not rank held-out labels worse."""
    from .model.registry import Registry

    result = Registry(registry).promote(model_id, force)
    what = (
        f"held-out AP {_num(result.candidate_ap)} vs {_num(result.current_ap)} on "
        f"{result.sessions} sessions"
        if result.sessions
        else "no held-out labels to compare on"
    )
    app.console.print(f"promoted {result.candidate} (was {result.current}; {what})")


@models_group.command("rollback")
@registry_option(write=False)
@click.pass_obj
def models_rollback(app: App, registry: Path) -> None:
    """Return to the model promoted before the current one."""
    from .model.registry import Registry

    app.console.print(f"promoted {Registry(registry).rollback()} again")


@main.command("score")
@input_options
@engine_options
@quarantine_option
@model_options
@click.option("--out", required=True, type=Output(), help="Scores file (.parquet or .csv).")
@format_option
@click.option("--top", default=15, show_default=True, help="Sessions in the printed table.")
@click.option("--fail-on-alert", is_flag=True, help=f"Exit {EXIT_ALERTS} when any session alerts.")
@click.option(
    "--suppress",
    "rules_path",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Suppression rules (TOML): matching alerts are stored with alert false.",
)
@click.option(
    "--wait",
    type=click.FloatRange(min=0),
    default=0.0,
    show_default=True,
    metavar="SECONDS",
    help="Wait this long for another run writing the same --out, then fail (exit 2).",
)
@click.option(
    "--state",
    "state_dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="State folder carried from run to run: read only new input, keep sessions that "
    "span runs whole, give alerts an identity (new, ongoing, resolved).",
)
@export_options
@click.pass_obj
def score_command(
    app: App,
    inputs: Inputs,
    engine: Engine,
    quarantine_path: Path | None,
    registry: Path,
    model_id: str | None,
    model_dir: Path | None,
    out: Path,
    fmt: str,
    top: int,
    fail_on_alert: bool,
    rules_path: Path | None,
    wait: float,
    state_dir: Path | None,
    export: ExportOptions,
) -> None:
    """Score sessions with a trained model; write scores, quarantine and metrics (as one set)."""
    import pandas as pd

    from . import state as carry
    from .export.publish import publish, publish_failure
    from .export.sidecar import write_run_sidecar
    from .outputs import OutputSet
    from .pipeline import finish, score
    from .runinfo import RunReport

    report = RunReport()
    export = policy_export(export, app.settings)
    outputs = OutputSet(
        out, quarantine_path or out.with_suffix(".quarantine.csv"), export.metrics_file
    )
    with outputs.locked(wait):
        try:
            rules = _load_rules(rules_path) if rules_path else None
            stored = _load_model(registry, model_id, model_dir)
            with contextlib.ExitStack() as stack:
                con = stack.enter_context(carry.opened(state_dir)) if state_dir else None
                prior = carry.load(con) if con else None
                table = _build_features(app, inputs, engine, report, prior)
                scores = score(table.sessions, stored, report)
                if rules:
                    scores = _apply_rules(scores, rules, report)
                if con and prior and table.state:
                    seen = pd.Timestamp(report.started_at, unit="s", tz="UTC").isoformat()
                    scores, alerts = carry.track_alerts(scores, prior.alerts, seen)
                with outputs.stage(report.run_id) as stage:
                    with report.stage("write"):
                        _write_scores(scores, stage.scores)
                        _write_quarantine(table, stage.quarantine, outputs.quarantine)
                    finish(report)
                    write_run_sidecar(stage.scores, report)
                    publish(
                        scores,
                        report,
                        replace(export, metrics_file=stage.metrics, pushgateway=None),
                    )
                    outputs.commit(stage, report.run_id)
                if con and prior and table.state:  # committed after the outputs
                    carry.save(con, replace(table.state, alerts=alerts, runs=prior.runs + 1))
            publish(scores, report, replace(export, metrics_file=None))
        except GpuwatchError:
            try:
                if export.metrics_file is None:
                    publish_failure(report, export)
                else:  # a new set: the last scores, report and quarantine, failed-run metrics
                    failed = f"{report.run_id}-failed"
                    with outputs.stage(failed) as stage:
                        outputs.carry(stage)
                        publish_failure(report, replace(export, metrics_file=stage.metrics))
                        outputs.commit(stage, failed)
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
                    **(_state_counts(scores, report) if state_dir else {}),
                },
                indent=2,
            )
        )
    else:
        _print_counts(app, report)
        _print_scores(app, scores, top, alerts)
        if state_dir:
            counts = _state_counts(scores, report)
            app.console.print(
                "alerts: "
                + ", ".join(f"{n} {status}" for status, n in counts["alert_status"].items())
                + f"; late rows merged {report.late_merged}, quarantined "
                f"{counts['late_rows_quarantined']}"
            )
        if silenced := {rule: n for rule, n in report.suppressed.items() if n}:
            app.console.print(
                "alerts suppressed by rules: "
                + ", ".join(f"{rule} ({n})" for rule, n in silenced.items())
            )
    if fail_on_alert and alerts:
        click.get_current_context().exit(EXIT_ALERTS)


@main.command("explain")
@click.argument("session_ids", nargs=-1)
@click.option("--scores", required=True, type=click.Path(exists=True, path_type=Path))
@click.option(
    "--all-alerts", is_flag=True, help="Every alerting session's case, highest risk first."
)
@format_option
@click.pass_obj
def explain_command(
    app: App, session_ids: tuple[str, ...], scores: Path, all_alerts: bool, fmt: str
) -> None:
    """A session's case: its workload, origin and entity evidence, and what pushed its score.

    SESSION_IDS match by any unique prefix, case-insensitively. With --format json, one id
    gives one object and several ids (or --all-alerts) a list.
    """
    from . import cases, labelling
    from . import columns as c

    if bool(session_ids) == all_alerts:
        raise click.UsageError("give session ids or --all-alerts (one of them)")
    table = _read_scores(scores)
    if all_alerts:
        alerting = table[c.ALERT].fillna(False).astype(bool)
        rows = table[alerting].sort_values(c.RISK, ascending=False, kind="stable")
    else:
        rows = labelling.session_rows(table, session_ids, str(scores))
    built = cases.build_cases(rows)
    if fmt == "json":
        data = [case.to_dict() for case in built]
        one = len(session_ids) == 1 and not all_alerts
        click.echo(json.dumps(data[0] if one else data, indent=2))
    elif not built:
        click.echo(f"{scores}: no session alerts")
    else:
        click.echo(("\n\n" + "=" * cases.TEXT_WIDTH + "\n\n").join(map(cases.render_text, built)))


@main.command("features")
@click.option(
    "--evidence",
    is_flag=True,
    help="The origin tells and training signals behind the evidence, with their weights.",
)
@format_option
@click.pass_obj
def features_command(app: App, evidence: bool, fmt: str) -> None:
    """List the session features: name, unit, family and meaning."""
    from rich.table import Table

    from .features import FEATURES
    from .features.evidence_tables import evidence_rows

    rows = evidence_rows() if evidence else [f.__dict__ for f in FEATURES]
    if fmt == "json":
        click.echo(json.dumps(rows, indent=2))
        return
    table = Table(*rows[0])
    for row in rows:
        table.add_row(*(str(v) for v in row.values()))
    app.console.print(table)


@main.command("evaluate")
@click.option("--scores", required=True, type=click.Path(exists=True, path_type=Path))
@click.option(
    "--labels",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Analyst labels: only labelled sessions are measured.",
)
@click.option(
    "--truth",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="truth.csv from `gpuwatch simulate` (tenant_id, start, end, scenario, "
    "restricted_training): every session is measured.",
)
@click.option(
    "--out", type=Output(folder=True), help="Write evaluation.json, pr_curve.png, roc_curve.png."
)
@format_option
@click.pass_obj
def evaluate_command(
    app: App, scores: Path, labels: Path | None, truth: Path | None, out: Path | None, fmt: str
) -> None:
    """Ranking and alert quality of scores against labels or simulator truth."""
    import pandas as pd
    from rich.table import Table

    from .model.evaluate import evaluate, plot_curves

    if (labels is None) == (truth is None):
        raise click.UsageError("give one of --labels or --truth")
    table = _read_scores(scores)
    if truth:
        from .model.labels import match_truth

        matched = match_truth(table, pd.read_csv(truth))
        positive, groups = matched["restricted_training"].to_numpy(bool), matched["scenario"]
    else:
        assert labels is not None
        table, positive, groups = _labelled(table, labels)
    result = evaluate(table["risk_score"], positive, table["alert"])
    per = (
        table.assign(group=groups.to_numpy())
        .groupby("group")
        .agg(
            sessions=("risk_score", "size"),
            mean_risk=("risk_score", "mean"),
            max_risk=("risk_score", "max"),
            alerts=("alert", "sum"),
        )
    )
    report = result.as_dict() | {"groups": per.reset_index().to_dict("records")}
    plots: list[Path] = []
    if out:
        out.mkdir(exist_ok=True)
        (out / "evaluation.json").write_text(json.dumps(report, indent=2, default=float) + "\n")
        if result.average_precision is not None:
            plots = plot_curves(table["risk_score"], positive, out, f"{scores.name}")
    if fmt == "json":
        click.echo(json.dumps(report | {"plots": [str(p) for p in plots]}, indent=2, default=float))
        return
    c = app.console
    what = "restricted training (truth)" if truth else "incident (labels)"
    c.print(
        f"{result.sessions} sessions, {result.positive} {what}: average precision "
        f"{_num(result.average_precision)}, ROC AUC {_num(result.roc_auc)}; precision@k "
        + ", ".join(f"{k}: {_num(v)}" for k, v in result.precision_at_k.items())
    )
    m = result.confusion
    c.print(
        f"at the alert ({result.alerts} alerts): precision {_num(result.precision_at_alert)}, "
        f"recall {_num(result.recall_at_alert)}; confusion tp {m['tp']} fp {m['fp']} "
        f"fn {m['fn']} tn {m['tn']}"
    )
    c.print(
        f"at 1 % false-positive rate (risk > {_num(result.fpr_threshold)}): precision "
        f"{_num(result.precision_at_1pct_fpr)}, recall {_num(result.recall_at_1pct_fpr)}"
    )
    groups_table = Table(
        "scenario" if truth else "label", "sessions", "mean risk", "max risk", "alerts"
    )
    for name, r in per.sort_values("mean_risk", ascending=False).iterrows():
        groups_table.add_row(
            str(name),
            str(int(r["sessions"])),
            f"{r['mean_risk']:.1f}",
            f"{r['max_risk']:.1f}",
            str(int(r["alerts"])),
        )
    c.print(groups_table)
    if plots:
        c.print("curves: " + ", ".join(str(p) for p in plots))


def _labelled(table: pd.DataFrame, labels: Path) -> tuple[pd.DataFrame, Any, pd.Series]:
    """The labelled sessions of a scores table, whether each is an incident, and its label."""
    from .labelling import resolve_labels
    from .model.labels import label_sessions
    from .pipeline import read_labels

    label_table, _ = read_labels(labels)
    resolved = resolve_labels(table, label_table)
    _warn_unmatched(labels, resolved)
    label = label_sessions(table, resolved.labels)
    keep = label.notna().to_numpy()
    if not keep.any():
        raise InputError(f"{labels}: no label matches a session of the scores")
    label = label[keep].astype(str).reset_index(drop=True)
    return table[keep].reset_index(drop=True), (label == "incident").to_numpy(), label


@main.command("drift")
@click.option("--scores", required=True, type=click.Path(exists=True, path_type=Path))
@model_options
@click.option("--top", default=10, show_default=True, help="Features in the printed table.")
@click.option(
    "--metrics-file",
    type=Output(),
    help="Write gpuwatch_feature_drift_psi{feature} for the textfile collector.",
)
@format_option
@click.pass_obj
def drift_command(
    app: App,
    scores: Path,
    registry: Path,
    model_id: str | None,
    model_dir: Path | None,
    top: int,
    metrics_file: Path | None,
    fmt: str,
) -> None:
    """How far a scored batch's features moved from the model's training data (PSI)."""
    from rich.table import Table

    from .model import drift

    stored = _load_model(registry, model_id, model_dir)
    profiles = stored.metadata.get("drift") or {}
    if not profiles:
        raise InputError(f"model {stored.version}: its metadata holds no training distributions")
    table = _read_scores(scores)
    if table.empty:
        raise InputError(f"{scores}: no sessions to compare")
    result = drift.report(profiles, table)
    if metrics_file:
        drift.write_metrics(result, metrics_file, stored.version)
    counts = result["band"].value_counts().to_dict()
    if fmt == "json":
        click.echo(
            json.dumps(
                {
                    "model_version": stored.version,
                    "sessions": len(table),
                    "bands": counts,
                    "features": result.to_dict("records"),
                },
                indent=2,
            )
        )
        return
    app.console.print(
        f"{len(table)} sessions vs the training data of {stored.version}: "
        + ", ".join(f"{counts.get(b, 0)} {b}" for _, b in drift.BANDS)
    )
    out = Table("feature", "PSI", "band")
    for row in result.head(top).itertuples():
        colour = {"significant": "red", "moderate": "yellow"}.get(row.band, "green")
        out.add_row(row.feature, f"{row.psi:.3f}", f"[{colour}]{row.band}[/]")
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


@main.command("benchmark")
@click.option("--seed", default=2027, show_default=True, help="Seed of the training fleet.")
@click.option("--tenants", "n_tenants", default=120, show_default=True, type=click.IntRange(20))
@click.option("--days", default=5.0, show_default=True, type=click.FloatRange(min=1.0))
@click.option(
    "--holdout",
    help="Evasion family (throttled, split, vpn, reseller) or restricted-training scenario "
    "left out of the training fleet and kept in the test fleet.",
)
@click.option(
    "--interval", default=60, show_default=True, type=click.IntRange(1), help="Sample interval."
)
@click.option("--work-dir", type=click.Path(file_okay=False, path_type=Path))
@format_option
@click.pass_obj
def benchmark_command(
    app: App,
    seed: int,
    n_tenants: int,
    days: float,
    holdout: str | None,
    interval: int,
    work_dir: Path | None,
    fmt: str,
) -> None:
    """Simulate two fleets, train on one, score the other: AP, recall at 1 % FPR per family,
    alerts, and baselines (Isolation Forest on utilisation, PyOD ECOD and COPOD)."""
    from .benchmark import run_benchmark

    result = run_benchmark(
        app.settings, seed, n_tenants, days, holdout, interval_s=interval, work_dir=work_dir
    )
    if fmt == "json":
        click.echo(
            json.dumps(
                {
                    "config": result.config,
                    "overall": result.overall.reset_index().to_dict("records"),
                    "families": result.families.reset_index().to_dict("records"),
                },
                indent=2,
                default=float,
            )
        )
        return
    _print_benchmark(app, result)


@main.command("accounting")
@click.option("--scores", required=True, type=click.Path(exists=True, path_type=Path))
@click.option(
    "--by",
    type=click.Choice(["entity", "tenant"]),
    default="entity",
    show_default=True,
    help="Totals per linked entity or per tenant.",
)
@click.option("--top", default=20, show_default=True, help="Rows printed (json: all).")
@format_option
@click.pass_obj
def accounting_command(app: App, scores: Path, by: str, top: int, fmt: str) -> None:
    """GPU-hours and estimated training FLOP (with its band) per entity or tenant, and the
    highest compute threshold of the policy each reaches."""
    from .features.accounting import accounting_table

    table = accounting_table(
        _read_scores(scores), f"{by}_id", app.settings.accounting.thresholds_flop
    )
    if fmt == "json":
        click.echo(table.reset_index().to_json(orient="records", indent=2))
        return
    from rich.table import Table

    out = Table(
        by,
        "tenants",
        "GPU h",
        "training FLOP",
        "band",
        "threshold reached",
        "max risk",
        title=f"compute accounting per {by} (thresholds "
        + ", ".join(f"{t:.0e}" for t in app.settings.accounting.thresholds_flop)
        + ")",
    )
    for key, row in table.head(top).iterrows():
        members = row["members"] if len(row["members"]) <= 40 else row["members"][:37] + "..."
        out.add_row(
            str(key) if by == "tenant" else f"{key} ({members})",
            str(int(row["tenants"])),
            f"{row['gpu_hours']:,.0f}",
            f"{row['training_flop']:.2e}",
            f"{row['training_flop_low']:.1e} - {row['training_flop_high']:.1e}",
            f"{row['threshold']:.0e}" if row["threshold"] else "-",
            f"{row['max_risk']:.1f}",
        )
    app.console.print(out)


@main.command("serve", context_settings={"ignore_unknown_options": True})
@click.option(
    "--scores",
    required=True,
    type=click.Path(path_type=Path),
    help="Scores Parquet file, or a folder whose newest *.parquet is served.",
)
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=DEFAULT_PORT,
    show_default=True,
    help="TCP port (0: any free port, printed at start).",
)
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    help="Address to bind; loopback by default, 0.0.0.0 to expose.",
)
@click.option(
    "--schedule",
    type=click.FloatRange(min=0, min_open=True),
    metavar="MINUTES",
    help="Also rescore every MINUTES with `gpuwatch score SCORE_ARGS --out SCORES`.",
)
@series_options
@click.argument("score_args", nargs=-1, type=click.UNPROCESSED)
@click.pass_obj
def serve_command(
    app: App,
    scores: Path,
    port: int,
    host: str,
    schedule: float | None,
    score_args: tuple[str, ...],
    export: ExportOptions,
) -> None:
    """Serve Prometheus metrics of the newest scores (reloaded when the file changes)."""
    from .export.serve import Rescorer, serve
    from .export.source import ScoresSource

    if score_args and schedule is None:
        raise click.UsageError("score arguments are only used with --schedule")
    out = scores / "scores.parquet" if scores.is_dir() else scores
    rescorer = Rescorer(out, schedule, score_args) if schedule else None

    def ready(bound_host: str, bound_port: int) -> None:
        click.echo(f"serving http://{bound_host}:{bound_port}/metrics")
        sys.stdout.flush()

    serve(ScoresSource(scores, policy_export(export, app.settings)), host, port, rescorer, ready)


# --- analyst commands: label, suppress, report (each parses options, calls its module) --------


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
    type=Output(),
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
    import pandas as pd

    from . import labelling

    if bool(session_ids) == bool(from_csv):
        raise click.UsageError("give session ids or --from-csv (one of them)")
    if from_csv and verdict:
        raise click.UsageError("--from-csv takes each verdict from its label column")
    if not from_csv and not verdict:
        raise click.UsageError("give --incident or --benign")
    table = _read_scores(scores)
    analyst = analyst or _login()
    now = pd.Timestamp.now(tz="UTC").floor("s")
    if from_csv:
        rows = labelling.import_labels(from_csv, table, str(scores), analyst, now)
    else:
        chosen = labelling.session_rows(table, session_ids, str(scores))
        rows = labelling.new_labels(
            chosen.drop_duplicates("session_id"), str(verdict), analyst, note, now
        )
    labelling.append_labels(labels_path, rows)
    if not app.quiet:
        counts = ", ".join(f"{n} {label}" for label, n in rows["label"].value_counts().items())
        click.echo(f"{labels_path}: added {counts} label(s) by {analyst}")


@main.group("suppress")
def suppress_group() -> None:
    """Suppression rules: silence known-good alerts, with a reason, an author and an expiry."""


def rules_option(f: F) -> F:
    """--rules FILE: the suppression rules TOML (its audit log lies beside it)."""
    return click.option(
        "--rules",
        "rules_path",
        required=True,
        type=Output(),
        help="Rules file (TOML); its audit log is RULES.audit.jsonl beside it.",
    )(f)


@suppress_group.command("add")
@rules_option
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
    from . import suppress

    author = author or _login()
    entry = {k: list(v) if isinstance(v, tuple) else v for k, v in criteria.items()}
    rule = suppress.add_rule(rules_path, {"id": rule_id, **entry}, author, suppress.utc_now())
    click.echo(f"{rules_path}: added rule {rule.id!r} by {author}")


@suppress_group.command("expire")
@click.argument("rule_id")
@rules_option
@click.option("--reason", required=True, help="Why the rule ends.")
@click.option("--author", help="Who ends it (default: your login name).")
def suppress_expire(rule_id: str, rules_path: Path, reason: str, author: str | None) -> None:
    """End a rule now (it stays in the file as history) and log who, when and why."""
    from . import suppress

    author = author or _login()
    suppress.expire_rule(rules_path, rule_id, reason, author, suppress.utc_now())
    click.echo(f"{rules_path}: rule {rule_id!r} expired by {author}")


@suppress_group.command("list")
@rules_option
@format_option
@click.pass_obj
def suppress_list(app: App, rules_path: Path, fmt: str) -> None:
    """Show the rules, whether each is active, and whether the audit log is intact."""
    from rich.table import Table

    from . import suppress

    rules = suppress.load_rules(rules_path).rules
    entries, problem = suppress.audit_status(rules_path)
    now = suppress.utc_now()
    rows = [suppress.describe(rule, now) for rule in rules]
    if fmt == "json":
        click.echo(
            json.dumps(
                {"rules": rows, "audit_entries": len(entries), "audit_problem": problem}, indent=2
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
        f"audit log: {len(entries)} change(s) in {suppress.audit_path(rules_path)}"
        + (f"; [bold red]{problem}[/]" if problem else "")
    )


@main.group("state")
def state_group() -> None:
    """The state that scheduled `score --state` runs carry: show it, prune old history."""


def state_argument(f: F) -> F:
    return click.argument("state_dir", type=click.Path(file_okay=False, path_type=Path))(f)


@state_group.command("show")
@state_argument
@format_option
@click.pass_obj
def state_show(app: App, state_dir: Path, fmt: str) -> None:
    """Watermark, carried rows, closed sessions, access history, files read and alerts."""
    from . import state as carry

    with carry.opened(state_dir, write=False) as con:
        summary = carry.summary(carry.load(con))
    if fmt == "json":
        click.echo(json.dumps(summary, indent=2))
        return
    for key, value in summary.items():
        app.console.print(f"{key}: {value}")


@state_group.command("prune")
@state_argument
@click.option(
    "--keep-days",
    type=click.FloatRange(min=0.0, min_open=True),
    help="Keep closed sessions that ended this many days before the watermark "
    "(default: the origin history, features.origin_history_days).",
)
@format_option
@click.pass_obj
def state_prune(app: App, state_dir: Path, keep_days: float | None, fmt: str) -> None:
    """Drop closed sessions, resolved alerts and idle groups older than the retention."""
    from . import state as carry

    keep = keep_days if keep_days is not None else app.settings.features.origin_history_days
    with carry.opened(state_dir) as con:
        pruned, dropped = carry.prune(carry.load(con), keep, app.settings.sessions.gap_seconds)
        carry.save(con, pruned)
    if fmt == "json":
        click.echo(json.dumps({"keep_days": keep, "dropped": dropped}, indent=2))
        return
    app.console.print(
        f"{state_dir}: kept {keep:g} days; dropped "
        + ", ".join(f"{n} {what}" for what, n in dropped.items())
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
    "--geoip-db",
    multiple=True,
    type=click.Path(exists=True, path_type=Path),
    help="MaxMind/DB-IP .mmdb, as for score; default: bundled geoip2fast.",
)
@click.option("--top", default=10, show_default=True, type=click.IntRange(0), help="Cases shown.")
@click.option("--out", required=True, type=Output(), help="The HTML page to write.")
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
    atomic_write(out, page.encode())
    if not app.quiet:
        click.echo(f"{out}: {len(table)} sessions, {len(cases)} cases ({len(page) / 1e6:.1f} MB)")


# --- helpers of the commands -----------------------------------------------------------------


def _build_features(
    app: App, inputs: Inputs, engine: Engine, report: RunReport, carried: State | None = None
) -> FeatureTable:
    """build_features (build_incremental with a state) on the given engine, with progress
    bars on a terminal."""
    from .pipeline import build_features, build_incremental

    def build(progress: Any = None) -> FeatureTable:
        if carried is not None:
            return build_incremental(inputs, app.settings, carried, report, engine, progress)
        return build_features(inputs, app.settings, report, engine, progress)

    if app.quiet or not app.console.is_terminal:
        return build()
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        SpinnerColumn,
        TextColumn,
        TimeElapsedColumn,
    )

    columns = (
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=app.console, transient=True) as bar:

        def start(phase: str, total: int) -> Callable[[int], None]:
            task = bar.add_task(phase, total=total)
            return lambda n: bar.advance(task, n)

        return build(start)


def _write_scores(scores: pd.DataFrame, out: Path) -> None:
    """Write the scores table (CSV or Parquet by the name's suffix)."""
    if out.suffix == ".csv":
        scores.to_csv(out, index=False)
    else:
        scores.to_parquet(out, index=False)


def _read_scores(path: Path) -> pd.DataFrame:
    import pandas as pd

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


def _write_quarantine(table: FeatureTable, path: Path, shown: Path | None = None) -> None:
    """Write the rejected rows to ``path``; the warning names ``shown`` (the user's path)."""
    from . import quarantine

    path.parent.mkdir(parents=True, exist_ok=True)
    quarantine.write(table.quarantine, path)
    if len(table.quarantine):
        log.warning("%d rejected rows written to %s", len(table.quarantine), shown or path)


def _state_counts(scores: pd.DataFrame, report: RunReport) -> dict[str, Any]:
    """With --state: alerts by status (a pager fires on `new`) and late rows."""
    from .state import ALERT_STATUSES, LATE_REASON

    status = scores["alert_status"].value_counts() if "alert_status" in scores else {}
    return {
        "alert_status": {s: int(status.get(s, 0)) for s in ALERT_STATUSES},
        "alerts_new": scores.loc[scores["alert_status"] == "new", "alert_id"].dropna().tolist()
        if "alert_status" in scores
        else [],
        "late_rows_merged": report.late_merged,
        "late_rows_quarantined": report.rows_quarantined[("telemetry", LATE_REASON)],
    }


def _counts(report: RunReport) -> dict[str, Any]:
    return {
        "rows_read": dict(report.rows_read),
        "rows_accepted": dict(report.rows_accepted),
        "rows_quarantined": {f"{s}: {r}": n for (s, r), n in report.rows_quarantined.items()},
        "stage_seconds": {k: round(v, 3) for k, v in report.stage_seconds.items()},
    }


def _print_counts(app: App, report: RunReport) -> None:
    from rich.table import Table

    table = Table("input", "read", "accepted", "quarantined", title="input rows")
    for source, read in report.rows_read.items():
        bad = sum(n for (s, _), n in report.rows_quarantined.items() if s == source)
        table.add_row(source, f"{read:,}", f"{report.rows_accepted[source]:,}", f"{bad:,}")
    app.console.print(table)


def _print_scores(app: App, scores: pd.DataFrame, top: int, alerts: int) -> None:
    from rich.table import Table

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


def _print_benchmark(app: App, result: Any) -> None:
    from rich.table import Table

    c = result.config
    held = ", ".join(c["holdout"]) or "none"
    overall = Table(
        "detector",
        "AP",
        "recall @1% FPR",
        "alert recall",
        "false alerts",
        title=f"benchmark: seed {c['seed']}, {c['tenants']} tenants x {c['days']:g} days, "
        f"held out of training: {held}",
    )
    for name, row in result.overall.iterrows():
        overall.add_row(
            name,
            f"{row['average_precision']:.3f}",
            f"{row['recall_at_1pct_fpr']:.3f}",
            f"{row['alert_recall']:.3f}",
            f"{int(row['false_alerts'])} ({row['false_alert_share']:.1%} of benign)",
        )
    app.console.print(overall)
    families = result.families.reset_index()
    recall = families.pivot(index="family", columns="detector", values="recall_at_1pct_fpr")
    ours = families[families["detector"] == "gpuwatch"].set_index("family")
    table = Table(
        "family",
        "sessions",
        "positive",
        *(f"{d} recall" for d in result.overall.index),
        "gpuwatch alerts",
        title="per family: recall at 1 % FPR (positive families), alerts (all)",
    )
    for name in ours.sort_values(["positive", "sessions"], ascending=False).index:
        row = ours.loc[name]
        table.add_row(
            name,
            str(int(row["sessions"])),
            str(int(row["positive"])),
            *(
                "-" if pd_isna(recall.loc[name, d]) else f"{recall.loc[name, d]:.2f}"
                for d in result.overall.index
            ),
            str(int(row["alerts"])),
        )
    app.console.print(table)


def pd_isna(value: Any) -> bool:
    import pandas as pd

    return bool(pd.isna(value))


def _login() -> str:
    """Who runs the command, for labels and the audit log when no name is given."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


def _warn_unmatched(path: Path, resolved: Resolved) -> None:
    """Labels that match no session are said, never dropped in silence."""
    import pandas as pd

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


def _load_rules(path: Path) -> RuleSet:
    """The rules, checked before any work; a warning when the audit log disagrees."""
    from .suppress import audit_status, load_rules

    rules = load_rules(path)
    _, problem = audit_status(path)
    if problem:
        log.warning("%s", problem)
    return rules


def _apply_rules(scores: pd.DataFrame, rules: RuleSet, report: RunReport) -> pd.DataFrame:
    from .suppress import apply_rules, utc_now

    outcome = apply_rules(scores, rules, utc_now())
    report.suppressed, report.rules_expired = outcome.suppressed, outcome.expired
    return outcome.scores
