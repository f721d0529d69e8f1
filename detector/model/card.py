"""MODEL_CARD.md: what a model was trained on, what it reads, how it did on held-out labels."""

from __future__ import annotations

from typing import Any

from ..features.registry import BY_NAME

LIMITATIONS = (
    "The forest scores evidence, it does not decide: an alert is a lead for an analyst.",
    "Origin evidence depends on the IP database: the bundled geoip2fast data dates from June "
    "2024; pass current `.mmdb` files with `--geoip-db` in production.",
    "Trained on one period of one fleet: retrain when the workload mix or the access patterns "
    "change (`gpuwatch drift` says when the features moved).",
    "The hardest benign case is an allied user who drives training from a country of concern "
    "while travelling: it scores like a small restricted fine-tune.",
)


def render(meta: dict[str, Any]) -> str:
    """The card of a model, from its metadata."""
    t = meta.get("training") or {}
    lines = [
        f"# Model card: gpuwatch model `{meta['model_version']}`",
        "",
        f"Trained {meta.get('trained_at') or 'at an unknown time'} with "
        f"gpuwatch {meta['versions'].get('gpuwatch', '?')}, scikit-learn "
        f"{meta['versions'].get('scikit-learn', '?')}. Files: "
        + ", ".join(f"`{name}`" for name in sorted(meta["files"]))
        + " and `metadata.json` (SHA-256 of every file, checked on load).",
        "",
        "## Data",
        "",
    ]
    if t:
        period = " to ".join(t.get("period") or []) or "unknown period"
        lines += [
            f"- {t['sessions']} sessions ({period}); the forest was fit on {t['fit_sessions']} "
            "(labelled incidents and held-out sessions stay out of the fit).",
            f"- Labels: {t['labelled_incident']} incident, {t['labelled_benign']} benign.",
            f"- SHA-256 of the training matrix: `{t['data_sha256']}`.",
        ]
    lines += ["", "## Features", ""]
    lines += [f"- `{f}`: {_meaning(f)}" for f in meta["features"]]
    sup = meta.get("supervised")
    if sup:
        lines += [
            "",
            f"Supervised layer: gradient boosting on {len(sup['features'])} features plus the "
            f"forest's score, {sup['calibration']}-calibrated on {sup['incident']} incident and "
            f"{sup['benign']} benign sessions, blended with weight {sup['weight']:.2f}.",
        ]
    else:
        lines += ["", "No supervised layer: the Isolation Forest alone (unsupervised)."]
    lines += [
        "",
        "## Threshold",
        "",
        f"A session alerts at risk >= {meta['alert_risk']:.2f} "
        f"(source: {meta.get('threshold_source', 'policy')}).",
        "",
        "## Held-out metrics",
        "",
    ]
    h = meta.get("heldout")
    if h:
        lines += [
            f"Labelled sessions starting at or after {h['test_from']} were held out of every fit "
            f"({h['sessions']} sessions, {h['incident']} incident):",
            "",
            "| metric | value |",
            "|---|---:|",
        ]
        for key in (
            "average_precision",
            "roc_auc",
            "precision_at_alert",
            "recall_at_alert",
            "recall_at_1pct_fpr",
        ):
            lines.append(f"| {key.replace('_', ' ')} | {_num(h[key])} |")
    else:
        lines.append(
            "None: trained without labels. Measure it with `gpuwatch score` then "
            "`gpuwatch evaluate --labels` (or `--truth`) on a later period."
        )
    lines += ["", "## Limitations", ""] + [f"- {item}" for item in LIMITATIONS]
    return "\n".join(lines) + "\n"


def _meaning(name: str) -> str:
    feature = BY_NAME.get(name)
    return f"{feature.description} ({feature.unit})" if feature else "unknown"


def _num(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"
