"""Does the supervised layer beat the forest alone on later data? (docs/DESIGN-NOTES.md)

One simulated fleet (`gpuwatch simulate`), split by time: train on the sessions that start
before the last `--test-days` days, test on the rest. About `--label-share` of the training
sessions get a label from the simulator's truth, half incidents and half benign (analysts
label both), drawn at random per label seed. Both models are fit on the same training
sessions; the forest alone ignores the labels. On the test days: average precision and recall
at 1 % false-positive rate for "restricted training", overall and, with `--holdout FAMILY`,
for an evasion family whose sessions and labels are removed from the training days.

The fleet may also come from the independent generator (bench/indep/generate.py): its
`access.parquet` is read instead of `access.jsonl.gz`, and its truth (`family`, `label`) is
read as the simulator's (`scenario`, `restricted_training`); `--holdout` then names one of its
positive families (`pos_vpn`, `pos_reseller`, ...).

    python bench/supervised.py FLEET_DIR [--test-days 4] [--label-share 0.01] [--holdout vpn]
        [--draw random|review]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd

from detector.benchmark import holdout_scenarios
from detector.config import load_settings
from detector.model.evaluate import evaluate, threshold_at_fpr
from detector.model.labels import match_truth
from detector.pipeline import Inputs, build_features, train


def read_truth(path: Path) -> pd.DataFrame:
    """The simulator's truth, or the independent generator's read as the simulator's."""
    truth = pd.read_csv(path)
    if "scenario" not in truth.columns and {"family", "label"} <= set(truth.columns):
        truth = truth.rename(columns={"family": "scenario"})
        truth["restricted_training"] = truth["label"].astype(int) == 1
    return truth


def features(fleet: Path) -> pd.DataFrame:
    """Session features with the truth columns (cached beside the fleet)."""
    cache = fleet / "sessions.parquet"
    if cache.exists():
        return pd.read_parquet(cache)
    access = next(p for p in (fleet / "access.jsonl.gz", fleet / "access.parquet") if p.exists())
    inputs = Inputs((fleet / "telemetry.parquet",), (access,), fleet / "tenants.csv")
    table = build_features(inputs, load_settings()).sessions.reset_index(drop=True)
    truth = match_truth(table, read_truth(fleet / "truth.csv"))
    table = table.assign(scenario=truth["scenario"], positive=truth["restricted_training"])
    table.to_parquet(cache)
    return table


def labels_for(
    table: pd.DataFrame, share: float, seed: int, review: np.ndarray | None = None
) -> pd.DataFrame:
    """`share` of the sessions labelled, half incidents and half benign, drawn at random; with
    `review` (the forest's risk of each session), benign sessions are drawn in proportion to
    it (plus 1): the verdicts analysts give on the cases the forest puts in front of them."""
    rng = np.random.default_rng(seed)
    n = max(2, round(share * len(table)))
    positive = table["positive"].to_numpy(bool)
    picked = []
    for kind in (True, False):
        pool = np.flatnonzero(positive == kind)
        weight = None
        if review is not None and not kind:
            weight = review[pool] + 1.0
            weight = weight / weight.sum()
        size = min(len(pool), n // 2)
        picked.append(table.index[rng.choice(pool, size=size, replace=False, p=weight)])
    rows = table.loc[np.concatenate(picked)]
    return pd.DataFrame(
        {
            "session_id": rows["session_id"],
            "tenant_id": rows["tenant_id"],
            "start": rows["start"],
            "end": rows["end"],
            "label": np.where(rows["positive"], "incident", "benign"),
        }
    ).reset_index(drop=True)


def measure(risk: np.ndarray, alert: np.ndarray, test: pd.DataFrame, family: tuple) -> dict:
    positive = test["positive"].to_numpy(bool)
    result = evaluate(risk, positive, alert)
    out = {
        "ap": result.average_precision,
        "recall_1pct_fpr": result.recall_at_1pct_fpr,
        "alert_precision": result.precision_at_alert,
        "alert_recall": result.recall_at_alert,
    }
    if family:
        mine = test["scenario"].isin(family).to_numpy() & positive
        benign = ~positive
        cut = threshold_at_fpr(risk[benign])
        keep = mine | benign
        out["family_sessions"] = int(mine.sum())
        out["family_recall_1pct_fpr"] = float((risk[mine] > cut).mean()) if mine.any() else None
        out["family_ap"] = evaluate(risk[keep], mine[keep], alert[keep]).average_precision
        out["family_alert_recall"] = float(alert[mine].mean()) if mine.any() else None
    return out


def run(
    fleet: Path,
    test_days: float,
    share: float,
    seeds: list[int],
    holdout: str | None,
    draw: str = "random",
) -> dict:
    settings = load_settings()
    table = features(fleet)
    cut = table["start"].max().normalize() - pd.Timedelta(days=test_days - 1)
    positive = set(table.loc[table["positive"], "scenario"])
    family = (holdout,) if holdout in positive else holdout_scenarios(holdout)
    past = table[table["start"] < cut]
    past = past[~past["scenario"].isin(family)]
    test = table[table["start"] >= cut].reset_index(drop=True)
    forest, _ = train(past, settings)
    risk = forest.risk_score(test)
    rows = [
        {"model": "forest", "seed": None} | measure(risk, risk >= forest.alert_risk, test, family)
    ]
    review = forest.risk_score(past) if draw == "review" else None
    for seed in seeds:
        labels = labels_for(past, share, seed, review)
        stored, _ = train(past, settings, labels, seed=0, holdout_share=0)
        risk = stored.risk_score(test)
        row = measure(risk, risk >= stored.alert_risk, test, family)
        rows.append({"model": "supervised", "seed": seed, "labels": len(labels)} | row)
    return {
        "fleet": str(fleet),
        "cut": str(cut),
        "train_sessions": len(past),
        "train_positive": int(past["positive"].sum()),
        "test_sessions": len(test),
        "test_positive": int(test["positive"].sum()),
        "holdout": list(family),
        "draw": draw,
        "rows": rows,
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("fleet", type=Path)
    parser.add_argument("--test-days", type=float, default=4)
    parser.add_argument("--label-share", type=float, default=0.01)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--holdout")
    parser.add_argument(
        "--draw",
        choices=("random", "review"),
        default="random",
        help="benign labels at random, or in proportion to the forest's risk (analysts' cases)",
    )
    args = parser.parse_args()
    result = run(args.fleet, args.test_days, args.label_share, args.seeds, args.holdout, args.draw)
    frame = pd.DataFrame(result.pop("rows"))
    print(json.dumps(result, indent=1))
    print(frame.round(3).to_string(index=False))
