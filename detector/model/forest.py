"""The session risk model: an Isolation Forest behind the scikit-learn estimator contract.

This is the one place where sklearn's score is turned into ours. `anomaly_score` is the
forest's s(x) = 2^(-E[h(x)]/c(psi)) in (0, 1), higher = more anomalous. `risk_score` maps it
to 0-100 through three anchors: the training population's median score maps to 0 (a typical
session), the paper's line s = 0.5 ("clearly anomalous" above it) to 40, where the medium
severity band starts, and the highest score the forest can give (a session isolated by the
first split of every tree, s = 2^(-1/c(psi))) to 100; linear in between. The median and the
top are fitted attributes saved with the model, so scores of different runs are comparable.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator
from sklearn.ensemble import IsolationForest
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline
from sklearn.utils.validation import check_is_fitted

from ..errors import ModelError
from ..schema import SEVERITY_BANDS

# The forest sees these features: interactions and origin evidence that make restricted
# large-model training the rare thing (see docs/DESIGN-NOTES.md for what each bought).
MODEL_FEATURES = ("restricted_compute", "restricted_gpu_hours")
ANOMALY_LINE, RISK_AT_LINE = 0.5, 40.0


class SessionRiskModel(BaseEstimator):
    """Isolation Forest over session features, scoring higher = more anomalous."""

    def __init__(
        self,
        features: Sequence[str] = MODEL_FEATURES,
        n_estimators: int = 300,
        max_samples: int | str = "auto",
        random_state: int = 0,
    ) -> None:
        self.features = features
        self.n_estimators = n_estimators
        self.max_samples = max_samples
        self.random_state = random_state

    def fit(self, X: pd.DataFrame, y: None = None) -> SessionRiskModel:
        matrix = self._matrix(X)
        if len(matrix) < 2:
            raise ModelError(f"need at least 2 sessions to train, got {len(matrix)}")
        self.pipeline_ = Pipeline(
            [
                ("impute", SimpleImputer(strategy="median", keep_empty_features=True)),
                (
                    "forest",
                    IsolationForest(
                        n_estimators=self.n_estimators,
                        max_samples=self.max_samples,
                        random_state=self.random_state,
                    ),
                ),
            ]
        ).fit(matrix)
        self.score_median_ = float(np.median(self._anomaly(matrix)))
        self.score_top_ = float(2.0 ** (-1.0 / average_path_length(self.forest_.max_samples_)))
        self.n_training_sessions_ = len(matrix)
        return self

    def anomaly_score(self, X: pd.DataFrame) -> np.ndarray:
        """The forest's anomaly score s(x) in (0, 1); higher = more anomalous."""
        check_is_fitted(self, "pipeline_")
        return self._anomaly(self._matrix(X))

    def risk_score(self, X: pd.DataFrame) -> np.ndarray:
        return self.to_risk(self.anomaly_score(X))

    def to_risk(self, anomaly: np.ndarray) -> np.ndarray:
        """Map anomaly scores to 0-100 through the median, s = 0.5 and the top anchors."""
        check_is_fitted(self, "pipeline_")
        low, top = self.score_median_, self.score_top_
        if low < ANOMALY_LINE < top:
            xp, fp = [low, ANOMALY_LINE, top], [0.0, RISK_AT_LINE, 100.0]
        else:  # no clear typical bulk below the line: median to top, linearly
            xp, fp = [low, max(top, low + 1e-6)], [0.0, 100.0]
        return np.interp(np.asarray(anomaly, dtype=float), xp, fp)

    def transform(self, X: pd.DataFrame) -> np.ndarray:
        """The imputed matrix the forest sees (used by the explainer)."""
        check_is_fitted(self, "pipeline_")
        return self.pipeline_.named_steps["impute"].transform(self._matrix(X))

    @property
    def forest_(self) -> IsolationForest:
        return self.pipeline_.named_steps["forest"]

    def _anomaly(self, matrix: pd.DataFrame) -> np.ndarray:
        if matrix.empty:
            return np.zeros(0)
        return -self.pipeline_.score_samples(matrix)

    def _matrix(self, X: pd.DataFrame) -> pd.DataFrame:
        missing = [f for f in self.features if f not in X.columns]
        if missing:
            raise ModelError(
                f"the model needs feature(s) {missing}; the table has "
                f"{len(X.columns)} columns without them"
            )
        return X.loc[:, list(self.features)].astype(float)


def average_path_length(n: int) -> float:
    """c(n): the mean path length of an unsuccessful binary-search-tree lookup among n points."""
    if n <= 1:
        return 1.0  # a forest of single points: any path is as short as it gets
    if n == 2:
        return 1.0
    return 2.0 * (np.log(n - 1.0) + np.euler_gamma) - 2.0 * (n - 1.0) / n


def severity(risk: np.ndarray | pd.Series) -> np.ndarray:
    """Severity band of each risk score: low, medium, high or critical."""
    risk = np.asarray(risk, dtype=float)
    out = np.full(risk.shape, SEVERITY_BANDS[-1][1], dtype=object)
    for lowest, name in reversed(SEVERITY_BANDS):
        out[risk >= lowest] = name
    return out
