"""Training evidence: how much a session looks like neural-network training, graded in 0-1.

No single level decides it, utilisation least of all: a job held at 60 % busy is still
training. Each signal below is turned into a log-odds contribution by a piecewise-linear
curve (clamped at its ends); a signal a session lacks (no profiling metrics, one GPU, no
power readings) contributes nothing. The contributions add to a prior, shrunk towards it
when the session has few samples per GPU, and the logistic function gives the evidence.
`gpuwatch features` prints this table; docs/DESIGN-NOTES.md says what each signal bought.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

PRIOR = -1.0  # log-odds of training before looking: sigmoid(-1) = 0.27
HALF_CONFIDENCE_SAMPLES = 10.0  # samples per GPU at which the evidence counts half
DIPS_PER_HOUR_MAX = 6.0  # more frequent dips are frames or requests, not checkpoints


@dataclass(frozen=True)
class Signal:
    """One workload signal: the feature it reads and its log-odds curve."""

    feature: str
    points: tuple[float, ...]  # feature values ...
    log_odds: tuple[float, ...]  # ... and the contribution at each (linear in between)
    meaning: str

    def contribution(self, values: pd.Series) -> np.ndarray:
        x = values.to_numpy(float)
        out = np.interp(x, self.points, self.log_odds)
        return np.where(np.isnan(x), 0.0, out)


SIGNALS: tuple[Signal, ...] = (
    Signal(
        "tensor_share",
        (0.05, 0.15, 0.3),
        (-12.0, 0.0, 2.0),
        "matrix (tensor-core) share of SM activity: neural networks are matrix math; mining, "
        "rendering and FP64 simulation are not",
    ),
    Signal(
        "fp64_share",
        (0.05, 0.2),
        (0.0, -8.0),
        "double-precision share of SM activity (FP64 pipe or FP64 tensor cores): simulation "
        "codes (CFD, molecular dynamics, climate) compute in FP64, neural networks do not; "
        "only where the exporter reports it (not a default dcgm-exporter counter)",
    ),
    Signal(
        "lockstep",
        (0.1, 0.6),
        (-6.0, 1.5),
        "GPUs change together (data-parallel steps, synchronous checkpoints); replicas "
        "serving requests and batch jobs on independent shards do not",
    ),
    Signal(
        "util_dispersion",
        (0.1, 0.3, 0.6, 1.2),
        (1.0, -2.5, -4.0, -6.0),
        "steady load (training, even when throttled) versus load that follows requests",
    ),
    Signal(
        "mem_fill",
        (0.1, 0.3, 0.6),
        (-2.0, 0.0, 0.8),
        "weights, optimiser state and activations fill the frame buffer; mining and "
        "rendering use little of it",
    ),
    Signal(
        "power_per_util",
        (0.45, 0.65),
        (-1.0, 1.0),
        "board power per unit of utilisation: dense matrix work draws more than shader or "
        "integer work at the same busy level",
    ),
    Signal(
        "dram_per_util",
        (0.15, 0.4),
        (-0.6, 0.6),
        "memory traffic per unit of utilisation: training streams weights and activations",
    ),
    Signal(
        "log10_nvlink_bps",
        (9.5, 10.3),
        (-1.0, 1.0),
        "GPU-to-GPU traffic per GPU (gradient all-reduce), on multi-GPU sessions whose GPUs "
        "report NVLink traffic",
    ),
    Signal(
        "log10_pcie_bps",
        (6.8, 7.5),
        (-0.5, 0.5),
        "host-to-GPU traffic (data loading): rendering and mining load once and stop",
    ),
    Signal(
        "active_share",
        (0.5, 0.9),
        (-1.5, 1.0),
        "share of samples with the GPU in use: notebooks and idle reservations sit mostly idle",
    ),
    Signal(
        "checkpoint_rhythm",
        (0.0, 0.5),
        (0.0, 0.8),
        f"regular synchronous dips, at most {DIPS_PER_HOUR_MAX:g} an hour (checkpoints, "
        "evaluations)",
    ),
)


def signal_values(features: pd.DataFrame) -> pd.DataFrame:
    """The signals' inputs, derived from the workload features (same index)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        pcie = np.log10(features["pcie_bps"].where(features["pcie_bps"] > 0))
        linked = (features["nvlink_bps"] > 0) & (features["n_gpus"] > 1)
        nvlink = np.log10(features["nvlink_bps"].where(linked))
    checkpoints = features["dip_regularity"].where(
        features["dip_rate_per_h"].between(0, DIPS_PER_HOUR_MAX, inclusive="right"), 0.0
    )
    return pd.DataFrame(
        {
            "log10_nvlink_bps": nvlink,
            "log10_pcie_bps": pcie,
            "active_share": 1.0 - features["idle_frac"],
            "checkpoint_rhythm": checkpoints,
        },
        index=features.index,
    ).join(features[[s.feature for s in SIGNALS if s.feature in features.columns]])


def contributions(features: pd.DataFrame) -> pd.DataFrame:
    """Log-odds contribution of each signal per session, confidence-weighted (same index)."""
    values = signal_values(features)
    n = features["samples_per_gpu"].to_numpy(float)
    confidence = np.nan_to_num(n / (n + HALF_CONFIDENCE_SAMPLES))
    return pd.DataFrame(
        {s.feature: confidence * s.contribution(values[s.feature]) for s in SIGNALS},
        index=features.index,
    )


def training_evidence(features: pd.DataFrame) -> pd.Series:
    """Evidence in 0-1 that each session is neural-network training."""
    log_odds = np.full(len(features), PRIOR)
    for values in contributions(features).to_numpy().T:  # column by column: partition-exact
        log_odds = log_odds + values
    return pd.Series(1.0 / (1.0 + np.exp(-log_odds)), index=features.index)
