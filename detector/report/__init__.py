"""The analyst report: one self-contained HTML page (plotly.js inlined, nothing fetched).

`render` takes the scores table and, when given, each case's telemetry samples and enriched
access events (`inputs.case_samples`, `inputs.case_events`), and fills the jinja2 template.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources

import jinja2
import pandas as pd
import plotly.io as pio
from plotly.offline import get_plotlyjs

from .. import __version__
from .. import columns as c
from ..cases import Case, build_cases, si
from ..config import Settings
from ..errors import SchemaError
from ..export.metrics import ORIGINS, origin_of
from ..features.registry import FEATURES
from ..schema import SEVERITY_BANDS
from . import figures

__all__ = ["render", "select_cases"]

ORIGIN_NAMES = dict(zip(ORIGINS, ("country of concern", "other origins"), strict=True))
ORIGIN_TABLE_ROWS = 6  # countries and networks listed under each case's access plot
OPEN_FACTS = 16  # evidence sections with more facts start folded
PLOT_CONFIG = {"displaylogo": False, "responsive": True, "modeBarButtonsToRemove": ["lasso2d"]}


@dataclass(frozen=True)
class CaseView:
    """A case with its rendered plots and origin tables."""

    case: Case
    timeline: str | None
    origins: str | None
    countries: list[tuple[str, int, bool]]
    networks: list[tuple[str, int, bool]]


def select_cases(scores: pd.DataFrame, top: int) -> pd.DataFrame:
    """Alerting sessions first, then the highest risk; at most `top`."""
    _check(scores)
    order = scores.assign(_alert=scores[c.ALERT].fillna(False).astype(bool)).sort_values(
        ["_alert", c.RISK], ascending=[False, False], kind="stable"
    )
    return order.drop(columns="_alert").head(top)


def render(
    scores: pd.DataFrame,
    settings: Settings,
    *,
    top: int = 10,
    samples: Mapping[str, pd.DataFrame] | None = None,
    events: Mapping[str, pd.DataFrame] | None = None,
    source: str = "",
    generated_at: pd.Timestamp | None = None,
) -> str:
    """The report page as one HTML string."""
    _check(scores)
    generated_at = generated_at or pd.Timestamp.now(tz="UTC").floor("s")
    concern = settings.jurisdiction.countries_of_concern
    chosen = select_cases(scores, top)
    plots = _Plots()
    origin = origin_of(scores, settings.scoring.alert_origin_evidence).map(ORIGIN_NAMES)
    lookback = pd.Timedelta(seconds=settings.sessions.access_lookback_seconds)
    cases = [
        _case_view(case, plots, samples, events, concern, lookback) for case in build_cases(chosen)
    ]
    template = jinja2.Environment(
        loader=jinja2.FunctionLoader(_template),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    ).get_template("report.html.j2")
    alert = scores[c.ALERT].fillna(False).astype(bool)
    suppressed = scores[c.SUPPRESSED_BY].notna() if c.SUPPRESSED_BY in scores else alert & False
    return template.render(
        version=__version__,
        plotly_js=get_plotlyjs(),
        source=source,
        generated_at=generated_at,
        first=pd.Timestamp(scores[c.START].min()) if len(scores) else None,
        last=pd.Timestamp(scores[c.END].max()) if len(scores) else None,
        models=sorted(scores[c.MODEL_VERSION].dropna().astype(str).unique())
        if c.MODEL_VERSION in scores
        else [],
        numbers=_numbers(scores, alert, suppressed),
        lowest_alert=float(scores.loc[alert, c.RISK].min()) if alert.any() else None,
        default_alert_risk=settings.scoring.alert_risk,
        bands=_bands(),
        concern=sorted(concern),
        risk_plot=plots.add(figures.risk_histogram(scores)) if len(scores) else None,
        severity_plot=plots.add(figures.alerts_by_severity(scores)) if len(scores) else None,
        compute_plot=plots.add(figures.compute_by_origin(scores, origin))
        if len(scores) and (c.GPU_HOURS in scores or c.FLOP in scores)
        else None,
        cases=cases,
        have_telemetry=samples is not None,
        have_access=events is not None,
        features=FEATURES,
        open_facts=OPEN_FACTS,
    )


class _Plots:
    """Numbers each figure's div so the page is the same for the same input."""

    def __init__(self) -> None:
        self.count = 0

    def add(self, fig) -> str:
        self.count += 1
        return pio.to_html(
            fig,
            full_html=False,
            include_plotlyjs=False,
            div_id=f"plot-{self.count}",
            config=PLOT_CONFIG,
        )


def _case_view(
    case: Case,
    plots: _Plots,
    samples: Mapping[str, pd.DataFrame] | None,
    events: Mapping[str, pd.DataFrame] | None,
    concern: frozenset[str],
    lookback: pd.Timedelta,
) -> CaseView:
    mine = samples.get(case.session_id) if samples is not None else None
    timeline = plots.add(figures.gpu_timeline(mine)) if mine is not None and len(mine) else None
    seen = events.get(case.session_id) if events is not None else None
    if seen is None or not len(seen):
        return CaseView(case, timeline, None, [], [])
    countries = seen["country"].astype("string").fillna("unknown").value_counts()
    networks = seen.groupby(seen["as_org"].astype("string").fillna("unknown network"))
    flagged = networks["restricted"].mean() >= 0.5
    network_counts = networks.size().sort_values(ascending=False)
    return CaseView(
        case,
        timeline,
        plots.add(
            figures.access_origins(
                seen, concern, (case.start - lookback, case.end), (case.start, case.end)
            )
        ),
        [(k, int(v), k in concern) for k, v in countries.head(ORIGIN_TABLE_ROWS).items()],
        [(k, int(v), bool(flagged[k])) for k, v in network_counts.head(ORIGIN_TABLE_ROWS).items()],
    )


def _numbers(scores: pd.DataFrame, alert: pd.Series, suppressed: pd.Series) -> list[tuple]:
    """The key numbers at the top of the page: (label, value, note)."""
    out = [
        ("sessions", f"{len(scores):,}", "contiguous GPU activity of one tenant"),
        ("tenants", f"{scores[c.TENANT].nunique():,}", "customer accounts"),
        ("alerts", f"{int(alert.sum()):,}", "sessions at or above the alert threshold"),
        ("suppressed", f"{int(suppressed.sum()):,}", "alerts silenced by a suppression rule"),
    ]
    if c.GPU_HOURS in scores:
        gpu_hours = pd.to_numeric(scores[c.GPU_HOURS], errors="coerce")
        out.append(("GPU-hours", f"{gpu_hours.sum():,.0f}", "all sessions"))
        out.append(("GPU-hours in alert", f"{gpu_hours[alert].sum():,.0f}", "alerting sessions"))
    if c.FLOP in scores:
        flop = pd.to_numeric(scores[c.FLOP], errors="coerce")
        out.append(("estimated compute", si(flop.sum(), "FLOP"), "all sessions"))
    return out


def _bands() -> list[tuple[str, int, int]]:
    """Severity bands as (name, lowest, highest) risk, from the one definition in schema."""
    lows = sorted(SEVERITY_BANDS)
    return [
        (name, int(low), int(lows[i + 1][0]) - 1 if i + 1 < len(lows) else 100)
        for i, (low, name) in enumerate(lows)
    ]


def _template(name: str) -> str:
    return resources.files(__package__).joinpath(name).read_text()


def _check(scores: pd.DataFrame) -> None:
    for column in c.REQUIRED:
        if column not in scores:
            raise SchemaError(f"scores lack the column {column!r} the report needs", column=column)
