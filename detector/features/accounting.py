"""Compute accounting: GPU-hours and estimated training FLOP per tenant and per entity.

Training FLOP counts the sessions whose training evidence reaches one half, with the band of
the FLOP estimate (`est_flop_low` to `est_flop_high`, see summary.ACTIVITY_FACTORS). The
totals are compared with the policy's thresholds (`[accounting] thresholds_flop`): the figure
a compliance officer weighs in a licence decision.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

TRAINING_EVIDENCE_COUNTED = 0.5
TOTALS = ("gpu_hours", "training_flop", "training_flop_low", "training_flop_high")


def compute_totals(features: pd.DataFrame, by: str) -> pd.DataFrame:
    """Per value of column `by` (tenant_id or entity_id): the TOTALS over its sessions."""
    training = features["training_evidence"].to_numpy(float) >= TRAINING_EVIDENCE_COUNTED
    order = np.lexsort((features["session_id"].astype(str), features[by].astype(str)))
    keys, codes = np.unique(features[by].astype(str).to_numpy()[order], return_inverse=True)
    columns = {
        "gpu_hours": features["gpu_hours"].to_numpy(float),
        "training_flop": np.where(training, features["est_flop"], 0.0),
        "training_flop_low": np.where(training, features["est_flop_low"], 0.0),
        "training_flop_high": np.where(training, features["est_flop_high"], 0.0),
    }
    # summed in (key, session id) order: the same totals however the sessions came
    return pd.DataFrame(
        {
            name: np.bincount(codes, weights=np.nan_to_num(values[order]), minlength=len(keys))
            for name, values in columns.items()
        },
        index=pd.Index(keys, name=by),
    )


def threshold_crossed(flop: pd.Series | np.ndarray, thresholds: tuple[float, ...]) -> np.ndarray:
    """The highest threshold at or below each value (0 where none is)."""
    levels = np.r_[0.0, sorted(thresholds)]
    return levels[np.searchsorted(levels, np.asarray(flop, float), side="right") - 1]


def accounting_features(features: pd.DataFrame, thresholds: tuple[float, ...]) -> pd.DataFrame:
    """Per session (same index): its tenant's and its entity's totals, and the highest
    threshold its entity's training FLOP crosses."""
    out = pd.DataFrame(index=features.index)
    for by, prefix in (("tenant_id", "tenant_"), ("entity_id", "entity_")):
        totals = compute_totals(features, by)
        for column in TOTALS:
            out[prefix + column] = features[by].map(totals[column]).to_numpy(float)
    out["entity_flop_threshold"] = threshold_crossed(out["entity_training_flop"], thresholds)
    return out


def accounting_table(scores: pd.DataFrame, by: str, thresholds: tuple[float, ...]) -> pd.DataFrame:
    """Per entity or tenant of a scores table: tenants, the TOTALS, the highest threshold the
    training FLOP reaches and the highest session risk; largest training FLOP first."""
    totals = compute_totals(scores, by)
    members = scores.groupby(by)["tenant_id"].unique()
    totals["tenants"] = members.map(len)
    totals["members"] = members.map(lambda m: ",".join(sorted(map(str, m))))
    totals["threshold"] = threshold_crossed(totals["training_flop"], thresholds)
    totals["max_risk"] = scores.groupby(by)["risk_score"].max()
    return totals.sort_values(["training_flop", "gpu_hours"], ascending=False)
