"""What the exporter publishes and where: one frozen object, and the click options that fill it."""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click

SALT_ENV = "GPUWATCH_PSEUDONYM_SALT"


@dataclass(frozen=True)
class ExportOptions:
    """Sinks (textfile, Pushgateway), grouping key and the series budget of one export."""

    metrics_file: Path | None = None
    pushgateway: str | None = None
    job: str = "gpuwatch"
    grouping: Mapping[str, str] = field(default_factory=dict)
    top_n: int = 10
    max_series: int = 500
    pseudonymize_salt: str | None = None


def series_options(f: Callable[..., Any]) -> Callable[..., Any]:
    """Add --top-n, --max-series, --pseudonymize-tenants and --salt (shared by score and serve)."""
    options = [
        click.option(
            "--top-n",
            "_x_top_n",
            type=click.IntRange(min=0),
            default=10,
            show_default=True,
            help="Per-tenant series for the N riskiest tenants (plus all in alert).",
        ),
        click.option(
            "--max-series",
            "_x_max_series",
            type=click.IntRange(min=1),
            default=500,
            show_default=True,
            help="Cap on alerting-session series and on alerting-tenant series.",
        ),
        click.option(
            "--pseudonymize-tenants",
            "_x_pseudonymize",
            is_flag=True,
            help="Replace tenant and session ids in labels by salted HMAC pseudonyms.",
        ),
        click.option(
            "--salt",
            "_x_salt",
            envvar=SALT_ENV,
            show_envvar=True,
            help="Secret salt for --pseudonymize-tenants.",
        ),
    ]
    return _apply(f, options)


def export_options(f: Callable[..., Any]) -> Callable[..., Any]:
    """Add the metrics sink options; the command receives them as ``export: ExportOptions``."""
    options = [
        click.option(
            "--metrics-file",
            "_x_metrics_file",
            type=click.Path(dir_okay=False, path_type=Path),
            help="Write metrics atomically to this file (node_exporter textfile).",
        ),
        click.option(
            "--pushgateway",
            "_x_pushgateway",
            metavar="URL",
            help="Push metrics to this Pushgateway (e.g. http://pushgateway:9091).",
        ),
        click.option(
            "--job",
            "_x_job",
            default="gpuwatch",
            show_default=True,
            help="Pushgateway job name (grouping key).",
        ),
        click.option(
            "--grouping",
            "_x_grouping",
            multiple=True,
            metavar="KEY=VALUE",
            help="Extra Pushgateway grouping-key label; repeatable.",
        ),
    ]
    return series_options(_apply(f, options, build=True))


def options_from_params(params: dict[str, Any]) -> ExportOptions:
    """Pop the exporter's click parameters out of ``params`` and build the options object."""
    salt = params.pop("_x_salt", None)
    pseudonymize = params.pop("_x_pseudonymize", False)
    if pseudonymize and not salt:
        raise click.UsageError(f"--pseudonymize-tenants needs --salt or ${SALT_ENV}")
    grouping: dict[str, str] = {}
    for item in params.pop("_x_grouping", ()):
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"expected KEY=VALUE, got {item!r}", param_hint="--grouping")
        grouping[key] = value
    return ExportOptions(
        metrics_file=params.pop("_x_metrics_file", None),
        pushgateway=params.pop("_x_pushgateway", None),
        job=params.pop("_x_job", "gpuwatch"),
        grouping=grouping,
        top_n=params.pop("_x_top_n", 10),
        max_series=params.pop("_x_max_series", 500),
        pseudonymize_salt=salt if pseudonymize else None,
    )


def _apply(
    f: Callable[..., Any], options: list[Callable[..., Any]], *, build: bool = False
) -> Callable[..., Any]:
    command = f
    if build:

        @functools.wraps(f)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            kwargs["export"] = options_from_params(kwargs)
            return f(*args, **kwargs)

        command = wrapper
    for option in reversed(options):
        command = option(command)
    return command
