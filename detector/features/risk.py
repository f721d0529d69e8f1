"""The forest's inputs: restricted-origin evidence times training evidence, and that times
the compute of the session's in-step group.

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


def risk_features(features: pd.DataFrame) -> pd.DataFrame:
    """Interaction columns (same index)."""
    both = features["origin_evidence"] * features["training_evidence"]
    return pd.DataFrame(
        {
            "restricted_training": both,
            "restricted_compute": both * compute_scale(features["group_flop"].fillna(0.0)),
        },
        index=features.index,
    )
