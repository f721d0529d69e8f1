"""A scores row as a case an analyst reads: what pushed the score, and every fact the row holds.

Generic over the scores table: known columns are grouped and formatted by their unit (from the
feature registry), and any column this module does not know (evidence the detection stages add
later) is still shown, under "Other evidence", with JSON values rendered as text.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pandas as pd

from .. import columns as c
from ..features.registry import ACCOUNTING, BY_NAME, ENTITY, ORIGIN, RISK, WORKLOAD

# Columns that identify or classify the session: shown in the case heading, not as evidence.
HEADING = (
    c.SESSION_ID,
    c.TENANT,
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
    "anomaly_score",
)
# Evidence columns outside the feature registry, by section.
EXTRA = {
    WORKLOAD: ((c.JOB, "", "scheduler job or pod"),),
    ORIGIN: (
        (c.COUNTRIES, "events", "countries the access came from, with event counts"),
        (c.ASNS, "events", "autonomous systems (networks) the access came from"),
        (c.AS_ORGS, "events", "organisations owning those networks"),
        (c.DECLARED_COUNTRY, "", "country the customer declared at sign-up (KYC)"),
        (c.BILLING_COUNTRY, "", "country of the billing address"),
    ),
    ENTITY: (
        (c.ENTITY, "", "the entity (linked tenants) this tenant belongs to"),
        (c.LINKED_TENANTS, "", "other tenants linked to this one"),
    ),
}
SECTIONS = (
    (WORKLOAD, "Workload: what ran on the GPUs"),
    (ORIGIN, "Origin: who drove it, and from where"),
    (ENTITY, "Entity: accounts linked to this tenant"),
    (ACCOUNTING, "Compute accounting: the tenant's and the entity's totals"),
    (RISK, "Combined risk features"),
    ("other", "Other evidence in the scores"),
)
SI = ((1e24, "Y"), (1e21, "Z"), (1e18, "E"), (1e15, "P"), (1e12, "T"), (1e9, "G"), (1e6, "M"))


@dataclass(frozen=True)
class Fact:
    name: str
    value: str
    meaning: str


@dataclass(frozen=True)
class Push:
    """One feature that pushed the score: its value and how hard it pushed (0-1 of the top)."""

    name: str
    value: str
    contribution: float
    width: float
    meaning: str


@dataclass(frozen=True)
class Case:
    session_id: str
    tenant: str
    start: pd.Timestamp
    end: pd.Timestamp
    job: str | None
    risk: float
    severity: str
    alert: bool
    suppressed_by: str | None
    suppression_reason: str | None
    summary: str
    pushes: tuple[Push, ...]
    sections: tuple[tuple[str, tuple[Fact, ...]], ...]


def build_case(row: pd.Series) -> Case:
    """The case of one scores row."""
    return Case(
        session_id=str(row[c.SESSION_ID]),
        tenant=str(row[c.TENANT]),
        start=pd.Timestamp(row[c.START]),
        end=pd.Timestamp(row[c.END]),
        job=_text(row.get(c.JOB)),
        risk=float(row[c.RISK]),
        severity=str(row[c.SEVERITY]),
        alert=bool(row[c.ALERT]),
        suppressed_by=_text(row.get(c.SUPPRESSED_BY)),
        suppression_reason=_text(row.get(c.SUPPRESSION_REASON)),
        summary=summary(row),
        pushes=pushes(row.get(c.TOP_FEATURES)),
        sections=sections(row),
    )


def pushes(top_features: Any) -> tuple[Push, ...]:
    """The top_features JSON as readable pushes, widest first."""
    try:
        items = json.loads(top_features) if isinstance(top_features, str) else top_features or []
        items = [i for i in items if isinstance(i, Mapping) and "feature" in i]
    except (ValueError, TypeError):
        return ()
    largest = max((float(i.get("contribution") or 0) for i in items), default=0.0) or 1.0
    return tuple(
        Push(
            name=str(i["feature"]),
            value=format_value(str(i["feature"]), i.get("value")),
            contribution=float(i.get("contribution") or 0),
            width=max(float(i.get("contribution") or 0), 0.0) / largest,
            meaning=_meaning(str(i["feature"])),
        )
        for i in items
    )


def sections(row: pd.Series) -> tuple[tuple[str, tuple[Fact, ...]], ...]:
    """Every column of the row outside the heading, grouped: workload, origin, entity, risk and
    anything else."""
    placed: dict[str, list[Fact]] = {key: [] for key, _ in SECTIONS}
    for key, extras in EXTRA.items():
        for name, _unit, meaning in extras:
            if name in row.index and _present(row[name]):
                placed[key].append(Fact(name, format_value(name, row[name]), meaning))
    known = set(HEADING) | {name for extras in EXTRA.values() for name, _, _ in extras}
    for name in row.index:
        if name in known or not _present(row[name]):
            continue
        family = BY_NAME[name].family if name in BY_NAME else "other"
        placed[family].append(Fact(name, format_value(name, row[name]), _meaning(name)))
    return tuple((title, tuple(placed[key])) for key, title in SECTIONS if placed[key])


def summary(row: pd.Series) -> str:
    """One sentence a newcomer reads first: size, duration, compute and origin, as available."""
    parts = []
    if _present(row.get(c.N_GPUS)):
        hosts = row.get(c.N_HOSTS)
        parts.append(
            f"{int(row[c.N_GPUS])} GPUs"
            + (f" on {int(hosts)} hosts" if _present(hosts) else "")
            + f" for {_hours(pd.Timestamp(row[c.END]) - pd.Timestamp(row[c.START]))}"
        )
    compute = []
    if _present(row.get(c.GPU_HOURS)):
        compute.append(f"{float(row[c.GPU_HOURS]):,.0f} GPU-hours")
    if _present(row.get(c.FLOP)):
        compute.append(f"about {_flop_interval(row)} of compute")
    if compute:
        parts.append(", ".join(compute))
    if _present(row.get("training_evidence")):
        parts.append(f"training evidence {float(row['training_evidence']):.0%}")
    if _present(row.get("origin_evidence")):
        parts.append(f"restricted-origin evidence {float(row['origin_evidence']):.0%}")
    return "; ".join(parts) + "." if parts else ""


def format_value(name: str, value: Any) -> str:
    """A value as an analyst reads it, by the unit the feature registry gives the column."""
    if not _present(value):
        return "n/a"
    if name == c.FLOP:
        return si(float(value), "FLOP")
    if isinstance(value, str) and value.strip()[:1] in "[{":
        try:
            return readable(json.loads(value))
        except ValueError:
            return value
    if isinstance(value, Mapping | list | tuple):
        return readable(value)
    if isinstance(value, bool) or not isinstance(value, int | float):
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
    if unit == "FLOP":
        return si(v, "FLOP")
    if unit == "B/s":
        return si(v, "B/s")
    if unit in ("GPU h", "W", "%", "1/h"):
        return f"{v:,.1f} {unit}"
    if unit in ("GPUs", "hosts", "events", "countries", "ASNs"):
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


def _flop_interval(row: pd.Series) -> str:
    low, high = row.get(c.FLOP_LOW), row.get(c.FLOP_HIGH)
    middle = si(float(row[c.FLOP]), "FLOP")
    if _present(low) and _present(high):
        return f"{middle} ({si(float(low), 'FLOP')} to {si(float(high), 'FLOP')})"
    return middle


def _hours(span: pd.Timedelta) -> str:
    hours = span.total_seconds() / 3600
    return f"{hours:.1f} h" if hours >= 1 else f"{span.total_seconds() / 60:.0f} min"


def _meaning(name: str) -> str:
    return BY_NAME[name].description if name in BY_NAME else ""


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
