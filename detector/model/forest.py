"""The session risk model: an Isolation Forest behind the scikit-learn estimator contract.

This is the one place where sklearn's score is turned into ours, in three steps.

1. The forest's score s(x) = 2^(-E[h(x)]/c(psi)) in (0, 1), higher = more anomalous, over
   the model features: restricted-origin evidence x training evidence x the size of the
   session's in-step group, in FLOP and in GPU-hours (features/risk.py). Both grow with every
   piece of evidence.
2. Monotone in the evidence: a forest isolates a small value next to a mass of zeros as fast
   as a large one, so s(x) alone is not monotone. `anomaly_score` is the monotone envelope of
   s: the forest is evaluated on a grid spanning the features, the running maximum is taken
   along every axis, and a session's score is read off the grid by multilinear
   interpolation (monotone between monotone grid points), plus a small term growing with the
   features (TIE_SHARE of the forest's range), which keeps the order of the sessions where
   the forest is flat (beyond the training data). More evidence never scores lower.
3. `risk_score` maps the anomaly score to 0-100 by three anchors: the training median -> 0,
   the score of the policy's reference case -> `reference_risk` (the alert threshold, 70 by
   default), and the top of the grid -> 100; linear in between. The reference case is a point
   in feature space, in units (origin evidence, training evidence, FLOP: `[scoring]` of the
   settings), so the alert means the same thing whichever fleet the forest was trained on:
   a session alerts when the forest finds it at least as anomalous as the reference case.
4. The alert also needs each piece of evidence itself (`gates`: origin and training evidence
   and the group's GPU-hours at least the reference's; beyond its training data the forest is
   flat, so size above the reference is gated, not left to the score): where one falls short,
   the risk is scaled into 0 to just below the reference risk, so a huge job with a little of
   one evidence cannot alert on its size alone, and such sessions keep their order among
   themselves. The scaling lifts as the evidence grows, so risk stays monotone.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import product

import numpy as np
import pandas as pd
from scipy.interpolate import RegularGridInterpolator
from sklearn.base import BaseEstimator
from sklearn.ensemble import IsolationForest
from sklearn.utils.validation import check_is_fitted

from ..errors import ModelError
from ..schema import SEVERITY_BANDS

# The forest sees these features (features/risk.py; docs/DESIGN-NOTES.md says what they bought).
MODEL_FEATURES = ("restricted_compute", "restricted_gpu_hours")
GRID_POINTS = 65  # per feature: the envelope's resolution
GRID_HEADROOM = 1.5  # the grid reaches this far beyond the largest training value
GATE_MARGIN = 0.01  # risk points below the reference risk where a gate falls short
# Beyond the training data the forest is flat, so sessions there would tie; a term this share
# of the forest's range, growing with the features, keeps them in the order of their evidence.
TIE_SHARE = 0.02


class SessionRiskModel(BaseEstimator):
    """Isolation Forest over session features, scoring higher = more anomalous, monotone."""

    def __init__(
        self,
        features: Sequence[str] = MODEL_FEATURES,
        reference: Sequence[float] = (),
        reference_risk: float = 70.0,
        gates: Sequence[tuple[str, float]] = (),
        n_estimators: int = 300,
        max_samples: int | str = "auto",
        random_state: int = 0,
    ) -> None:
        self.features = features
        self.reference = reference
        self.reference_risk = reference_risk
        self.gates = gates
        self.n_estimators = n_estimators
        self.max_samples = max_samples
        self.random_state = random_state

    def fit(self, X: pd.DataFrame, y: None = None) -> SessionRiskModel:
        matrix = self._matrix(X).to_numpy()
        if len(matrix) < 2:
            raise ModelError(f"need at least 2 sessions to train, got {len(matrix)}")
        if len(self.reference) != len(self.features):
            raise ModelError(
                f"the reference case has {len(self.reference)} values for "
                f"{len(self.features)} features"
            )
        self.forest_ = IsolationForest(
            n_estimators=self.n_estimators,
            max_samples=self.max_samples,
            random_state=self.random_state,
        ).fit(matrix)
        top = np.maximum(np.nanmax(matrix, axis=0), np.asarray(self.reference, float))
        self.grid_ = [np.linspace(0.0, GRID_HEADROOM * max(t, 1e-6), GRID_POINTS) for t in top]
        points = np.array(list(product(*self.grid_)))
        raw = -self.forest_.score_samples(points).reshape([GRID_POINTS] * len(self.grid_))
        for axis in range(raw.ndim):
            raw = np.maximum.accumulate(raw, axis=axis)
        self.envelope_ = raw
        self.tie_ = 0.0
        self.score_median_ = float(np.median(self._envelope(matrix)))
        self.tie_ = TIE_SHARE * float(raw.max() - self.score_median_) / len(self.grid_)
        self.score_reference_ = float(self._envelope(np.asarray([self.reference], float))[0])
        self.score_top_ = float(self._envelope(np.asarray([[g[-1] for g in self.grid_]]))[0])
        self.n_training_sessions_ = len(matrix)
        return self

    def anomaly_score(self, X: pd.DataFrame) -> np.ndarray:
        """The forest's anomaly score, made monotone in every feature; higher = more anomalous."""
        check_is_fitted(self, "envelope_")
        return self._envelope(self._matrix(X))

    def risk_score(self, X: pd.DataFrame) -> np.ndarray:
        """Risk 0-100: the anchored anomaly score, scaled below the reference risk where a
        gate's evidence falls short."""
        risk = self.to_risk(self.anomaly_score(X))
        short = np.zeros(len(risk), dtype=bool)
        for name, level in self.gates:
            if name not in X.columns:
                raise ModelError(f"the model's alert needs the column {name!r}")
            short |= ~(X[name].to_numpy(float) >= level)
        below = (self.reference_risk - GATE_MARGIN) / 100.0
        return np.where(short, risk * below, risk)

    def to_risk(self, anomaly: np.ndarray) -> np.ndarray:
        """Map anomaly scores to 0-100 through the median, reference and top anchors."""
        check_is_fitted(self, "envelope_")
        low, ref, top = self.score_median_, self.score_reference_, self.score_top_
        if low < ref < top:
            xp, fp = [low, ref, top], [0.0, self.reference_risk, 100.0]
        else:  # the reference case is typical of the training fleet, or at its very top
            xp, fp = [low, max(top, low + 1e-9)], [0.0, 100.0]
        return np.interp(np.asarray(anomaly, dtype=float), xp, fp)

    def _envelope(self, matrix: np.ndarray | pd.DataFrame) -> np.ndarray:
        values = np.nan_to_num(np.asarray(matrix, dtype=float))
        if not len(values):
            return np.zeros(0)
        tops = np.array([g[-1] for g in self.grid_])
        clipped = np.clip(values, 0.0, tops)
        lookup = RegularGridInterpolator(tuple(self.grid_), self.envelope_, method="linear")
        return lookup(clipped) + self.tie_ * (clipped / tops).sum(axis=1)

    def _matrix(self, X: pd.DataFrame) -> pd.DataFrame:
        missing = [f for f in self.features if f not in X.columns]
        if missing:
            raise ModelError(
                f"the model needs feature(s) {missing}; the table has "
                f"{len(X.columns)} columns without them"
            )
        return X.loc[:, list(self.features)].astype(float).fillna(0.0)


def severity(risk: np.ndarray | pd.Series) -> np.ndarray:
    """Severity band of each risk score: low, medium, high or critical."""
    risk = np.asarray(risk, dtype=float)
    out = np.full(risk.shape, SEVERITY_BANDS[-1][1], dtype=object)
    for lowest, name in reversed(SEVERITY_BANDS):
        out[risk >= lowest] = name
    return out
