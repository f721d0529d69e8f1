"""The supervised layer: fit on enough labels, monotone in the forest's risk, never below the
forest, saved and checked like the forest; thresholds for a target precision or an alert
budget; no labels change nothing; too few or one-sided labels are a clear message."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from detector.config import load_settings
from detector.errors import InputError
from detector.model import store
from detector.model.labels import match_truth
from detector.model.supervised import FOREST, SupervisedLayer, blend
from detector.pipeline import Inputs, build_features, train

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "data" / "samples"


@pytest.fixture(scope="module")
def sessions() -> pd.DataFrame:
    inputs = Inputs(
        (SAMPLES / "telemetry.parquet",), (SAMPLES / "access.jsonl.gz",), SAMPLES / "tenants.csv"
    )
    table = build_features(inputs, load_settings()).sessions.reset_index(drop=True)
    truth = match_truth(table, pd.read_csv(SAMPLES / "truth.csv"))
    return table.assign(positive=truth["restricted_training"].to_numpy(bool))


def labels(table: pd.DataFrame, per_class: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for positive in (True, False):
        pool = table.index[table["positive"] == positive]
        rows += list(rng.choice(pool, size=min(per_class, len(pool)), replace=False))
    picked = table.loc[rows]
    return pd.DataFrame(
        {
            "session_id": picked["session_id"],
            "tenant_id": picked["tenant_id"],
            "start": picked["start"],
            "end": picked["end"],
            "label": np.where(picked["positive"], "incident", "benign"),
        }
    )


def test_the_layer_is_monotone_in_the_forest_risk():
    rng = np.random.default_rng(1)
    n = 80
    X = pd.DataFrame(
        {"util_mean": rng.uniform(0, 100, n), "origin_evidence": rng.random(n), FOREST: 0.0}
    )
    y = (X["origin_evidence"] > 0.6).to_numpy() ^ (rng.random(n) < 0.1)
    X[FOREST] = 100 * X["origin_evidence"] * rng.uniform(0.3, 1, n)
    layer = SupervisedLayer(["util_mean", "origin_evidence"]).fit(X, y)
    for _, row in X.head(10).iterrows():
        grid = pd.DataFrame([row] * 21).assign(**{FOREST: np.linspace(0, 100, 21)})
        assert np.all(np.diff(layer.probability(grid)) >= -1e-12)
    assert layer.oof_.min() >= 0.0 and layer.oof_.max() <= 1.0 and len(layer.oof_) == n


def test_the_blend_never_lowers_the_forest_and_follows_confident_labels():
    forest = np.array([0.0, 40.0, 80.0, 95.0])
    assert np.all(blend(forest, np.zeros(4)) == forest)  # labels silent: the forest stands
    assert blend(forest, np.ones(4)).tolist() == [50.0, 70.0, 90.0, 97.5]


def test_without_labels_nothing_changes(sessions, tmp_path):
    stored, calibration = train(sessions, load_settings())
    assert stored.supervised is None and calibration is None and stored.heldout is None
    np.testing.assert_array_equal(stored.risk_score(sessions), stored.model.risk_score(sessions))
    store.save(stored, tmp_path)
    meta = store.load(tmp_path).metadata
    assert meta["supervised"] is None and meta["threshold_source"] == "policy"
    assert "supervised.skops" not in meta["files"]


def test_enough_labels_fit_a_layer_that_is_saved_hashed_and_reloaded(sessions, tmp_path):
    stored, calibration = train(sessions, load_settings(), labels(sessions, 12), holdout_share=0)
    assert stored.supervised is not None and calibration is not None
    forest = stored.model.risk_score(sessions)
    risk = stored.risk_score(sessions)
    assert np.all(risk >= forest - 1e-9)
    store.save(stored, tmp_path)
    loaded = store.load(tmp_path)
    assert loaded.metadata["supervised"]["incident"] == 12
    assert "supervised.skops" in loaded.metadata["files"]
    np.testing.assert_array_equal(loaded.risk_score(sessions), risk)
    assert "Supervised layer: gradient boosting" in (tmp_path / "MODEL_CARD.md").read_text()


def test_thresholds_for_a_target_precision_and_an_alert_budget(sessions):
    settings, few = load_settings(), labels(sessions, 12)
    stored, c = train(sessions, settings, few, holdout_share=0, target_precision=0.9)
    assert stored.metadata["threshold_source"] == "target-precision" and c.precision >= 0.9
    stored, c = train(sessions, settings, few, holdout_share=0, alert_budget=2)
    days = (sessions["end"].max() - sessions["start"].min()) / pd.Timedelta(days=1)
    alerts = (stored.risk_score(sessions) >= stored.alert_risk).sum()
    assert stored.metadata["threshold_source"] == "alert-budget"
    assert alerts <= 2 * days and alerts >= 2 * days - 3  # the budget is used, not wasted


def test_too_few_labels_warn_and_one_sided_labels_are_a_clear_message(sessions, caplog):
    with caplog.at_level(logging.WARNING):
        stored, c = train(sessions, load_settings(), labels(sessions, 2), holdout_share=0)
    assert stored.supervised is None and c is not None
    assert "no supervised layer (it needs 3 of each, 10 recommended)" in caplog.text
    # Best F1 on 2 + 2 labels is noise: the policy's threshold stays, and the log says so.
    assert stored.alert_risk == 70.0 and stored.metadata["threshold_source"] == "policy"
    assert "the alert threshold stays at the policy's 70.0" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        stored, _ = train(sessions, load_settings(), labels(sessions, 5), holdout_share=0)
    assert stored.supervised is not None and "noisy below 10 of each" in caplog.text
    only = labels(sessions, 5)
    only = only[only["label"] == "incident"]
    with pytest.raises(InputError, match="got 5 incident and 0 benign"):
        train(sessions, load_settings(), only, holdout_share=0)
