"""Per-session explanations: exact Shapley values of the forest's path length (shap).

shap's TreeExplainer decomposes each session's expected isolation path length over the
features, exactly (interventional on the training background is not needed for trees: it
uses the path-dependent algorithm over the trees' own cover counts). A short path means
anomalous, so a feature's contribution to the anomaly is minus its Shapley value: positive
contributions pushed the session towards "anomalous", in path-length units.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import shap

from .forest import SessionRiskModel

TOP_K = 3


def contributions(model: SessionRiskModel, X: pd.DataFrame) -> pd.DataFrame:
    """Contribution of each model feature to each session's anomaly (rows like X)."""
    if X.empty:
        return pd.DataFrame(columns=list(model.features), index=X.index, dtype=float)
    explainer = shap.TreeExplainer(model.forest_)
    values = explainer.shap_values(model.transform(X), check_additivity=False)
    return pd.DataFrame(-np.asarray(values), columns=list(model.features), index=X.index)


def top_features(contrib: pd.DataFrame, X: pd.DataFrame, k: int = TOP_K) -> pd.Series:
    """JSON list per session of the k features that pushed its score most."""
    names = np.array(contrib.columns)
    order = np.argsort(-contrib.to_numpy(), axis=1)[:, :k]
    top_names = names[order]
    top_contrib = np.take_along_axis(contrib.to_numpy(), order, axis=1)
    values = X[list(names)].to_numpy(float)
    top_values = np.take_along_axis(values, order, axis=1)
    return pd.Series(
        [
            json.dumps(
                [
                    {"feature": f, "value": _num(v), "contribution": round(float(c), 4)}
                    for f, v, c in zip(fs, vs, cs, strict=True)
                    if c > 0
                ]
            )
            for fs, vs, cs in zip(top_names, top_values, top_contrib, strict=True)
        ],
        index=X.index,
        dtype=object,
    )


def _num(value: float) -> float | None:
    return None if np.isnan(value) else round(float(value), 6)
