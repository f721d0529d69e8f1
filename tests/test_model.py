from __future__ import annotations

import json
import zipfile

import numpy as np
import pandas as pd
import pytest
import skops.io as sio
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.preprocessing import FunctionTransformer

from detector.errors import ModelError
from detector.model import metadata, store
from detector.model.calibrate import average_precision, calibrate_threshold
from detector.model.forest import MODEL_FEATURES, SessionRiskModel, severity
from detector.model.labels import label_sessions, match_truth

REFERENCE = (0.25, 0.26)


def planted(n: int = 400, outliers: int = 3, seed: int = 0) -> tuple[pd.DataFrame, np.ndarray]:
    """Inliers near zero on both evidence features; outliers far out on both."""
    rng = np.random.default_rng(seed)
    X = pd.DataFrame(
        np.abs(rng.normal(0, 0.03, (n, len(MODEL_FEATURES)))), columns=list(MODEL_FEATURES)
    )
    X.iloc[:outliers] = [[0.9, 4.0], [0.8, 3.0], [0.95, 6.0]][:outliers]
    y = np.zeros(n, bool)
    y[:outliers] = True
    return X, y


def fitted(X: pd.DataFrame, n_estimators: int = 100) -> SessionRiskModel:
    return SessionRiskModel(reference=REFERENCE, n_estimators=n_estimators).fit(X)


def test_planted_outliers_rank_first_and_risk_is_anchored():
    X, y = planted()
    model = fitted(X)
    anomaly = model.anomaly_score(X)
    assert average_precision(anomaly, y) == 1.0
    risk = model.risk_score(X)
    assert risk.min() >= 0 and risk.max() <= 100
    assert np.median(risk) == pytest.approx(0, abs=1)  # the training median maps to 0
    reference = pd.DataFrame([REFERENCE], columns=list(MODEL_FEATURES))
    assert model.risk_score(reference)[0] == pytest.approx(70.0)  # the alert threshold
    assert risk[y].min() > 70


@settings(max_examples=200, deadline=None)
@given(st.floats(0, 1.5), st.floats(0, 9), st.floats(0, 1), st.floats(0, 5), st.integers(0, 3))
def test_risk_is_monotone_in_the_evidence(a, b, da, db, seed):
    model = MONOTONE[seed % len(MONOTONE)]
    low = pd.DataFrame([[a, b]], columns=list(MODEL_FEATURES))
    high = pd.DataFrame([[a + da, b + db]], columns=list(MODEL_FEATURES))
    assert model.risk_score(high)[0] >= model.risk_score(low)[0] - 1e-9  # float rounding


MONOTONE = [fitted(planted(seed=k)[0], n_estimators=50) for k in range(2)]


def test_a_sliver_next_to_the_mass_of_zeros_scores_below_large_evidence():
    rng = np.random.default_rng(3)
    X = pd.DataFrame(np.zeros((500, 2)), columns=list(MODEL_FEATURES))
    X.iloc[:400] = np.abs(rng.normal(0, 0.01, (400, 2)))
    model = fitted(X)
    sliver = pd.DataFrame([[0.02, 0.02]], columns=list(MODEL_FEATURES))
    large = pd.DataFrame([[0.9, 5.0]], columns=list(MODEL_FEATURES))
    assert model.risk_score(sliver)[0] < 70 <= model.risk_score(large)[0]


def test_the_alert_needs_each_evidence_not_only_size():
    X, _ = planted()
    gated = SessionRiskModel(
        reference=REFERENCE, gates=(("training_evidence", 0.5),), n_estimators=50
    ).fit(X)
    huge = pd.DataFrame([[0.9, 6.0]] * 2, columns=list(MODEL_FEATURES)).assign(
        training_evidence=[0.3, 0.6]
    )
    risk = gated.risk_score(huge)
    assert risk[0] < 70 <= risk[1]  # same size and anomaly, one evidence short of the gate
    assert gated.anomaly_score(huge)[0] == gated.anomaly_score(huge)[1]
    with pytest.raises(ModelError, match="training_evidence"):
        gated.risk_score(huge.drop(columns="training_evidence"))


def test_missing_values_are_no_evidence_and_missing_columns_are_refused():
    X, _ = planted()
    X.iloc[5:50, 1] = np.nan
    model = fitted(X, 50)
    assert np.isfinite(model.anomaly_score(X)).all()
    with pytest.raises(ModelError, match="restricted_compute"):
        model.anomaly_score(X.drop(columns="restricted_compute"))
    with pytest.raises(ModelError, match="at least 2"):
        fitted(X.head(1))
    with pytest.raises(ModelError, match="reference"):
        SessionRiskModel(reference=(0.1,)).fit(X)


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


def test_save_load_roundtrip_gives_identical_scores(tmp_path):
    X, _ = planted()
    model = fitted(X, 50)
    store.save(store.StoredModel(model, 70.0, {"model_version": "v1"}), tmp_path)
    meta = json.loads((tmp_path / "metadata.json").read_text())
    assert meta["features"] == list(MODEL_FEATURES)
    assert meta["normalisation"]["reference"] == list(REFERENCE)
    assert {"scikit-learn", "numpy", "skops"} <= set(meta["versions"])
    loaded = store.load(tmp_path)
    assert loaded.version == "v1" and loaded.alert_risk == 70.0
    np.testing.assert_array_equal(loaded.model.risk_score(X), model.risk_score(X))


def test_load_refuses_missing_files_and_untrusted_types_even_when_resealed(tmp_path):
    with pytest.raises(ModelError, match="no such file"):
        store.load(tmp_path)
    X, _ = planted()
    store.save(store.StoredModel(fitted(X, 10), 70.0, {}), tmp_path)
    sio.dump(FunctionTransformer(func=json.loads), tmp_path / "model.skops")
    with pytest.raises(ModelError, match="SHA-256 does not match"):
        store.load(tmp_path)
    reseal(tmp_path)  # an attacker who rewrites the hashes too still meets the type check
    with pytest.raises(ModelError, match="untrusted"):
        store.load(tmp_path)
    (tmp_path / "model.skops").write_bytes(b"not a zip")
    reseal(tmp_path)
    with pytest.raises(ModelError, match="unreadable"):
        store.load(tmp_path)
    assert not zipfile.is_zipfile(tmp_path / "model.skops")


def reseal(folder) -> None:
    """Rewrite the metadata's file hashes and integrity as a deliberate editor would."""
    meta = json.loads((folder / "metadata.json").read_text())
    meta["files"] = {n: metadata.file_sha256(folder / n) for n in meta["files"]}
    meta["integrity"] = metadata.canonical_sha256(meta)
    (folder / "metadata.json").write_text(json.dumps(meta))


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
