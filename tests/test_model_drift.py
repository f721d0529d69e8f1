"""Drift: PSI per feature against the binned training distribution kept in the model."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
from click.testing import CliRunner

from detector.cli import main
from detector.model import drift
from detector.model.metadata import DriftFeature
from detector.model.registry import Registry

ROOT = Path(__file__).resolve().parents[1]


def test_same_distribution_is_stable_a_shift_is_significant_and_missing_counts():
    rng = np.random.default_rng(0)
    train = pd.DataFrame({"util_mean": rng.normal(50, 10, 5000)})
    p = drift.profile(train, ["util_mean"])["util_mean"]
    DriftFeature.model_validate(p)  # what the metadata schema accepts
    assert len(p["edges"]) == drift.BINS - 1 and np.allclose(p["shares"], 0.1, atol=0.01)
    assert drift.psi(p, rng.normal(50, 10, 2000)) < 0.1
    assert 0.1 <= drift.psi(p, rng.normal(54, 10, 2000)) < 0.25
    assert drift.psi(p, rng.normal(65, 10, 2000)) >= 0.25
    half_missing = np.where(rng.random(2000) < 0.5, np.nan, rng.normal(50, 10, 2000))
    assert drift.band(drift.psi(p, half_missing)) == "significant"


def test_hand_computed_psi_and_ties_collapse_bins():
    p = {"edges": [1.0], "shares": [0.5, 0.5], "missing": 0.0}
    # Batch: 3/4 below the edge, 1/4 above.
    expected = (0.75 - 0.5) * np.log(0.75 / 0.5) + (0.25 - 0.5) * np.log(0.25 / 0.5)
    assert drift.psi(p, np.array([0.0, 0.5, 0.9, 2.0])) == expected
    zeros = drift.profile(pd.DataFrame({"x": np.zeros(100)}), ["x"])["x"]
    assert zeros["edges"] == [0.0] and zeros["shares"] == [0.0, 1.0]


def test_drift_command_prints_the_worst_features_and_writes_the_metric(tmp_path):
    model = Registry(ROOT / "models").load()
    names = list(model.metadata["drift"])
    rng = np.random.default_rng(1)
    batch = pd.DataFrame({n: rng.random(50) for n in names})
    batch["session_id"] = [f"{i:016x}" for i in range(50)]
    batch.to_parquet(tmp_path / "scores.parquet")
    prom = tmp_path / "drift.prom"
    result = CliRunner().invoke(
        main,
        ["drift", "--scores", str(tmp_path / "scores.parquet"), "--registry",
         str(ROOT / "models"), "--metrics-file", str(prom), "--format", "json"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    out = json.loads(result.output)
    assert out["model_version"] == model.version and len(out["features"]) == len(names)
    psis = [f["psi"] for f in out["features"]]
    assert psis == sorted(psis, reverse=True) and out["bands"]["significant"] > 0
    text = prom.read_text()
    assert "# TYPE gpuwatch_feature_drift_psi gauge" in text
    assert text.count("gpuwatch_feature_drift_psi{") == len(names)
