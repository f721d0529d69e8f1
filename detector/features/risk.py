"""Interaction features: large-model training weighted by restricted-origin evidence.

These make the sessions gpuwatch exists for the rare, isolated thing in feature space: a
domestic pre-training run, a miner or an HPC job has no origin evidence; a tourist login from
a country of concern has no training behind it. Only the product of the two is large.
"""

from __future__ import annotations

import numpy as np
import pandas as pd


def risk_features(features: pd.DataFrame) -> pd.DataFrame:
    """Interaction columns computed from workload and origin features (same index)."""
    evidence = features["origin_evidence"]
    return pd.DataFrame(
        {
            "restricted_compute": np.log10(1.0 + features["training_flop"] / 1e18) * evidence,
            "restricted_gpu_hours": np.log10(1.0 + features["training_gpu_hours"]) * evidence,
        },
        index=features.index,
    )
