"""Alert thresholds from analyst labels, and ranking quality against known outcomes."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from sklearn.metrics import average_precision_score, precision_recall_curve


@dataclass(frozen=True)
class Calibration:
    """The risk threshold with the best F1 on labelled sessions, and how it does there."""

    threshold: float
    f1: float
    precision: float
    recall: float
    average_precision: float
    n_incident: int
    n_benign: int

    def as_dict(self) -> dict[str, float | int]:
        return asdict(self)


def calibrate_threshold(risk: np.ndarray, incident: np.ndarray) -> Calibration:
    """Pick the alert threshold on risk_score that maximises F1 for `incident` (bool)."""
    risk, incident = np.asarray(risk, float), np.asarray(incident, bool)
    if incident.all() or not incident.any():
        raise ValueError(
            "calibration needs labelled incidents and labelled benign sessions, "
            f"got {int(incident.sum())} incident of {len(incident)}"
        )
    precision, recall, thresholds = precision_recall_curve(incident, risk)
    with np.errstate(invalid="ignore", divide="ignore"):
        f1 = np.nan_to_num(2 * precision * recall / (precision + recall))[:-1]
    best = int(np.argmax(f1))
    return Calibration(
        float(thresholds[best]),
        float(f1[best]),
        float(precision[best]),
        float(recall[best]),
        float(average_precision_score(incident, risk)),
        int(incident.sum()),
        int((~incident).sum()),
    )


def average_precision(risk: np.ndarray, positive: np.ndarray) -> float:
    """Average precision of ranking by risk for the positive class (NaN without positives)."""
    positive = np.asarray(positive, bool)
    if not positive.any():
        return float("nan")
    return float(average_precision_score(positive, np.asarray(risk, float)))
