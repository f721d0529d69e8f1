"""The supervised layer: what analysts' labels teach, blended with the forest.

A `HistGradientBoostingClassifier` learns incident vs benign from the labelled sessions, on
the session features plus the forest's own risk, with probabilities calibrated by
cross-validation (`CalibratedClassifierCV`, sigmoid: few labels). It is constrained to be
non-decreasing in the forest's risk and in the evidence features, so more evidence never
lowers its probability either.

The blend keeps the forest as the core: risk = max(forest risk, WEIGHT x forest risk +
(1 - WEIGHT) x 100 x p). Labels can raise a session the forest ranks low (a pattern analysts
confirmed), never lower one: where labels are silent (p small, e.g. a family no analyst has
seen) the forest's risk, and so its monotone alert, stands unchanged. Benign verdicts act
through the threshold and the suppression rules, not by hiding evidence.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator
from sklearn.calibration import CalibratedClassifierCV
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.model_selection import StratifiedKFold, cross_val_predict
from sklearn.utils.validation import check_is_fitted

from ..errors import InputError

FOREST = "forest_risk"  # the forest's risk, a feature of the supervised layer
# Labels per class: below MIN_PER_CLASS a warning (the layer is noisy); below FIT_MIN_PER_CLASS
# no layer (calibration needs that many of each class across its folds).
MIN_PER_CLASS = 10
FIT_MIN_PER_CLASS = 3
WEIGHT = 0.5  # the forest's share inside the supervised term of the blend
MISSING = -1.0  # features are non-negative: a tree tells a missing value apart (sklearn's own NaN
# handling fails on a column that is all missing in a fold)
MONOTONE = (FOREST, "origin_evidence", "training_evidence", "restricted_compute")


class SupervisedLayer(BaseEstimator):
    """Calibrated gradient boosting over `features` and the forest's risk."""

    def __init__(self, features: Sequence[str] = (), random_state: int = 0) -> None:
        self.features = features
        self.random_state = random_state

    def fit(self, X: pd.DataFrame, y: np.ndarray) -> SupervisedLayer:
        y = np.asarray(y, bool)
        check_label_counts(int(y.sum()), int((~y).sum()))
        folds = min(3, int(y.sum()), int((~y).sum()))
        self.calibrated_ = CalibratedClassifierCV(
            self._booster(len(y)), method="sigmoid", cv=self._folds(folds)
        )
        with warnings.catch_warnings():  # tiny folds: sklearn warns about what we documented
            warnings.simplefilter("ignore", UserWarning)
            self.calibrated_.fit(self._matrix(X), y)
            self.oof_ = cross_val_predict(
                CalibratedClassifierCV(
                    self._booster(len(y)), method="sigmoid", cv=self._folds(max(2, folds - 1))
                ),
                self._matrix(X),
                y,
                cv=self._folds(folds),
                method="predict_proba",
            )[:, 1]
        self.n_incident_, self.n_benign_ = int(y.sum()), int((~y).sum())
        return self

    def probability(self, X: pd.DataFrame) -> np.ndarray:
        """Calibrated probability that each session is an incident."""
        check_is_fitted(self, "calibrated_")
        if not len(X):
            return np.zeros(0)
        return self.calibrated_.predict_proba(self._matrix(X))[:, 1]

    def _matrix(self, X: pd.DataFrame) -> pd.DataFrame:
        columns = [*self.features, FOREST]
        missing = [c for c in columns if c not in X.columns]
        if missing:
            raise InputError(f"the supervised layer needs column(s) {missing}")
        # Missing evidence is no evidence (as for the forest); another missing value (a metric
        # the exporter lacks) becomes MISSING, below every value, which a tree can split off.
        matrix = X.loc[:, columns].astype(float)
        fill = {c: 0.0 if c in MONOTONE else MISSING for c in columns}
        return matrix.fillna(fill)

    def _booster(self, n: int) -> HistGradientBoostingClassifier:
        columns = [*self.features, FOREST]
        return HistGradientBoostingClassifier(
            max_iter=100,
            learning_rate=0.1,
            max_leaf_nodes=8,
            min_samples_leaf=max(2, n // 20),
            l2_regularization=1.0,
            class_weight="balanced",
            monotonic_cst=[1 if c in MONOTONE else 0 for c in columns],
            random_state=self.random_state,
        )

    def _folds(self, k: int) -> StratifiedKFold:
        return StratifiedKFold(n_splits=k, shuffle=True, random_state=self.random_state)


def blend(forest_risk: np.ndarray, probability: np.ndarray) -> np.ndarray:
    """The blended risk 0-100 (module docstring): never below the forest's risk."""
    forest_risk = np.asarray(forest_risk, float)
    learned = WEIGHT * forest_risk + (1 - WEIGHT) * 100.0 * np.asarray(probability, float)
    return np.maximum(forest_risk, learned)


def check_label_counts(incident: int, benign: int) -> None:
    """A clear message when the labels cannot train the layer."""
    if not incident or not benign:
        raise InputError(
            f"labels: the supervised layer learns from incident and benign sessions, got "
            f"{incident} incident and {benign} benign; label both kinds, or train without "
            "--labels"
        )
    if min(incident, benign) < FIT_MIN_PER_CLASS:
        raise InputError(
            f"labels: the supervised layer needs at least {FIT_MIN_PER_CLASS} labelled "
            f"sessions of each kind (recommended {MIN_PER_CLASS}), got {incident} incident and "
            f"{benign} benign"
        )


def model_features(table: pd.DataFrame, names: Sequence[str]) -> list[str]:
    """The registry features of `table` that are numeric (the layer's inputs)."""
    return [n for n in names if n in table.columns and pd.api.types.is_numeric_dtype(table[n])]
