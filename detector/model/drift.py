"""Feature drift: how far a scoring batch's features moved from the model's training data.

At training, each numeric feature's distribution is kept in the model's metadata as BINS
quantile bins (inner edges and the share of sessions in each, plus the share missing). A
batch falls into the same bins, and the population stability index
PSI = sum over bins (batch share - training share) x ln(batch share / training share)
says how far it moved: below 0.1 stable, 0.1 to 0.25 moderate, 0.25 and above significant
(the usual bands). Empty bins count as SHARE_FLOOR so that the logarithm stays finite.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

BINS = 10
SHARE_FLOOR = 1e-4
BANDS = ((0.25, "significant"), (0.1, "moderate"), (0.0, "stable"))
METRIC = "gpuwatch_feature_drift_psi"


def profile(table: pd.DataFrame, names: Sequence[str]) -> dict[str, dict[str, Any]]:
    """The binned training distribution of each feature (for the metadata's `drift`)."""
    out = {}
    for name in names:
        values = table[name].to_numpy(float)
        present = values[~np.isnan(values)]
        edges = (
            np.unique(np.quantile(present, np.linspace(0, 1, BINS + 1)[1:-1]))
            if len(present)
            else np.array([])
        )
        shares, missing = _shares(values, edges)
        out[name] = {
            "edges": [float(e) for e in edges],
            "shares": [float(s) for s in shares],
            "missing": float(missing),
        }
    return out


def psi(expected: dict[str, Any], values: np.ndarray) -> float:
    """PSI of `values` against a feature's training profile."""
    edges = np.asarray(expected["edges"], float)
    shares, missing = _shares(np.asarray(values, float), edges)
    e = np.maximum(np.append(expected["shares"], expected["missing"]), SHARE_FLOOR)
    a = np.maximum(np.append(shares, missing), SHARE_FLOOR)
    return float(np.sum((a - e) * np.log(a / e)))


def band(value: float) -> str:
    return next(name for lowest, name in BANDS if value >= lowest)


def report(profiles: dict[str, dict[str, Any]], batch: pd.DataFrame) -> pd.DataFrame:
    """Per feature of the profile that the batch has: PSI and band, worst first."""
    rows = [
        {"feature": name, "psi": psi(p, batch[name].to_numpy(float))}
        for name, p in profiles.items()
        if name in batch.columns
    ]
    table = pd.DataFrame(rows, columns=["feature", "psi"])
    table["band"] = [band(v) for v in table["psi"]]
    return table.sort_values("psi", ascending=False, kind="stable").reset_index(drop=True)


def write_metrics(table: pd.DataFrame, path: Path, model_version: str) -> None:
    """The PSI of every feature as a gauge, in the textfile collector's format (atomic)."""
    from prometheus_client import CollectorRegistry, Gauge, write_to_textfile

    registry = CollectorRegistry()
    gauge = Gauge(
        METRIC,
        "Population stability index of a feature, scoring batch vs the model's training data "
        "(0.1 moderate, 0.25 significant drift)",
        ["feature", "model_version"],
        registry=registry,
    )
    for name, value in zip(table["feature"], table["psi"], strict=True):
        gauge.labels(feature=name, model_version=model_version).set(value)
    write_to_textfile(str(path), registry)


def _shares(values: np.ndarray, edges: np.ndarray) -> tuple[np.ndarray, float]:
    n = len(values)
    missing = np.isnan(values)
    counts = np.bincount(
        np.searchsorted(edges, values[~missing], side="right"), minlength=len(edges) + 1
    )
    if not n:
        return np.zeros(len(edges) + 1), 0.0
    return counts / n, float(missing.sum() / n)
