"""The forest's inputs: restricted-origin evidence times training evidence times the size of
the session's in-step group, in compute and in GPU time.

Both are large only when the people are in a country of concern *and* the work is training:
a domestic pre-training run, a miner or an HPC job has no origin evidence; a restricted
tourist login or inference service has no training behind it. Both grow with every piece of
evidence (monotone), and a benign session sits on a continuum near zero, not on a point
mass that the forest would isolate slivers next to.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

FLOP_UNIT = 1e18  # log10(1 + FLOP / 1e18): 0 for nothing, 1 at ~1e19, 7 at 1e25


def compute_scale(flop: pd.Series | np.ndarray | float) -> np.ndarray:
    """log10(1 + FLOP / FLOP_UNIT)."""
    return np.log10(1.0 + np.asarray(flop, dtype=float) / FLOP_UNIT)


def hours_scale(gpu_hours: pd.Series | np.ndarray | float) -> np.ndarray:
    """log10(1 + GPU-hours)."""
    return np.log10(1.0 + np.asarray(gpu_hours, dtype=float))


def risk_features(features: pd.DataFrame) -> pd.DataFrame:
    """Interaction columns (same index): restricted_training (the product of the evidences),
    and the forest's inputs restricted_compute and restricted_gpu_hours."""
    both = features["origin_evidence"] * features["training_evidence"]
    return pd.DataFrame(
        {
            "restricted_training": both,
            "restricted_compute": both * compute_scale(features["group_flop"].fillna(0.0)),
            "restricted_gpu_hours": both * hours_scale(features["group_gpu_hours"].fillna(0.0)),
        },
        index=features.index,
    )
