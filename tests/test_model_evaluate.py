"""`gpuwatch evaluate`: ranking and alert figures against labels or truth, and the curves."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from detector.cli import main
from detector.model.evaluate import evaluate, threshold_at_fpr


def test_figures_on_a_hand_checked_ranking():
    # 10 sessions, highest risk first: + + - + - - - - - -
    risk = np.array([90, 80, 75, 70, 60, 50, 40, 30, 20, 10], float)
    positive = np.array([1, 1, 0, 1, 0, 0, 0, 0, 0, 0], bool)
    result = evaluate(risk, positive, risk >= 72, top_k=(2, 5, 20))
    assert result.average_precision == pytest.approx((1 + 1 + 3 / 4) / 3)
    assert result.roc_auc == pytest.approx((7 + 7 + 6) / 21)
    assert result.precision_at_k == {"2": 1.0, "5": 0.6, "20": None}
    assert result.confusion == {"tp": 2, "fp": 1, "fn": 1, "tn": 6}
    assert (result.precision_at_alert, result.recall_at_alert) == (2 / 3, 2 / 3)
    # 7 negatives: 1 % of them is 0 sessions, so the cut is the top negative (75).
    assert result.fpr_threshold == 75.0 and result.recall_at_1pct_fpr == 2 / 3
    assert result.precision_at_1pct_fpr == 1.0


def test_fpr_threshold_never_splits_a_tie_and_one_class_gives_none():
    assert threshold_at_fpr(np.array([5.0, 5.0, 1.0]), 0.5) == 5.0
    assert threshold_at_fpr(np.arange(200.0), 0.01) == 197.0  # flags 198 and 199: 1 %
    result = evaluate(np.array([1.0, 2.0]), np.array([False, False]), np.array([False, True]))
    assert result.average_precision is None and result.recall_at_1pct_fpr is None
    assert result.confusion["fp"] == 1


def scores_file(tmp_path: Path) -> Path:
    rng = np.random.default_rng(0)
    n = 200
    start = pd.Timestamp("2026-10-05", tz="UTC") + pd.to_timedelta(np.arange(n), unit="h")
    positive = np.arange(n) % 10 == 0
    risk = np.where(positive, rng.uniform(50, 100, n), rng.uniform(0, 60, n))
    pd.DataFrame(
        {
            "session_id": [f"{i:016x}" for i in range(n)],
            "tenant_id": [f"t{i % 7}" for i in range(n)],
            "start": start,
            "end": start + pd.Timedelta(minutes=30),
            "risk_score": risk,
            "alert": risk >= 70,
            "top_features": "[]",
            "truth": positive,
        }
    ).to_parquet(tmp_path / "scores.parquet")
    return tmp_path / "scores.parquet"


def test_evaluate_with_labels_measures_only_labelled_sessions_and_draws_curves(tmp_path):
    path = scores_file(tmp_path)
    table = pd.read_parquet(path)
    some = table.iloc[::4]  # every 4th session labelled
    pd.DataFrame(
        {
            "session_id": some["session_id"],
            "label": np.where(some["truth"], "incident", "benign"),
        }
    ).to_csv(tmp_path / "labels.csv", index=False)
    out = tmp_path / "eval"
    result = CliRunner().invoke(
        main,
        ["evaluate", "--scores", str(path), "--labels", str(tmp_path / "labels.csv"),
         "--out", str(out), "--format", "json"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    expected = evaluate(some["risk_score"], some["truth"], some["alert"])
    assert report["sessions"] == 50 and report["positive"] == int(some["truth"].sum())
    assert report["average_precision"] == expected.average_precision
    assert {g["group"] for g in report["groups"]} == {"incident", "benign"}
    assert json.loads((out / "evaluation.json").read_text())["roc_auc"] == expected.roc_auc
    for name in ("pr_curve.png", "roc_curve.png"):
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_evaluate_needs_exactly_one_of_labels_and_truth(tmp_path):
    path = scores_file(tmp_path)
    result = CliRunner().invoke(main, ["evaluate", "--scores", str(path)])
    assert result.exit_code == 2 and "one of --labels or --truth" in result.output
