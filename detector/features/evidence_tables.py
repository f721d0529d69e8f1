"""The evidence behind `origin_evidence` and `training_evidence`, as rows to print."""

from __future__ import annotations

from . import origin, training


def evidence_rows() -> list[dict[str, str]]:
    """One row per origin tell and training signal: its weight or curve and its meaning."""
    rows = [
        {
            "evidence": "origin",
            "name": tell.name,
            "log-odds": f"{tell.weight:+g} at full strength",
            "meaning": tell.meaning,
        }
        for tell in origin.TELLS
    ]
    rows.append(
        {
            "evidence": "origin",
            "name": "(prior)",
            "log-odds": f"{origin.PRIOR:+g}",
            "meaning": "before any tell; the evidence is the logistic of prior + tells",
        }
    )
    rows += [
        {
            "evidence": "training",
            "name": signal.feature,
            "log-odds": ", ".join(
                f"{y:+g} at {x:g}" for x, y in zip(signal.points, signal.log_odds, strict=True)
            ),
            "meaning": signal.meaning,
        }
        for signal in training.SIGNALS
    ]
    rows.append(
        {
            "evidence": "training",
            "name": "(prior)",
            "log-odds": f"{training.PRIOR:+g}",
            "meaning": "before any signal; signals count "
            f"half at {training.HALF_CONFIDENCE_SAMPLES:g} samples per GPU",
        }
    )
    return rows
