"""The report's plots (plotly): fleet overview, per-GPU utilisation, access origins over time.

Each function takes plain tables and returns a figure; titles and axis labels carry the units.
No map or web font is used: a plotly map would fetch its topology from the network.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from .. import columns as c
from ..schema import SEVERITY_BANDS
from ..timeutil import epoch_ns

SEVERITY_ORDER = tuple(name for _, name in reversed(SEVERITY_BANDS))  # low .. critical
SEVERITY_COLOURS = {
    "low": "#9db9d3",
    "medium": "#f2c14e",
    "high": "#ef8a3c",
    "critical": "#c0392b",
}
STATUS_COLOURS = {"alert": "#c0392b", "suppressed by a rule": "#8e44ad", "no alert": "#bdc3c7"}
CONCERN_COLOURS = ("#c0392b", "#e74c3c", "#a93226", "#d35400", "#922b21", "#f1948a")
OTHER_COLOURS = ("#2e86c1", "#5dade2", "#1abc9c", "#7f8c8d", "#85929e", "#48c9b0", "#a9cce3")
SESSION_SHADE = "rgba(120, 144, 156, 0.12)"
MAX_TIME_BINS = 480  # columns of a GPU heatmap (keeps each case's plot small)
MAX_ORIGIN_TRACES = 8  # countries or AS organisations per plot; the rest is "other"
EXA = 1e18
FONT = dict(family="system-ui, -apple-system, Segoe UI, Helvetica, Arial, sans-serif", size=13)
AXES = dict(
    gridcolor="#e5e8ec",
    zerolinecolor="#c9ced6",
    linecolor="#c9ced6",
    showline=True,
    automargin=True,
)


def risk_histogram(scores: pd.DataFrame) -> go.Figure:
    """Sessions per risk band of 5 points, coloured by severity; log scale, since most sessions
    of a healthy fleet score near 0."""
    fig = go.Figure()
    for name in SEVERITY_ORDER:
        fig.add_histogram(
            x=scores.loc[scores[c.SEVERITY] == name, c.RISK],
            xbins=dict(start=0, end=100, size=5),
            autobinx=False,
            name=name,
            marker_color=SEVERITY_COLOURS[name],
        )
    _style(fig, 320, barmode="stack")
    fig.update_xaxes(range=[0, 100], title_text="risk score (0 = ordinary, 100 = most unusual)")
    fig.update_yaxes(title_text="sessions (log scale)", **_log_axis(len(scores)))
    return fig


def alerts_by_severity(scores: pd.DataFrame) -> go.Figure:
    """Sessions per severity: alerting, suppressed (alert silenced by a rule), not alerting;
    side by side on a log scale, so four alerts stay visible beside a hundred quiet sessions."""
    alert = scores[c.ALERT].fillna(False).astype(bool)
    suppressed = (
        scores[c.SUPPRESSED_BY].notna() & ~alert
        if c.SUPPRESSED_BY in scores
        else pd.Series(False, index=scores.index)
    )
    fig = go.Figure()
    for label, mask in (
        ("alert", alert),
        ("suppressed by a rule", suppressed),
        ("no alert", ~alert & ~suppressed),
    ):
        counts = scores.loc[mask, c.SEVERITY].value_counts().reindex(SEVERITY_ORDER, fill_value=0)
        fig.add_bar(
            x=list(SEVERITY_ORDER),
            y=counts.to_numpy(),
            name=label,
            marker_color=STATUS_COLOURS[label],
            text=[str(n) if n else "" for n in counts],
            textposition="outside",
            cliponaxis=False,
        )
    _style(fig, 320, barmode="group")
    fig.update_xaxes(title_text="severity")
    fig.update_yaxes(title_text="sessions (log scale)", **_log_axis(len(scores)))
    return fig


def compute_by_origin(scores: pd.DataFrame, origin: pd.Series) -> go.Figure:
    """GPU-hours and estimated FLOP per access origin, stacked by severity."""
    panels = [(col, scale) for col, scale in ((c.GPU_HOURS, 1.0), (c.FLOP, EXA)) if col in scores]
    titles = {c.GPU_HOURS: "GPU-hours", c.FLOP: "estimated compute (exaFLOP)"}
    fig = make_subplots(
        rows=1, cols=max(len(panels), 1), subplot_titles=[titles[col] for col, _ in panels]
    )
    origins = sorted(origin.unique())
    for name in SEVERITY_ORDER:
        mask = (scores[c.SEVERITY] == name).to_numpy()
        for n, (column, scale) in enumerate(panels, 1):
            values = (
                pd.to_numeric(scores.loc[mask, column], errors="coerce")
                .groupby(origin[mask])
                .sum()
                .reindex(origins, fill_value=0.0)
            )
            fig.add_bar(
                x=origins,
                y=values.to_numpy() / scale,
                name=name,
                marker_color=SEVERITY_COLOURS[name],
                legendgroup=name,
                showlegend=n == 1,
                row=1,
                col=n,
            )
            fig.update_yaxes(title_text=titles[column], row=1, col=n)
    _style(
        fig,
        380,
        barmode="stack",
        margin=dict(l=60, r=20, t=80, b=40),
        legend=dict(orientation="h", yanchor="bottom", y=1.12, x=0, traceorder="normal"),
    )
    return fig


def gpu_timeline(samples: pd.DataFrame) -> go.Figure:
    """Utilisation of each GPU over time as a heatmap: one row per GPU, colour = % busy."""
    gpu = samples["host"].astype(str) + " / GPU " + samples["gpu"].astype(str)
    span = samples["timestamp"].max() - samples["timestamp"].min()
    width = _round(max(_step(samples["timestamp"]), span / MAX_TIME_BINS))
    binned = (
        samples.assign(gpu_name=gpu, t=samples["timestamp"].dt.floor(width))
        .groupby(["gpu_name", "t"], observed=True)["gpu_util"]
        .mean()
        .unstack("t")
    )
    binned = binned.reindex(sorted(binned.index, key=_natural), axis=0)
    fig = go.Figure(
        go.Heatmap(
            z=np.round(binned.to_numpy(), 1),
            x=binned.columns,
            y=list(binned.index),
            zmin=0,
            zmax=100,
            colorscale="Viridis",
            colorbar=dict(title=dict(text="% busy", side="top"), thickness=12),
            hovertemplate="%{y}<br>%{x}<br>%{z:.0f} % busy<extra></extra>",
        )
    )
    _style(fig, max(240, min(18 * len(binned) + 130, 760)), margin=dict(l=60, r=20, t=40, b=50))
    fig.update_xaxes(title_text=f"time (UTC); each column averages {_words(width)} of samples")
    fig.update_yaxes(autorange="reversed", tickfont=dict(size=10), showgrid=False)
    return fig


def access_origins(
    events: pd.DataFrame,
    concern: frozenset[str],
    window: tuple[pd.Timestamp, pd.Timestamp],
    session: tuple[pd.Timestamp, pd.Timestamp],
) -> go.Figure:
    """Access events over `window`, stacked by source country (top) and AS organisation
    (bottom); countries of concern (and networks mostly used from them) in reds, the rest in
    blues and greens; the session itself shaded."""
    span = window[1] - window[0]
    step = pd.Timedelta(hours=1) if span <= pd.Timedelta(days=3) else pd.Timedelta(hours=6)
    t = events["timestamp"].dt.floor(step)
    country = events["country"].astype("string").fillna("unknown")
    org = events["as_org"].astype("string").fillna("unknown network")
    top_orgs = _top(org)
    org = org.where(org.isin(top_orgs), "other networks")
    org_concern = events["restricted"].groupby(org).mean()
    fig = make_subplots(
        rows=2,
        cols=1,
        shared_xaxes=True,
        vertical_spacing=0.14,
        subplot_titles=("by source country", "by network (AS organisation)"),
    )
    red, other = iter(CONCERN_COLOURS * 3), iter(OTHER_COLOURS * 3)
    for row, values, names, flagged in (
        (1, country, _top(country), lambda n: n in concern),
        (2, org, [*top_orgs, "other networks"], lambda n: org_concern.get(n, 0.0) >= 0.5),
    ):
        for name in names:
            counts = t[(values == name).to_numpy(bool)].value_counts().sort_index()
            if counts.empty:
                continue
            fig.add_bar(
                x=counts.index,
                y=counts.to_numpy(),
                name=f"{name} (country of concern)" if row == 1 and flagged(name) else name,
                marker_color=next(red) if flagged(name) else next(other),
                legendgroup=f"row{row}",
                legendgrouptitle_text="country" if row == 1 else "network",
                row=row,
                col=1,
            )
    for row in (1, 2):
        fig.add_vrect(
            x0=session[0],
            x1=session[1],
            fillcolor=SESSION_SHADE,
            line_width=0,
            layer="below",
            row=row,
            col=1,
        )
    _style(
        fig,
        480,
        barmode="stack",
        bargap=0.05,
        legend=dict(orientation="v", x=1.02, y=1, traceorder="grouped"),
        margin=dict(l=60, r=20, t=40, b=50),
    )
    fig.update_xaxes(range=list(window))
    fig.update_xaxes(title_text="time (UTC); shaded: the session", row=2, col=1)
    fig.update_yaxes(title_text=f"events per {_words(_round(step)).removeprefix('1 ')}")
    return fig


def _style(fig: go.Figure, height: int, **layout: Any) -> None:
    """The one look of every plot (no plotly template: each would cost a deep copy)."""
    fig.update_layout(
        **{
            "template": "none",
            "height": height,
            "paper_bgcolor": "white",
            "plot_bgcolor": "white",
            "font": FONT,
            "margin": dict(l=60, r=20, t=40, b=50),
            "legend": dict(orientation="h", yanchor="bottom", y=1.02, x=0, traceorder="normal"),
            **layout,
        }
    )
    fig.update_xaxes(**AXES)
    fig.update_yaxes(**AXES)


def _log_axis(largest: int) -> dict[str, Any]:
    """A log axis of counts whose bars start just below 1, so a count of 1 is visible."""
    return dict(type="log", dtick=1, range=[-0.15, np.log10(max(largest, 1)) + 0.35])


def _top(values: pd.Series) -> list[str]:
    return values.value_counts().head(MAX_ORIGIN_TRACES).index.tolist()


def _step(ts: pd.Series) -> pd.Timedelta:
    """The sampling interval: the most common gap between distinct sample times."""
    times = np.unique(epoch_ns(ts))
    if len(times) < 2:
        return pd.Timedelta(seconds=60)
    gaps, counts = np.unique(np.diff(times), return_counts=True)
    return pd.Timedelta(int(gaps[counts.argmax()]), unit="ns")


def _round(width: pd.Timedelta) -> str:
    """A bin width rounded up to whole seconds, minutes or hours, as a pandas frequency."""
    seconds = int(np.ceil(width.total_seconds()))
    if seconds >= 3600:
        return f"{int(np.ceil(seconds / 3600))}h"
    return f"{int(np.ceil(seconds / 60))}min" if seconds >= 60 else f"{max(seconds, 1)}s"


def _words(freq: str) -> str:
    """'6min' -> '6 minutes'; '1h' -> '1 hour'."""
    number = freq.rstrip("minhs")
    unit = freq[len(number) :]
    name = {"s": "second", "min": "minute", "h": "hour"}[unit]
    return f"{number} {name}" + ("s" if number != "1" else "")


def _natural(name: str) -> tuple:
    """host-n2 / GPU 10 after host-n2 / GPU 9."""
    return tuple(int(p) if p.isdigit() else p for p in re.split(r"(\d+)", name))
