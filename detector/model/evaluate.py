"""Ranking and alert quality of risk scores against known outcomes, and their curves.

The positive class is "incident" (analyst labels) or "restricted training" (simulator truth).
Recall at 1 % false-positive rate uses the threshold that flags at most 1 % of the negatives.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from sklearn.metrics import (
    average_precision_score,
    confusion_matrix,
    precision_recall_curve,
    roc_auc_score,
    roc_curve,
)

FPR = 0.01
TOP_K = (10, 50, 100)


@dataclass(frozen=True)
class Evaluation:
    """The figures of `gpuwatch evaluate` (None where a class is missing)."""

    sessions: int
    positive: int
    average_precision: float | None
    roc_auc: float | None
    precision_at_k: dict[str, float | None]
    alerts: int
    precision_at_alert: float | None
    recall_at_alert: float | None
    fpr_threshold: float | None
    precision_at_1pct_fpr: float | None
    recall_at_1pct_fpr: float | None
    confusion: dict[str, int]  # at the alert threshold: tp, fp, fn, tn

    def as_dict(self) -> dict:
        return asdict(self)


def threshold_at_fpr(negative_risk: np.ndarray, fpr: float = FPR) -> float:
    """The lowest threshold (flag risk > it) that flags at most `fpr` of the negatives (ties
    count against the detector: a threshold never splits a tie)."""
    if not len(negative_risk):
        return float("-inf")
    ordered = np.sort(np.asarray(negative_risk, float))[::-1]
    allowed = int(np.floor(fpr * len(ordered)))
    return float(ordered[allowed]) if allowed < len(ordered) else float("-inf")


def evaluate(
    risk: np.ndarray, positive: np.ndarray, alert: np.ndarray, top_k: tuple[int, ...] = TOP_K
) -> Evaluation:
    """The figures for ranking by `risk` and alerting on `alert` (bool), against `positive`."""
    risk, positive = np.asarray(risk, float), np.asarray(positive, bool)
    alert = np.asarray(alert, bool)
    both = bool(positive.any() and not positive.all())
    order = np.argsort(-risk, kind="stable")
    at_k = {str(k): float(positive[order[:k]].mean()) if len(risk) >= k else None for k in top_k}
    tn, fp, fn, tp = confusion_matrix(positive, alert, labels=[False, True]).ravel()
    cut = threshold_at_fpr(risk[~positive]) if both else None
    flagged = risk > cut if cut is not None else None
    return Evaluation(
        sessions=len(risk),
        positive=int(positive.sum()),
        average_precision=float(average_precision_score(positive, risk)) if both else None,
        roc_auc=float(roc_auc_score(positive, risk)) if both else None,
        precision_at_k=at_k,
        alerts=int(alert.sum()),
        precision_at_alert=float(tp / (tp + fp)) if tp + fp else None,
        recall_at_alert=float(tp / (tp + fn)) if tp + fn else None,
        fpr_threshold=cut,
        precision_at_1pct_fpr=_precision(positive, flagged),
        recall_at_1pct_fpr=float(flagged[positive].mean()) if flagged is not None else None,
        confusion={"tp": int(tp), "fp": int(fp), "fn": int(fn), "tn": int(tn)},
    )


def plot_curves(risk: np.ndarray, positive: np.ndarray, out: Path, title: str) -> list[Path]:
    """pr_curve.png and roc_curve.png in `out` (created); needs both classes."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    risk, positive = np.asarray(risk, float), np.asarray(positive, bool)
    precision, recall, _ = precision_recall_curve(positive, risk)
    fpr, tpr, _ = roc_curve(positive, risk)
    ap = average_precision_score(positive, risk)
    auc = roc_auc_score(positive, risk)
    written = []
    for name, xs, ys, xlabel, ylabel, label, base in (
        ("pr_curve.png", recall, precision, "recall", "precision", f"AP {ap:.3f}", None),
        ("roc_curve.png", fpr, tpr, "false-positive rate", "recall", f"AUC {auc:.3f}", FPR),
    ):
        fig, ax = plt.subplots(figsize=(5, 4), dpi=100)
        ax.step(xs, ys, where="post", label=label)
        if base is not None:
            ax.axvline(base, color="grey", linestyle=":", label=f"{base:.0%} FPR")
        ax.set(xlabel=xlabel, ylabel=ylabel, xlim=(0, 1), ylim=(0, 1.02), title=title)
        ax.legend(loc="lower right")
        fig.tight_layout()
        fig.savefig(out / name)
        plt.close(fig)
        written.append(out / name)
    return written


def _precision(positive: np.ndarray, flagged: np.ndarray | None) -> float | None:
    if flagged is None or not flagged.any():
        return None
    return float(positive[flagged].mean())
