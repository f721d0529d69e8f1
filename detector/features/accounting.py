"""Compute accounting: GPU-hours and estimated training FLOP per tenant and per entity.

Training FLOP counts the sessions whose training evidence reaches one half, with the band of
the FLOP estimate (`est_flop_low` to `est_flop_high`, see workload.ACTIVITY_FACTORS). The
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
    parts = pd.DataFrame(
        {
            by: features[by].to_numpy(),
            "gpu_hours": features["gpu_hours"].to_numpy(float),
            "training_flop": np.where(training, features["est_flop"], 0.0),
            "training_flop_low": np.where(training, features["est_flop_low"], 0.0),
            "training_flop_high": np.where(training, features["est_flop_high"], 0.0),
        }
    )
    return parts.groupby(by, sort=True)[list(TOTALS)].sum()


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
