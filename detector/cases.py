"""A session's case: what an analyst needs to work it, built once for `explain`, its JSON and the
HTML report.

Pure over rows of the scores table. The case holds:
- the workload facts (GPUs, hosts, GPU-hours, estimated FLOP with its interval) and each training
  signal with its value, its log-odds push and what it means (features/training.py);
- the origin facts (countries, AS organisations and prefixes with event counts, declared and
  billing country, reseller, the clock fit) and each origin tell with its strength, weight and
  push, and whether it fired (features/origin.py);
- the entity, its linked tenants and what links them (features/entities.py);
- the top contributions of `top_features`, in words from the tells', signals' and feature
  registry's meanings.
Values are rendered by the unit the feature registry gives them; any column this module does not
know (evidence added later) still shows, under "Other columns". A scores table that lacks the
evidence columns gives a case without those sections, never an error.
"""

from __future__ import annotations

import json
import math
import textwrap
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd

from . import columns as c
from .errors import SchemaError
from .features import origin, training
from .features.registry import ACCOUNTING, BY_NAME, ENTITY, ORIGIN, RISK, WORKLOAD
from .model.explain import evidence_items

FIRED_LOG_ODDS = 1.0  # an origin tell fired when it adds at least this (odds x e)
TEXT_WIDTH = 100  # columns of `render_text`
SI = ((1e24, "Y"), (1e21, "Z"), (1e18, "E"), (1e15, "P"), (1e12, "T"), (1e9, "G"), (1e6, "M"))

# Columns that identify or classify the session: the case's heading, not its evidence.
HEADING = (
    c.SESSION_ID,
    c.TENANT,
    c.JOB,
    c.START,
    c.END,
    c.RISK,
    c.SEVERITY,
    c.ALERT,
    c.TOP_FEATURES,
    c.MODEL_VERSION,
    c.RUN_ID,
    c.SUPPRESSED_BY,
    c.SUPPRESSION_REASON,
)
# Case sections: key, title, and the columns shown in them (in order) beside the evidence.
TRAINING, TELLS, MORE, OTHER = "training", "tells", "more", "other"
SECTIONS = (
    (WORKLOAD, "Workload: what ran on the GPUs"),
    (TRAINING, "Training signals: log-odds for (+) and against (-) training"),
    (ORIGIN, "Origin: who drove it, and from where"),
    (TELLS, f"Origin tells: log-odds each adds; fired at {FIRED_LOG_ODDS:+g} or more"),
    (ENTITY, "Entity: accounts linked to this tenant"),
    (ACCOUNTING, "Compute accounting: the tenant's and the entity's totals"),
    (RISK, "Risk: what the forest scores"),
    (MORE, "More features (their meanings: `gpuwatch features`)"),
    (OTHER, "Other columns"),
)
PLACED = {
    WORKLOAD: (c.N_GPUS, c.N_HOSTS, "duration_s", c.GPU_HOURS, c.FLOP, "util_mean",
               "training_evidence"),
    ORIGIN: (c.COUNTRIES, c.AS_ORGS, c.ASNS, c.PREFIXES, c.DECLARED_COUNTRY, c.BILLING_COUNTRY,
             c.RESELLER_NAME, "history_events", "history_days", "direct_events",
             "restricted_share", "hosting_share", "clock_offset_h", "clock_excess",
             "origin_evidence", "entity_origin_evidence"),
    ENTITY: (c.ENTITY, c.LINKED_TENANTS, c.LINK_REASONS, "entity_tenants", "group_sessions",
             "group_flop", "group_gpu_hours"),
    ACCOUNTING: ("tenant_gpu_hours", "tenant_training_flop", "entity_gpu_hours",
                 "entity_training_flop", "entity_flop_threshold"),
    RISK: ("restricted_training", "restricted_compute", "restricted_gpu_hours", "anomaly_score"),
}  # fmt: skip
INTERVALS = {  # a FLOP estimate -> its (low, high) columns, shown as one fact
    c.FLOP: (c.FLOP_LOW, c.FLOP_HIGH),
    **{f"{w}_training_flop": (f"{w}_training_flop_low", f"{w}_training_flop_high")
       for w in ("tenant", "entity")},
}  # fmt: skip
MEANINGS = {  # columns outside the feature registry
    c.JOB: "scheduler job or pod",
    c.COUNTRIES: "countries of the tenant's access events in its history, with event counts",
    c.ASNS: "autonomous system numbers of those events",
    c.AS_ORGS: "organisations owning the networks the events came from",
    c.PREFIXES: "source prefixes (IPv4 /24, IPv6 /48) of those events",
    c.DECLARED_COUNTRY: "country the customer declared at sign-up (KYC)",
    c.BILLING_COUNTRY: "country of the billing address",
    c.RESELLER_NAME: "reseller the tenant signed up through",
    c.ENTITY: "the entity (linked tenants) this tenant belongs to",
    c.LINKED_TENANTS: "other tenants linked to this one",
    c.LINK_REASONS: "what each linked tenant shares with this one",
    "anomaly_score": "the Isolation Forest's score before scaling to risk (higher = rarer)",
}
SHOWN_AS = {"log10_nvlink_bps": "nvlink_bps", "log10_pcie_bps": "pcie_bps"}  # signal -> column
# The columns `training.signal_values` derives its other signals from, and the confidence's.
SIGNAL_INPUTS = ("n_gpus", "nvlink_bps", "pcie_bps", "idle_frac", "dip_regularity",
                 "dip_rate_per_h", "samples_per_gpu")  # fmt: skip


@dataclass(frozen=True)
class Fact:
    """One fact of a case: its raw value (JSON-able), as an analyst reads it, and what it means;
    for evidence, the log-odds it adds (`push`) and, for origin tells, whether it fired."""

    name: str
    value: Any
    text: str
    meaning: str
    push: float | None = None
    fired: bool | None = None


@dataclass(frozen=True)
class Section:
    key: str
    title: str
    facts: tuple[Fact, ...]


@dataclass(frozen=True)
class Push:
    """One of the top contributions of `top_features`, in words; `width` is 0-1 of the top."""

    feature: str
    value: Any
    text: str
    contribution: float
    width: float
    meaning: str


@dataclass(frozen=True)
class Case:
    session_id: str
    tenant: str
    job: str | None
    start: pd.Timestamp
    end: pd.Timestamp
    risk: float
    severity: str
    alert: bool
    suppressed_by: str | None
    suppression_reason: str | None
    model_version: str | None
    summary: str
    pushes: tuple[Push, ...]
    sections: tuple[Section, ...]

    @property
    def fired(self) -> list[str]:
        """The origin tells that fired, strongest first."""
        tells = [f for s in self.sections if s.key == TELLS for f in s.facts if f.fired]
        return [f.name for f in sorted(tells, key=lambda f: -(f.push or 0.0))]

    def facts(self) -> dict[str, Fact]:
        return {f.name: f for s in self.sections for f in s.facts}

    def to_dict(self) -> dict[str, Any]:
        """The case as JSON-able data: the same content `render_text` prints."""
        out = asdict(self)
        out["start"], out["end"] = self.start.isoformat(), self.end.isoformat()
        out["fired"] = self.fired
        return out


def build_cases(rows: pd.DataFrame) -> list[Case]:
    """The case of every row of a scores table, in row order."""
    rows = rows.reset_index(drop=True).infer_objects()
    for column in c.REQUIRED:
        if column not in rows:
            raise SchemaError(f"scores lack the column {column!r} a case needs", column=column)
    evidence = _evidence(rows)
    return [_case(row, evidence.get(i, {})) for i, row in rows.iterrows()]


def build_case(row: pd.Series) -> Case:
    """The case of one scores row."""
    return build_cases(row.to_frame().T)[0]


def _case(row: pd.Series, evidence: Mapping[str, list[Fact]]) -> Case:
    sections = {key: list(evidence.get(key, [])) for key, _ in SECTIONS}
    shown = set(HEADING) | {low for pair in INTERVALS.values() for low in pair}
    shown |= {f.name for facts in evidence.values() for f in facts}  # each name once
    for key, names in PLACED.items():
        for name in names:
            if name in row.index and _present(row[name]):
                sections[key].append(_fact(row, name))
            shown.add(name)
    for name in row.index:
        if name not in shown and _present(row[name]):
            fact = _fact(row, name)
            if name in BY_NAME:  # listed briefly: the feature table has the meanings
                sections[MORE].append(Fact(fact.name, fact.value, fact.text, ""))
            else:
                sections[OTHER].append(fact)
    return Case(
        session_id=str(row[c.SESSION_ID]),
        tenant=str(row[c.TENANT]),
        job=_text(row.get(c.JOB)),
        start=pd.Timestamp(row[c.START]),
        end=pd.Timestamp(row[c.END]),
        risk=float(row[c.RISK]),
        severity=str(row[c.SEVERITY]),
        alert=bool(row[c.ALERT]),
        suppressed_by=_text(row.get(c.SUPPRESSED_BY)),
        suppression_reason=_text(row.get(c.SUPPRESSION_REASON)),
        model_version=_text(row.get(c.MODEL_VERSION)),
        summary=summary(row, [f.name for f in sections[TELLS] if f.fired]),
        pushes=pushes(row.get(c.TOP_FEATURES)),
        sections=tuple(
            Section(key, title, tuple(sections[key])) for key, title in SECTIONS if sections[key]
        ),
    )


def _fact(row: pd.Series, name: str) -> Fact:
    value = row[name]
    text = format_value(name, value)
    if name in INTERVALS:
        low, high = (row.get(k) for k in INTERVALS[name])
        if _present(low) and _present(high):
            text += f" ({format_value(name, low)} to {format_value(name, high)})"
            value = {"estimate": value, "low": low, "high": high}
    if name == "clock_offset_h":
        text = f"UTC{float(value):+g}"
    return Fact(name, _plain(value), text, _meaning(name))


def _evidence(rows: pd.DataFrame) -> dict[int, dict[str, list[Fact]]]:
    """Per row, the training-signal and origin-tell facts (when the rows have their inputs)."""
    needed = {*origin.HISTORY_COLUMNS, *SIGNAL_INPUTS}
    needed |= {s.feature for s in training.SIGNALS if s.feature in BY_NAME}
    if rows.empty or not needed <= set(rows.columns):
        return {}
    signals = {s.feature: s for s in training.SIGNALS}
    tells = {t.name: t for t in origin.TELLS}
    out: dict[int, dict[str, list[Fact]]] = {}
    for i, family, name, value, push in evidence_items(rows).itertuples(index=False):
        facts = out.setdefault(int(i), {TRAINING: [], TELLS: []})
        push = round(float(push), 3)
        if family == "origin":
            tell = tells[name]
            text = f"{value:.0%} of {tell.weight:+g}" if not pd.isna(value) else "n/a"
            fired = push >= FIRED_LOG_ODDS
            facts[TELLS].append(Fact(name, _plain(value), text, tell.meaning, push, fired))
        else:
            shown = SHOWN_AS.get(name)
            text = format_value(shown, rows.at[i, shown]) if shown else format_value(name, value)
            facts[TRAINING].append(Fact(name, _plain(value), text, signals[name].meaning, push))
    for facts in out.values():
        facts[TELLS].sort(key=lambda f: -(f.push or 0.0))
        facts[TRAINING].sort(key=lambda f: -abs(f.push or 0.0))
    return out


def pushes(top_features: Any) -> tuple[Push, ...]:
    """The top_features JSON (items "family:name", value, contribution) as pushes in words."""
    try:
        items = json.loads(top_features) if isinstance(top_features, str) else top_features or []
        items = [i for i in items if isinstance(i, Mapping) and "feature" in i]
    except (ValueError, TypeError):
        return ()
    largest = max((float(i.get("contribution") or 0) for i in items), default=0.0) or 1.0
    out = []
    for item in items:
        feature = str(item["feature"])
        family, _, name = feature.rpartition(":")
        contribution = float(item.get("contribution") or 0)
        value = item.get("value")
        out.append(
            Push(
                feature=feature,
                value=value,
                text=_push_text(family, name, value),
                contribution=contribution,
                width=max(contribution, 0.0) / largest,
                meaning=_push_meaning(family, name),
            )
        )
    return tuple(out)


def _push_text(family: str, name: str, value: Any) -> str:
    if not _present(value):
        return "n/a"
    if family == "origin":
        return f"tell at {float(value):.0%} strength"
    return f"{name} = {format_value(name, value)}"


def _push_meaning(family: str, name: str) -> str:
    if family == "origin":
        return next((t.meaning for t in origin.TELLS if t.name == name), _meaning(name))
    if family == "workload":
        return next((s.meaning for s in training.SIGNALS if s.feature == name), _meaning(name))
    return _meaning(name)


def summary(row: pd.Series, fired: list[str]) -> str:
    """One sentence a newcomer reads first: size, duration, compute, evidence and origin."""
    parts = []
    if _present(row.get(c.N_GPUS)):
        hosts = row.get(c.N_HOSTS)
        parts.append(
            _count(int(row[c.N_GPUS]), "GPU")
            + (f" on {_count(int(hosts), 'host')}" if _present(hosts) else "")
            + f" for {_hours(pd.Timestamp(row[c.END]) - pd.Timestamp(row[c.START]))}"
        )
    compute = []
    if _present(row.get(c.GPU_HOURS)):
        compute.append(f"{float(row[c.GPU_HOURS]):,.0f} GPU-hours")
    if _present(row.get(c.FLOP)):
        compute.append(f"about {_fact(row, c.FLOP).text} of compute")
    if compute:
        parts.append(", ".join(compute))
    for name, words in (
        ("training_evidence", "training evidence"),
        ("origin_evidence", "restricted-origin evidence"),
    ):
        if _present(row.get(name)):
            parts.append(f"{words} {format_value(name, row[name])}")
    if _present(row.get(c.COUNTRIES)):
        parts.append(f"access from {format_value(c.COUNTRIES, row[c.COUNTRIES])}")
    if fired:
        parts.append(f"origin tells fired: {', '.join(fired)}")
    return "; ".join(parts) + "." if parts else ""


def render_text(case: Case, width: int = TEXT_WIDTH) -> str:
    """The case as plain text, the same content as `Case.to_dict`."""
    status = "ALERT" if case.alert else "suppressed" if case.suppressed_by else "no alert"
    lines = [
        f"session {case.session_id}  tenant {case.tenant}"
        + (f"  job {case.job}" if case.job else ""),
        f"{case.start:%Y-%m-%d %H:%M} to {case.end:%Y-%m-%d %H:%M} UTC; "
        f"risk {case.risk:.1f} ({case.severity}), {status}"
        + (f"; model {case.model_version}" if case.model_version else ""),
    ]
    if case.suppressed_by:
        lines.append(
            f"suppressed by rule {case.suppressed_by}: {case.suppression_reason or 'no reason'}"
        )
    if case.summary:
        lines += textwrap.wrap(case.summary, width)
    lines += ["", "What pushed the score (log-odds, strongest first)"]
    if not case.pushes:
        lines.append("  nothing: no tell or signal added evidence")
    meanings = {f.meaning for s in case.sections for f in s.facts}
    for p in case.pushes:
        lines.append(f"  {p.contribution:+6.2f}  {p.feature}: {p.text}")
        if p.meaning not in meanings:  # else the sections below say it
            lines += _wrapped(p.meaning, width, 10)
    for section in case.sections:
        lines += ["", section.title]
        if section.key == MORE:
            cells = [f"{f.name} {f.text}" for f in section.facts]
            lines += textwrap.wrap("; ".join(cells), width, initial_indent="  ",
                                   subsequent_indent="  ")  # fmt: skip
            continue
        for f in section.facts:
            push = f"{f.push:+6.2f}" if f.push is not None else ""
            mark = "  FIRED" if f.fired else ""
            lines.append(f"  {f.name:<26} {f.text}" + (f"  [{push.strip()}]{mark}" if push else ""))
            lines += _wrapped(f.meaning, width, 6)
    return "\n".join(lines)


def _wrapped(text: str, width: int, indent: int) -> list[str]:
    pad = " " * indent
    return textwrap.wrap(text, width, initial_indent=pad, subsequent_indent=pad) if text else []


def format_value(name: str, value: Any) -> str:
    """A value as an analyst reads it, by the unit the feature registry gives the column."""
    if not _present(value):
        return "n/a"
    if isinstance(value, str) and value.strip()[:1] in "[{":
        try:
            return readable(json.loads(value))
        except ValueError:
            return value
    if isinstance(value, Mapping | list | tuple):
        return readable(value)
    if isinstance(value, bool | np.bool_) or not isinstance(value, int | float | np.number):
        return str(value)
    unit = BY_NAME[name].unit if name in BY_NAME else ""
    v = float(value)
    if unit == "probability" or (
        unit == "ratio" and ("share" in name or "frac" in name or "fit" in name)
    ):
        return f"{v:.0%}"
    if unit == "flag":
        return "yes" if v >= 0.5 else "no"
    if unit == "s":
        return _hours(pd.Timedelta(seconds=v))
    if unit in ("FLOP", "B/s"):
        return si(v, unit)
    if unit in ("GPU h", "W", "%", "1/h"):
        return f"{v:,.1f} {unit}"
    if unit in ("GPUs", "hosts", "events", "countries", "ASNs", "tenants", "sessions", "days"):
        return f"{v:,.0f}"
    return f"{v:.3g}" + (f" {unit}" if unit and unit not in ("ratio", "correlation") else "")


def si(value: float, unit: str) -> str:
    """1.41e21 -> '1.41 ZFLOP' (prefixes up to yotta)."""
    for scale, prefix in SI:
        if abs(value) >= scale:
            return f"{value / scale:.3g} {prefix}{unit}"
    return f"{value:.3g} {unit}"


def readable(value: object) -> str:
    """JSON evidence as text: {'CN': 120, 'SG': 3} -> 'CN 120, SG 3'; lists joined by commas."""
    if isinstance(value, Mapping):
        return ", ".join(f"{k} {readable(v)}" for k, v in value.items())
    if isinstance(value, list | tuple):
        return ", ".join(
            " ".join(readable(v) for v in item.values())
            if isinstance(item, Mapping)
            else readable(item)
            for item in value
        )
    if isinstance(value, float):
        return f"{value:.3g}"
    return str(value)


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")


def _hours(span: pd.Timedelta) -> str:
    hours = span.total_seconds() / 3600
    return f"{hours:.1f} h" if hours >= 1 else f"{span.total_seconds() / 60:.0f} min"


def _meaning(name: str) -> str:
    return BY_NAME[name].description if name in BY_NAME else MEANINGS.get(name, "")


def _plain(value: Any) -> Any:
    """A JSON-able value: numpy scalars as Python ones, times as ISO text, NaN as None."""
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, str) and value.strip()[:1] in "[{":
        try:
            return json.loads(value)
        except ValueError:
            return value
    if isinstance(value, pd.Timestamp):
        return value.isoformat()
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def _present(value: object) -> bool:
    if value is None:
        return False
    if isinstance(value, str):
        return bool(value.strip())
    if isinstance(value, float):
        return not math.isnan(value)
    try:
        return not bool(pd.isna(value))
    except (TypeError, ValueError):  # lists and arrays
        return len(value) > 0  # type: ignore[arg-type]


def _text(value: object) -> str | None:
    return str(value) if _present(value) else None
