"""Session features: a registry of names, units and meanings, and their extraction.

Workload features are computed per tenant partition by an engine (`workload_features`);
everything else here runs once over the small tables: entities (linking tenants through
per-session and per-tenant summaries), origin evidence per tenant and per entity over the
access history, compute accounting, and the forest's inputs.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..config import Settings
from .accounting import accounting_features
from .entities import entity_features
from .origin import (
    FACT_COLUMNS,
    HISTORY_COLUMNS,
    PRIOR,
    origin_facts,
    origin_history,
    tenant_registry,
    window_events,
)
from .registry import BY_NAME, FEATURES, NAMES, Feature
from .risk import risk_features
from .workload import DIP_TIMES, workload_features

__all__ = ["BY_NAME", "FEATURES", "NAMES", "Feature", "complete_features", "session_features"]
# Per-session text beside the features: the entity, and the facts behind the origin tells.
TEXT_COLUMNS = ["entity_id", "linked_tenants", "link_reasons", *FACT_COLUMNS]


def session_features(
    sessions: pd.DataFrame,
    samples: pd.DataFrame,
    access: pd.DataFrame,
    settings: Settings,
    tenants: pd.DataFrame | None = None,
    as_of: pd.Timestamp | None = None,
) -> pd.DataFrame:
    """Sessions with every registered feature, in registry order."""
    return complete_features(
        sessions, workload_features(sessions, samples, settings), access, settings, tenants, as_of
    )


def complete_features(
    sessions: pd.DataFrame,
    workload: pd.DataFrame,
    access: pd.DataFrame,
    settings: Settings,
    tenants: pd.DataFrame | None = None,
    as_of: pd.Timestamp | None = None,
) -> pd.DataFrame:
    """Sessions with their workload features (computed per partition by an engine) plus the
    entity, origin, accounting and risk features: the session columns, TEXT_COLUMNS, then
    the registry's features in order. Origin evidence looks at the access history before
    `as_of` (default: just after the latest session or event)."""
    as_of = as_of if as_of is not None else _latest(sessions, access)
    table = pd.concat([sessions, workload], axis=1)
    entities, entity_of = entity_features(table, access, tenants, settings)
    table = pd.concat([table.drop(columns=[DIP_TIMES]), entities], axis=1)

    registry = tenant_registry(tenants, settings)
    tenant_key = access["tenant_id"].astype(str)
    by_tenant = origin_history(access, tenant_key, settings, as_of, registry)
    entity_registry = registry.groupby(entity_of.reindex(registry.index)).max()
    by_entity = origin_history(access, tenant_key.map(entity_of), settings, as_of, entity_registry)
    origin = by_tenant.reindex(table["tenant_id"].astype(str)).set_axis(table.index)
    table[HISTORY_COLUMNS] = origin[HISTORY_COLUMNS]
    facts = origin_facts(access, tenants, settings, as_of).reindex(table["tenant_id"].astype(str))
    table[FACT_COLUMNS] = facts.set_axis(table.index)
    table["access_events"] = window_events(table, access, settings.sessions.access_lookback_seconds)
    own = origin["origin_evidence"].fillna(evidence_floor()).to_numpy()
    pooled = by_entity["origin_evidence"].reindex(table["entity_id"]).to_numpy()
    table["entity_origin_evidence"] = pooled
    table["origin_evidence"] = np.fmax(own, pooled)

    table = table.join(accounting_features(table, settings.accounting.thresholds_flop))
    table = table.join(risk_features(table))
    head = [c for c in table.columns if c not in NAMES and c not in TEXT_COLUMNS]
    return table[[*head, *TEXT_COLUMNS, *NAMES]]


def evidence_floor() -> float:
    """Origin evidence of a tenant nothing is known about: the prior."""
    return float(1.0 / (1.0 + np.exp(-PRIOR)))


def _latest(sessions: pd.DataFrame, access: pd.DataFrame) -> pd.Timestamp:
    times = [t.max() for t in (sessions.get("end"), access.get("timestamp")) if t is not None]
    times = [t for t in times if pd.notna(t)]
    latest = max(times) if times else pd.Timestamp.now(tz="UTC")
    return pd.Timestamp(latest) + pd.Timedelta(seconds=1)
