"""Alert thresholds from analyst labels, and ranking quality against known outcomes."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from sklearn.metrics import average_precision_score, precision_recall_curve

# The range of an alert threshold: a threshold of 0 would alert on every session.
ALERT_RISK_RANGE = (0.01, 100.0)


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


def calibrate_threshold(
    risk: np.ndarray, incident: np.ndarray, target_precision: float | None = None
) -> Calibration:
    """The alert threshold on risk_score for `incident` (bool): the best F1, or with
    `target_precision` the lowest threshold whose precision on the labels reaches it (the most
    recall at that precision; the highest threshold when none does)."""
    risk, incident = np.asarray(risk, float), np.asarray(incident, bool)
    if incident.all() or not incident.any():
        raise ValueError(
            "calibration needs labelled incident and labelled benign sessions, "
            f"got {int(incident.sum())} incident of {len(incident)}"
        )
    precision, recall, thresholds = precision_recall_curve(incident, risk)
    if target_precision is None:
        with np.errstate(invalid="ignore", divide="ignore"):
            f1 = np.nan_to_num(2 * precision * recall / (precision + recall))[:-1]
        best = int(np.argmax(f1))
    else:
        reaching = np.flatnonzero(precision[:-1] >= target_precision)
        best = int(reaching[0]) if len(reaching) else len(thresholds) - 1
    return calibration_at(risk, incident, float(thresholds[best]))


def calibration_at(risk: np.ndarray, incident: np.ndarray, threshold: float) -> Calibration:
    """How alerting at risk >= `threshold` does on the labelled sessions."""
    risk, incident = np.asarray(risk, float), np.asarray(incident, bool)
    alert = risk >= threshold
    tp = int((alert & incident).sum())
    precision = tp / int(alert.sum()) if alert.any() else 0.0
    recall = tp / int(incident.sum()) if incident.any() else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return Calibration(
        float(threshold),
        float(f1),
        float(precision),
        float(recall),
        float(average_precision_score(incident, risk)),
        int(incident.sum()),
        int((~incident).sum()),
    )


def budget_threshold(risk: np.ndarray, days: float, per_day: float) -> float:
    """The lowest threshold at which at most `per_day` sessions a day alert over `days`."""
    ordered = np.sort(np.asarray(risk, float))[::-1]
    allowed = int(np.floor(per_day * max(days, 1e-9)))
    if allowed >= len(ordered):
        return float(ordered[-1]) if len(ordered) else 0.0
    # Ties at the cut stay out: the threshold sits just above the first session not allowed.
    return float(np.nextafter(ordered[allowed], np.inf))


def average_precision(risk: np.ndarray, positive: np.ndarray) -> float:
    """Average precision of ranking by risk for the positive class (NaN without positives)."""
    positive = np.asarray(positive, bool)
    if not positive.any():
        return float("nan")
    return float(average_precision_score(positive, np.asarray(risk, float)))
