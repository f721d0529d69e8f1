"""Per-session explanations: which pieces of evidence made the risk, in the evidence's terms.

The forest scores products of two evidences (features/risk.py), each a sum of log-odds
contributions: the origin tells (features/origin.py) and the training signals
(features/training.py). A session's explanation names the strongest of each, with the value
that fired and its contribution in log-odds, so an analyst reads "clock +3.5" and "tensor
share +2.0" rather than a path length.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd

from ..features import origin, training

TOP_PER_FAMILY = 2


def evidence_items(features: pd.DataFrame) -> pd.DataFrame:
    """Long table: session index, family, name, value, contribution (log-odds), for every
    origin tell and training signal of every session."""
    tells = origin.tell_contributions(features)
    strengths = origin.tell_strengths(features)
    signals = training.contributions(features)
    values = training.signal_values(features)
    parts = [
        _long(tells, strengths, "origin"),
        _long(signals, values[list(signals.columns)], "workload"),
    ]
    return pd.concat(parts, ignore_index=True)


def top_features(features: pd.DataFrame, k: int = TOP_PER_FAMILY) -> pd.Series:
    """JSON list per session: its k strongest positive origin tells and training signals,
    strongest first (feature "origin:clock", value, contribution)."""
    items = evidence_items(features)
    items = items[items["contribution"] > 0].sort_values(
        ["row", "family", "contribution"], ascending=[True, True, False], kind="stable"
    )
    items = items.groupby(["row", "family"], sort=False).head(k)
    items = items.sort_values(["row", "contribution"], ascending=[True, False], kind="stable")
    lists: dict[int, list[dict]] = {}
    for row, family, name, value, contribution in items.itertuples(index=False):
        lists.setdefault(row, []).append(
            {
                "feature": f"{family}:{name}",
                "value": None if pd.isna(value) else round(float(value), 4),
                "contribution": round(float(contribution), 3),
            }
        )
    return pd.Series(
        [json.dumps(lists.get(i, [])) for i in range(len(features))],
        index=features.index,
        dtype=object,
    )


def _long(contrib: pd.DataFrame, values: pd.DataFrame, family: str) -> pd.DataFrame:
    n, k = contrib.shape
    return pd.DataFrame(
        {
            "row": np.repeat(np.arange(n), k),
            "family": family,
            "name": np.tile(np.asarray(contrib.columns, dtype=object), n),
            "value": values.to_numpy(float).ravel(),
            "contribution": contrib.to_numpy(float).ravel(),
        }
    )
