"""Scoring windows against the whole period: does a sub-window raise a tenant the whole
period clears?

    .venv/bin/python bench/windows.py --data DIR --model-dir M [--hours 12]

Scores DIR (telemetry.parquet, access.jsonl.gz, tenants.csv) once over its whole period and
once per window of --hours, with the same model and the same inputs (as a schedule would,
`--since`/`--until` bound the telemetry; origin evidence uses the access history). Prints the
tenants that alert in some window but not over the whole period, and how far each tenant's
highest risk moves.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pandas as pd

from detector.config import load_settings
from detector.model import store
from detector.pipeline import Inputs, build_features, score
from detector.runinfo import RunReport


def scores_of(data: Path, stored, settings, since=None, until=None) -> pd.DataFrame:
    inputs = Inputs(
        (data / "telemetry.parquet",),
        (data / "access.jsonl.gz",),
        data / "tenants.csv",
        since=since,
        until=until,
    )
    return score(build_features(inputs, settings).sessions, stored, RunReport())


def compare(data: Path, model_dir: Path, hours: float) -> dict:
    settings, stored = load_settings(), store.load(model_dir)
    whole = scores_of(data, stored, settings)
    t0 = whole["start"].min().floor("D")
    t1 = whole["end"].max()
    windows = []
    start = t0
    while start < t1:
        end = start + pd.Timedelta(hours=hours)
        windows.append(scores_of(data, stored, settings, start, end).assign(window=start))
        start = end
    parts = pd.concat(windows, ignore_index=True)
    per_whole = whole.groupby("tenant_id").agg(risk=("risk_score", "max"), alert=("alert", "any"))
    per_part = parts.groupby("tenant_id").agg(risk=("risk_score", "max"), alert=("alert", "any"))
    both = per_whole.join(per_part.add_suffix("_windows"), how="outer")
    both[["risk", "risk_windows"]] = both[["risk", "risk_windows"]].fillna(0.0)
    for column in ("alert", "alert_windows"):
        both[column] = both[column].astype("boolean").fillna(False).astype(bool)
    raised = both[both["alert_windows"] & ~both["alert"]]
    return {
        "windows": len(windows),
        "hours": hours,
        "sessions_whole": len(whole),
        "sessions_windows": len(parts),
        "tenants": len(both),
        "alerting_tenants_whole": int(both["alert"].sum()),
        "alerting_tenants_windows": int(both["alert_windows"].sum()),
        "raised_tenants": raised.index.tolist(),
        "max_risk_increase": float((both["risk_windows"] - both["risk"]).max()),
        "max_risk_decrease": float((both["risk"] - both["risk_windows"]).max()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--model-dir", type=Path, required=True)
    parser.add_argument("--hours", type=float, default=12.0)
    args = parser.parse_args()
    print(json.dumps(compare(args.data, args.model_dir, args.hours), indent=2))


if __name__ == "__main__":
    main()
