"""Hourly runs with `--state` against one run over the whole period (issue 11).

    .venv/bin/python bench/state_hourly.py --days 7 --tenants 20 [--hours 1] [--work DIR]

Simulates a fleet, splits its telemetry and access into one file per --hours period (as a
collector drops them), then per period adds that period's files to an inbox and runs
`gpuwatch score --state` on the inbox (one process per run, as cron starts it). Finally it
scores the whole period in one run and compares: sessions, ids, the largest risk and feature
differences, alert statuses and run times.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from detector.simulate import simulate

MODEL = Path(__file__).resolve().parents[1] / "models" / "default"


def split(data: Path, out: Path, hours: float) -> list[str]:
    """Write data's telemetry and access as one file per period into out/tel and out/acc;
    return the period names in time order."""
    (out / "tel").mkdir(parents=True, exist_ok=True)
    (out / "acc").mkdir(parents=True, exist_ok=True)
    telemetry = pd.read_parquet(data / "telemetry.parquet")
    access = pd.read_json(data / "access.jsonl.gz", lines=True, dtype=False)
    stamps = pd.to_datetime(access["timestamp"], utc=True)
    freq = pd.Timedelta(hours=hours)
    names = set()
    for period, part in telemetry.groupby(telemetry["timestamp"].dt.floor(freq)):
        names.add(f"{period:%Y%m%dT%H%M}")
        part.to_parquet(out / "tel" / f"{period:%Y%m%dT%H%M}.parquet", index=False)
    for period, part in access.groupby(stamps.dt.floor(freq)):
        names.add(f"{period:%Y%m%dT%H%M}")
        part.to_json(out / "acc" / f"{period:%Y%m%dT%H%M}.jsonl", orient="records", lines=True)
    return sorted(names)


def deliver(parts: Path, inbox: Path, names: list[str]) -> None:
    """Hard-link the files of the periods `names` from `parts` into `inbox`."""
    for kind, suffix in (("tel", ".parquet"), ("acc", ".jsonl")):
        (inbox / kind).mkdir(parents=True, exist_ok=True)
        for name in names:
            if (parts / kind / f"{name}{suffix}").exists():
                os.link(parts / kind / f"{name}{suffix}", inbox / kind / f"{name}{suffix}")


def compare(whole: pd.DataFrame, runs: pd.DataFrame) -> dict[str, object]:
    """Sessions, ids, the largest risk difference and the features that differ."""
    w, r = whole.set_index("session_id"), runs.set_index("session_id")
    common = w.index.intersection(r.index)
    numeric = [
        c
        for c in w.columns
        if c in r.columns and pd.api.types.is_numeric_dtype(w[c]) and c != "anomaly_score"
    ]
    diff = {c: _largest_difference(w.loc[common, c], r.loc[common, c]) for c in numeric}
    return {
        "sessions_whole": len(w),
        "sessions_runs": len(r),
        "ids_equal": set(w.index) == set(r.index),
        "max_risk_difference": diff.get("risk_score", 0.0),
        "features_that_differ": {c: v for c, v in diff.items() if v > 0},
        "alerts_equal": bool((w.loc[common, "alert"] == r.loc[common, "alert"]).all()),
    }


def _largest_difference(a: pd.Series, b: pd.Series) -> float:
    """Largest absolute difference; infinite where only one side is missing."""
    a, b = a.astype(float), b.astype(float)
    if (a.isna() != b.isna()).any():
        return float("inf")
    largest = (a - b).abs().max()
    return 0.0 if pd.isna(largest) else float(largest)


def gpuwatch(*args: str | Path) -> dict:
    done = subprocess.run(
        [sys.executable, "-m", "detector", "-q", *map(str, args), "--format", "json"],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(done.stdout)


def _child_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=float, default=7.0)
    parser.add_argument("--tenants", type=int, default=20)
    parser.add_argument("--hours", type=float, default=1.0)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--work", type=Path, default=Path("bench-state"))
    args = parser.parse_args()
    data, inbox, state = args.work / "data", args.work / "inbox", args.work / "state"
    simulate(data, args.tenants, args.days, args.seed)
    names = split(data, args.work / "parts", args.hours)
    model = ["--model-dir", MODEL, "--tenants", data / "tenants.csv"]
    seconds, cpu, new_alerts, statuses = [], [], 0, {}
    for name in names:
        deliver(args.work / "parts", inbox, [name])
        t0, c0 = time.perf_counter(), _child_cpu()
        run = gpuwatch(
            "score", "--telemetry", inbox / "tel", "--access", inbox / "acc", *model,
            "--out", args.work / "runs.parquet", "--state", state,
        )  # fmt: skip
        seconds.append(time.perf_counter() - t0)
        cpu.append(_child_cpu() - c0)
        new_alerts += len(run["alerts_new"])
        statuses = run["alert_status"]
    gpuwatch(
        "score", "--telemetry", data / "telemetry.parquet", "--access",
        data / "access.jsonl.gz", *model, "--out", args.work / "whole.parquet",
    )  # fmt: skip
    result = compare(
        pd.read_parquet(args.work / "whole.parquet"), pd.read_parquet(args.work / "runs.parquet")
    )
    result |= {
        "runs": len(seconds),
        "run_seconds_median": float(np.median(seconds)),
        "run_seconds_max": float(np.max(seconds)),
        "run_cpu_seconds_median": float(np.median(cpu)),
        "alerts_paged_new": new_alerts,
        "alert_status_last_run": statuses,
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
