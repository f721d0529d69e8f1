"""Session features: a registry of names, units and meanings, and their extraction."""

from __future__ import annotations

import pandas as pd

from ..config import Settings
from .origin import origin_features
from .registry import BY_NAME, FEATURES, NAMES, Feature
from .risk import risk_features
from .workload import workload_features

__all__ = ["BY_NAME", "FEATURES", "NAMES", "Feature", "complete_features", "session_features"]


def session_features(
    sessions: pd.DataFrame,
    samples: pd.DataFrame,
    access: pd.DataFrame,
    settings: Settings,
    tenants: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Sessions with every registered feature, in registry order."""
    return complete_features(
        sessions, workload_features(sessions, samples, settings), access, settings, tenants
    )


def complete_features(
    sessions: pd.DataFrame,
    workload: pd.DataFrame,
    access: pd.DataFrame,
    settings: Settings,
    tenants: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Sessions with their workload features (computed per partition by an engine) plus the
    origin and risk features, in registry order."""
    origin = origin_features(sessions, access, settings, tenants)
    both = pd.concat([workload, origin], axis=1)
    both = pd.concat([both, risk_features(both)], axis=1)
    return pd.concat([sessions, both[NAMES]], axis=1)
