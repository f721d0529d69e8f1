"""`gpuwatch benchmark`: train on one simulated fleet, score another, measure what transfers.

Two fleets from different seeds; the training fleet can lack one evasion family (`holdout`)
that the test fleet has, so the number says how the detector does on a family it never saw.
Besides gpuwatch's own score, the same run fits three baselines on the same training fleet:
an Isolation Forest on mean and max utilisation (what a naive deployment would do), and
PyOD's ECOD and COPOD on all of gpuwatch's own numeric features.

Measures, on the test fleet, for the positive class "restricted training" of the simulator's
truth: average precision; recall at 1 % false-positive rate (the threshold that flags at most
1 % of benign sessions), overall and per positive family; and at each detector's own alert
(gpuwatch's default threshold): recall per positive family and false alerts per benign family.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from .config import Settings
from .errors import ConfigError
from .features import NAMES
from .model.labels import match_truth
from .pipeline import Inputs, build_features, score, train
from .runinfo import RunReport
from .simulate import simulate
from .simulate.scenarios import BY_NAME, EVASIONS

FPR = 0.01
GPUWATCH = "gpuwatch"
BASELINES = ("iforest_util", "ecod", "copod")


@dataclass
class Result:
    """The benchmark's figures: per detector, overall and per family."""

    overall: pd.DataFrame  # detector -> average_precision, recall_at_fpr, alert_recall, ...
    families: pd.DataFrame  # (family, detector) -> sessions, positive, recall_at_fpr, alerts
    config: dict = field(default_factory=dict)


def holdout_scenarios(name: str | None) -> tuple[str, ...]:
    """Scenario names an evasion family (or a single scenario) stands for."""
    if not name:
        return ()
    if name in EVASIONS:
        return EVASIONS[name]
    if name in BY_NAME and BY_NAME[name].restricted_training:
        return (name,)
    raise ConfigError(
        f"--holdout {name!r}: expected an evasion family ({', '.join(EVASIONS)}) or a "
        "restricted-training scenario"
    )


def run_benchmark(
    settings: Settings,
    seed: int,
    tenants: int,
    days: float,
    holdout: str | None = None,
    interval_s: int = 60,
    work_dir: Path | None = None,
) -> Result:
    """Simulate, train, score and measure (see the module docstring)."""
    held = holdout_scenarios(holdout)
    if work_dir is not None:
        work_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="gpuwatch-bench-", dir=work_dir) as tmp:
        fleets = {}
        for name, fleet_seed, without in (("train", seed, held), ("test", seed + 1, ())):
            folder = Path(tmp) / name
            simulate(folder, tenants, days, fleet_seed, interval_s=interval_s, without=without)
            inputs = Inputs(
                (folder / "telemetry.parquet",),
                (folder / "access.jsonl.gz",),
                folder / "tenants.csv",
            )
            table = build_features(inputs, settings).sessions
            truth = match_truth(table, pd.read_csv(folder / "truth.csv"))
            fleets[name] = (table, truth)
    (train_table, _), (test_table, truth) = fleets["train"], fleets["test"]
    stored, _ = train(train_table, settings, seed=seed)
    scores = score(test_table, stored, RunReport())
    truth = truth.loc[test_table.index]
    order = test_table["session_id"].map(dict(zip(scores["session_id"], scores.index, strict=True)))
    ours = scores.loc[order.to_numpy()]
    rankings = {GPUWATCH: (ours["risk_score"].to_numpy(), ours["alert"].to_numpy(bool))}
    for name, fit_score in _baselines().items():
        rankings[name] = fit_score(train_table, test_table)
    positive = truth["restricted_training"].to_numpy(bool)
    family = truth["scenario"].to_numpy()
    config = {"seed": seed, "tenants": tenants, "days": days, "holdout": list(held)}
    return _measure(rankings, positive, family, config)


def _measure(
    rankings: dict[str, tuple[np.ndarray, np.ndarray]],
    positive: np.ndarray,
    family: np.ndarray,
    config: dict,
) -> Result:
    from sklearn.metrics import average_precision_score

    rows, fam_rows = [], []
    benign = ~positive
    for detector, (risk, alert) in rankings.items():
        threshold = _threshold_at_fpr(risk[benign], FPR)
        flagged = risk > threshold
        rows.append(
            {
                "detector": detector,
                "average_precision": float(average_precision_score(positive, risk)),
                "recall_at_1pct_fpr": float(flagged[positive].mean()),
                "alert_recall": float(alert[positive].mean()),
                "false_alerts": int(alert[benign].sum()),
                "false_alert_share": float(alert[benign].mean()),
            }
        )
        for name in np.unique(family):
            here = family == name
            fam_rows.append(
                {
                    "family": name,
                    "detector": detector,
                    "sessions": int(here.sum()),
                    "positive": int((here & positive).sum()),
                    "recall_at_1pct_fpr": float(flagged[here & positive].mean())
                    if (here & positive).any()
                    else np.nan,
                    "flagged_benign": int((flagged & here & benign).sum()),
                    "alerts": int(alert[here].sum()),
                }
            )
    overall = pd.DataFrame(rows).set_index("detector")
    families = pd.DataFrame(fam_rows).set_index(["family", "detector"])
    return Result(overall, families, config)


def _threshold_at_fpr(benign_scores: np.ndarray, fpr: float) -> float:
    """The lowest score above which at most `fpr` of the benign sessions lie (ties count
    against the detector: a threshold never splits a tie)."""
    values = np.sort(np.asarray(benign_scores, float))[::-1]
    allowed = int(np.floor(fpr * len(values)))
    if allowed >= len(values):
        return -np.inf
    return float(values[allowed])


def _baselines() -> dict[str, Callable[[pd.DataFrame, pd.DataFrame], tuple]]:
    """Each baseline: fit on the training table, score the test table -> (score, alert).
    A baseline alerts on the scores above the top 1 % of its own training scores."""

    def fitted(make, columns: list[str]):
        def run(train_table: pd.DataFrame, test_table: pd.DataFrame) -> tuple:
            fill = train_table[columns].median()
            x_train = train_table[columns].astype(float).fillna(fill).fillna(0).to_numpy()
            x_test = test_table[columns].astype(float).fillna(fill).fillna(0).to_numpy()
            model = make().fit(x_train)
            train_scores = model.decision_function(x_train)
            test_scores = model.decision_function(x_test)
            return test_scores, test_scores > np.quantile(train_scores, 1 - FPR)

        return run

    def iforest():
        from sklearn.ensemble import IsolationForest

        class Flipped(IsolationForest):  # higher = more anomalous, as PyOD scores
            def decision_function(self, X):
                return -super().decision_function(X)

        return Flipped(n_estimators=300, random_state=0)

    def pyod(name: str):
        def make():
            try:
                from pyod.models.copod import COPOD
                from pyod.models.ecod import ECOD
            except ImportError as exc:
                raise ConfigError(
                    "gpuwatch benchmark needs PyOD for its baselines: pip install 'gpuwatch[bench]'"
                ) from exc
            return {"ecod": ECOD, "copod": COPOD}[name]()

        return make

    numeric = [n for n in NAMES if n != "entity_flop_threshold"]
    return {
        "iforest_util": fitted(iforest, ["util_mean", "util_max"]),
        "ecod": fitted(pyod("ecod"), numeric),
        "copod": fitted(pyod("copod"), numeric),
    }
