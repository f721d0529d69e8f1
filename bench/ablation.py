"""What each modelling choice buys: average precision of several forest feature sets.

Simulates a fleet (or reads one), builds the session features once, then fits an Isolation
Forest on each feature set and ranks sessions against the simulator's truth. Not a test:

    .venv/bin/python bench/ablation.py --tenants 100 --days 4 --seed 2
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

from detector.config import load_settings
from detector.features import NAMES
from detector.features.registry import BY_NAME, RISK
from detector.model.calibrate import average_precision
from detector.model.forest import MODEL_FEATURES, SessionRiskModel
from detector.model.labels import match_truth
from detector.pipeline import Inputs, build_features
from detector.simulate import simulate

VARIANTS = {
    "naive: mean and max utilisation": ("util_mean", "util_max"),
    "generic: GPU-hours, lock-step, tensor, restricted and hosting shares": (
        "gpu_hours",
        "lockstep",
        "tensor_active_mean",
        "restricted_share",
        "hosting_share",
    ),
    "all workload and origin features (no interactions)": tuple(
        n for n in NAMES if BY_NAME[n].family != RISK
    ),
    "interactions on all GPUs' FLOP and GPU-hours (no per-GPU training test)": (
        "all_gpu_compute",
        "all_gpu_hours",
    ),
    "interactions with restricted_share only (no VPN-surviving evidence)": (
        "direct_compute",
        "direct_gpu_hours",
    ),
    "interactions + origin_evidence": (*MODEL_FEATURES, "origin_evidence"),
    "shipped: interactions only": MODEL_FEATURES,
}


def ablated(t: pd.DataFrame) -> dict[str, pd.Series]:
    """The shipped interactions with one ingredient taken away."""
    ev, direct = t["origin_evidence"], t["restricted_share"].fillna(0)
    return {
        "all_gpu_compute": np.log10(1 + t["est_flop"] / 1e18) * ev,
        "all_gpu_hours": np.log10(1 + t["gpu_hours"]) * ev,
        "direct_compute": np.log10(1 + t["training_flop"] / 1e18) * direct,
        "direct_gpu_hours": np.log10(1 + t["training_gpu_hours"]) * direct,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, help="a simulated fleet (default: simulate one)")
    parser.add_argument("--tenants", type=int, default=100)
    parser.add_argument("--days", type=float, default=4)
    parser.add_argument("--seed", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        data = args.data or Path(tmp)
        if not args.data:
            simulate(data, args.tenants, args.days, args.seed)
        table = build_features(
            Inputs(
                (data / "telemetry.parquet",), (data / "access.jsonl.gz",), data / "tenants.csv"
            ),
            load_settings(),
        ).sessions
        truth = match_truth(table, pd.read_csv(data / "truth.csv"))["restricted_training"]
    table = table.assign(**ablated(table))
    print(f"{len(table)} sessions, {int(truth.sum())} restricted training\n")
    print("| forest features | average precision |\n|---|---:|")
    for name, features in VARIANTS.items():
        model = SessionRiskModel(features=features).fit(table)
        print(f"| {name} | {average_precision(model.anomaly_score(table), truth):.3f} |")


if __name__ == "__main__":
    main()
