from __future__ import annotations

import json
import zipfile

import numpy as np
import pandas as pd
import pytest
import skops.io as sio
from sklearn.preprocessing import FunctionTransformer

from detector.errors import ModelError
from detector.model import store
from detector.model.calibrate import average_precision, calibrate_threshold
from detector.model.explain import contributions, top_features
from detector.model.forest import (
    MODEL_FEATURES,
    SessionRiskModel,
    average_path_length,
    severity,
)
from detector.model.labels import label_sessions, match_truth


def planted(n: int = 400, outliers: int = 3, seed: int = 0) -> tuple[pd.DataFrame, np.ndarray]:
    """Inliers near zero; outliers far out on `restricted_compute` only."""
    rng = np.random.default_rng(seed)
    X = pd.DataFrame(rng.normal(0, 1, (n, len(MODEL_FEATURES))), columns=list(MODEL_FEATURES))
    X.iloc[:outliers, 0] += 12
    y = np.zeros(n, bool)
    y[:outliers] = True
    return X, y


def test_planted_outliers_rank_first_and_risk_is_bounded_and_monotone():
    X, y = planted()
    model = SessionRiskModel(n_estimators=100).fit(X)
    anomaly = model.anomaly_score(X)
    assert average_precision(anomaly, y) == 1.0
    risk = model.risk_score(X)
    assert risk.min() >= 0 and risk.max() <= 100
    order = np.argsort(anomaly)
    assert (np.diff(risk[order]) >= 0).all()
    assert np.median(risk) == pytest.approx(0, abs=1)  # the training median maps to 0
    assert model.to_risk([0.5, model.score_top_, 1.0]).tolist() == [40.0, 100.0, 100.0]
    assert risk[y].min() > 40  # clear anomalies: s > 0.5
    assert model.score_top_ == pytest.approx(2 ** (-1 / average_path_length(256)))


def test_missing_values_are_imputed_and_missing_columns_refused():
    X, _ = planted()
    X.iloc[5:50, 1] = np.nan
    model = SessionRiskModel(n_estimators=50).fit(X)
    assert np.isfinite(model.anomaly_score(X)).all()
    with pytest.raises(ModelError, match="restricted_gpu_hours"):
        model.anomaly_score(X.drop(columns="restricted_gpu_hours"))
    with pytest.raises(ModelError, match="at least 2"):
        SessionRiskModel().fit(X.head(1))


def test_severity_bands():
    assert severity(np.array([0, 39.9, 40, 69.9, 70, 89.9, 90, 100])).tolist() == [
        "low",
        "low",
        "medium",
        "medium",
        "high",
        "high",
        "critical",
        "critical",
    ]


def test_explanations_name_the_planted_feature():
    X, y = planted()
    model = SessionRiskModel(n_estimators=100).fit(X)
    contrib = contributions(model, X)
    assert (contrib.loc[y].idxmax(axis=1) == "restricted_compute").all()
    top = [json.loads(t) for t in top_features(contrib, X)[y]]
    assert all(t[0]["feature"] == "restricted_compute" and t[0]["contribution"] > 0 for t in top)
    assert all(
        t[0]["value"] == pytest.approx(X.loc[i, "restricted_compute"], rel=1e-5)
        for i, t in zip(np.flatnonzero(y), top, strict=True)
    )


def test_save_load_roundtrip_gives_identical_scores(tmp_path):
    X, _ = planted()
    model = SessionRiskModel(n_estimators=50).fit(X)
    store.save(store.StoredModel(model, 70.0, {"model_version": "v1"}), tmp_path)
    meta = json.loads((tmp_path / "metadata.json").read_text())
    assert meta["features"] == list(MODEL_FEATURES)
    assert {"scikit-learn", "numpy", "skops"} <= set(meta["versions"])
    loaded = store.load(tmp_path)
    assert loaded.version == "v1" and loaded.alert_risk == 70.0
    np.testing.assert_array_equal(loaded.model.risk_score(X), model.risk_score(X))


def test_load_refuses_untrusted_types_and_missing_files(tmp_path):
    with pytest.raises(ModelError, match="no such file"):
        store.load(tmp_path)
    X, _ = planted()
    model = SessionRiskModel(n_estimators=10).fit(X)
    store.save(store.StoredModel(model, 70.0, {}), tmp_path)
    state = {"pipeline": FunctionTransformer(func=json.loads), "params": {}}
    sio.dump(state, tmp_path / "model.skops")
    with pytest.raises(ModelError, match="untrusted"):
        store.load(tmp_path)
    (tmp_path / "model.skops").write_bytes(b"not a zip")
    with pytest.raises(ModelError, match="unreadable"):
        store.load(tmp_path)
    assert not zipfile.is_zipfile(tmp_path / "model.skops")


def test_calibration_picks_best_f1_threshold():
    risk = np.array([5, 10, 20, 30, 60, 65, 80, 95.0])
    incident = np.array([0, 0, 0, 1, 0, 1, 1, 1], bool)
    c = calibrate_threshold(risk, incident)
    assert c.threshold == 30 and c.recall == 1.0 and c.precision == pytest.approx(0.8)
    with pytest.raises(ValueError, match="incident"):
        calibrate_threshold(risk, np.zeros(8, bool))


def sessions_frame() -> pd.DataFrame:
    t = pd.Timestamp("2026-10-05", tz="UTC")
    return pd.DataFrame(
        {
            "session_id": ["s1", "s2", "s3"],
            "tenant_id": ["a", "a", "b"],
            "start": [t, t + pd.Timedelta(days=1), t],
            "end": [
                t + pd.Timedelta(hours=5),
                t + pd.Timedelta(days=1, hours=5),
                t + pd.Timedelta(hours=2),
            ],
        }
    )


def test_labels_by_id_and_by_tenant_range_incident_wins():
    s = sessions_frame()
    t = pd.Timestamp("2026-10-05", tz="UTC")
    labels = pd.DataFrame(
        {
            "session_id": ["s3", None, None],
            "tenant_id": [None, "a", "a"],
            "start": [pd.NaT, t - pd.Timedelta(hours=1), t + pd.Timedelta(hours=1)],
            "end": [pd.NaT, t + pd.Timedelta(hours=2), t + pd.Timedelta(hours=3)],
            "label": ["benign", "benign", "incident"],
        }
    )
    assert label_sessions(s, labels).tolist() == ["incident", pd.NA, "benign"]


def test_truth_matching_takes_the_largest_overlap():
    s = sessions_frame()
    t = pd.Timestamp("2026-10-05", tz="UTC")
    truth = pd.DataFrame(
        {
            "tenant_id": ["a", "a"],
            "start": [t, t + pd.Timedelta(hours=20)],
            "end": [t + pd.Timedelta(hours=4), t + pd.Timedelta(days=2)],
            "scenario": ["x", "y"],
            "restricted_training": ["false", "true"],
        }
    )
    m = match_truth(s, truth)
    assert m["scenario"].tolist() == ["x", "y", "unmatched"]
    assert m["restricted_training"].tolist() == [False, True, False]
