"""Train gpuwatch on one independent fleet, score another, and measure against the truth.

``python bench/indep/evaluate.py --pair 9103:9104 --pair 9201:9202 --out bench/indep/results.md``
generates each fleet (bench/indep/generate.py) unless it is already in ``--work``, runs the real
CLI (``python -m detector train`` then ``score``) in a subprocess, joins the session scores to
the truth by tenant and time overlap, and writes a markdown report: average precision, recall at
1 % false-positive rate (overall and per positive family), recall and false alerts at the
model's own alert, and per-family score ranges with the evidence columns the scores carry.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.metrics import average_precision_score

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(HERE))

from generate import generate  # noqa: E402

FPR = 0.01
EVIDENCE = ("training_evidence", "origin_evidence")
GREY = "finetune_restricted"  # small restricted training: negative by definition, a grey zone
# Score columns that say why a session ranks where it does, shown when the scores carry them.
WHY = (
    "training_evidence",
    "origin_evidence",
    "entity_id",
    "linked_tenants",
    "lockstep",
    "tensor_share",
    "hosting_share",
    "restricted_share",
    "clock_offset_h",
    "reseller",
)


@dataclass(frozen=True)
class Fleet:
    path: Path
    seed: int


def fleet(work: Path, seed: int, tenants: int, days: float, fp64: bool = False) -> Fleet:
    """The fleet of this seed and size in ``work``, generated when missing."""
    path = work / f"fleet-{seed}-{tenants}x{days:g}{'-fp64' if fp64 else ''}"
    if not (path / "truth.csv").exists():
        generate(path, tenants, days, seed, fp64)
    return Fleet(path, seed)


def _inputs(f: Fleet) -> list[str]:
    return [
        "--telemetry",
        str(f.path / "telemetry.parquet"),
        "--access",
        str(f.path / "access.parquet"),
        "--tenants",
        str(f.path / "tenants.csv"),
    ]


def gpuwatch(*args: str) -> dict[str, object]:
    """Run the CLI from this checkout with ``--format json``; its JSON summary."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    cmd = [sys.executable, "-m", "detector", *args, "--format", "json"]
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    if done.returncode not in (0, 1):
        raise RuntimeError(f"{' '.join(cmd[2:4])} exited {done.returncode}: {done.stderr.strip()}")
    out: dict[str, object] = json.loads(done.stdout)
    return out


def train_and_score(train: Fleet, test: Fleet, work: Path) -> tuple[pd.DataFrame, dict]:
    """Train on one fleet, score the other; the scores and both runs' summaries."""
    model = work / f"model-{train.seed}"
    scores = work / f"scores-{train.seed}-{test.seed}.parquet"
    t0 = time.perf_counter()
    trained = gpuwatch("train", *_inputs(train), "--model-dir", str(model))
    t1 = time.perf_counter()
    scored = gpuwatch("score", *_inputs(test), "--model-dir", str(model), "--out", str(scores))
    t2 = time.perf_counter()
    runs = {"train": trained, "score": scored, "train_s": t1 - t0, "score_s": t2 - t1}
    return pd.read_parquet(scores), runs


def join_truth(scores: pd.DataFrame, truth: pd.DataFrame) -> pd.DataFrame:
    """Each session with the truth job it overlaps most (same tenant); ``family`` of the
    tenant with an ``unmatched`` mark and label 0 when it overlaps none."""
    s = scores.reset_index(drop=True).copy()
    s["start"] = pd.to_datetime(s["start"], utc=True)
    s["end"] = pd.to_datetime(s["end"], utc=True)
    t = truth.copy()
    t["start"] = pd.to_datetime(t["start"], utc=True)
    t["end"] = pd.to_datetime(t["end"], utc=True)
    pairs = (
        s[["tenant_id", "start", "end"]]
        .reset_index()
        .merge(t.reset_index(), on="tenant_id", suffixes=("", "_job"))
    )
    lo = np.maximum(pairs["start"].to_numpy(), pairs["start_job"].to_numpy())
    hi = np.minimum(pairs["end"].to_numpy(), pairs["end_job"].to_numpy())
    pairs["overlap"] = (hi - lo) / np.timedelta64(1, "s")
    pairs = pairs[pairs["overlap"] > 0].sort_values("overlap", ascending=False)
    best = pairs.drop_duplicates("index").set_index("index")
    tenant_family = t.drop_duplicates("tenant_id").set_index("tenant_id")["family"]
    s["family"] = best["family"].reindex(s.index)
    s["label"] = best["label"].reindex(s.index).fillna(0).astype(int)
    s["entity_gpus"] = best["entity_gpus"].reindex(s.index)
    missing = s["family"].isna()
    s.loc[missing, "family"] = "unmatched:" + s.loc[missing, "tenant_id"].map(tenant_family)
    return s


def recall_at_fpr(scores: np.ndarray, labels: np.ndarray, fpr: float) -> tuple[float, float]:
    """(threshold, recall): positives scoring strictly above the score that at most ``fpr``
    of the negatives exceed (ties at the threshold count as missed)."""
    neg = np.sort(scores[labels == 0])[::-1]
    allowed = int(np.floor(fpr * len(neg)))
    threshold = float(neg[allowed]) if allowed < len(neg) else -np.inf
    pos = scores[labels == 1]
    return threshold, float(np.mean(pos > threshold)) if len(pos) else float("nan")


def measure(j: pd.DataFrame) -> dict[str, object]:
    """The headline numbers of one joined score table."""
    y = j["label"].to_numpy()
    r = j["risk_score"].to_numpy(dtype=float)
    alert = j["alert"].astype(bool).to_numpy()
    thr, rec = recall_at_fpr(r, y, FPR)
    fam = {
        str(f): float(np.mean(g["risk_score"].to_numpy(dtype=float) > thr))
        for f, g in j[j["label"] == 1].groupby("family")
    }
    clear = j[j["family"] != GREY]
    tenants = j.groupby("tenant_id").agg(risk=("risk_score", "max"), label=("label", "max"))
    t_thr, t_rec = recall_at_fpr(tenants["risk"].to_numpy(float), tenants["label"].to_numpy(), FPR)
    return {
        "sessions": len(j),
        "positives": int(y.sum()),
        "ap": float(average_precision_score(y, r)),
        "ap_without_grey": float(average_precision_score(clear["label"], clear["risk_score"])),
        "threshold_1pct": thr,
        "recall_1pct": rec,
        "recall_1pct_family": fam,
        "alert_recall": float(alert[y == 1].mean()),
        "false_alert_rate": float(alert[y == 0].mean()),
        "false_alerts": int(alert[y == 0].sum()),
        "tenant_ap": float(average_precision_score(tenants["label"], tenants["risk"])),
        "tenant_recall_1pct": t_rec,
    }


def family_table(j: pd.DataFrame) -> pd.DataFrame:
    """Per family: sessions, label, risk min/median/max, alerts, mean evidence columns."""
    ev = [c for c in EVIDENCE if c in j.columns]
    agg: dict[str, tuple[str, str]] = {
        "sessions": ("risk_score", "size"),
        "label": ("label", "max"),
        "risk_min": ("risk_score", "min"),
        "risk_med": ("risk_score", "median"),
        "risk_max": ("risk_score", "max"),
        "alerts": ("alert", "sum"),
    }
    agg |= {f"{c.split('_')[0]}_ev": (c, "mean") for c in ev}
    if "entity_id" in j.columns:
        j = j.assign(_linked=j.groupby("entity_id")["tenant_id"].transform("nunique"))
        agg["max_linked"] = ("_linked", "max")
    out = j.groupby("family").agg(**agg)  # type: ignore[call-overload]
    return out.sort_values(["label", "risk_med"], ascending=[False, False]).round(2)


def _md_table(df: pd.DataFrame) -> str:
    cols = [str(df.index.name or "")] + [str(c) for c in df.columns]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for idx, row in df.iterrows():
        lines.append("| " + " | ".join([str(idx)] + [_fmt(v) for v in row]) + " |")
    return "\n".join(lines)


def _fmt(v: object) -> str:
    if isinstance(v, float | np.floating):
        return "" if np.isnan(v) else f"{v:.2f}"
    return str(v)


def why(rows: pd.DataFrame) -> pd.DataFrame:
    """Sessions with what the scores say of them."""
    cols = ["family", "tenant_id", "risk_score", "alert", "n_gpus", "gpu_hours"]
    cols += [c for c in WHY if c in rows.columns]
    return rows[cols].set_index("family").round(2)


def top_negatives(j: pd.DataFrame, k: int = 8) -> pd.DataFrame:
    """The benign sessions that outrank most positives."""
    return why(j[j["label"] == 0].sort_values("risk_score", ascending=False).head(k))


def weak_positives(j: pd.DataFrame, threshold: float, k: int = 8) -> pd.DataFrame:
    """The positive sessions at or below the 1 %-FPR threshold, lowest first."""
    pos = j[(j["label"] == 1) & (j["risk_score"] <= threshold)]
    return why(pos.sort_values("risk_score").head(k))


def report_pair(train: Fleet, test: Fleet, work: Path) -> tuple[str, dict[str, object]]:
    scores, runs = train_and_score(train, test, work)
    truth = pd.read_csv(test.path / "truth.csv")
    j = join_truth(scores, truth)
    j.to_parquet(work / f"joined-{train.seed}-{test.seed}.parquet", index=False)
    m = measure(j)
    q = {k: runs[k]["rows_quarantined"] for k in ("train", "score")}  # type: ignore[index]
    lines = [
        f"## train {train.seed} -> test {test.seed}",
        "",
        f"- model alert threshold: risk >= {runs['train'].get('alert_risk')}"  # type: ignore[attr-defined]
        f"; train {runs['train_s']:.0f} s, score {runs['score_s']:.0f} s; quarantined: {q}",
        f"- test sessions {m['sessions']}, positive sessions {m['positives']}",
        f"- **AP {m['ap']:.3f}** ({m['ap_without_grey']:.3f} without the grey-zone {GREY} "
        f"sessions); recall at 1 % FPR {m['recall_1pct']:.2f} "
        f"(threshold risk > {m['threshold_1pct']:.1f})",
        f"- at the model's alert: recall {m['alert_recall']:.2f}, false alerts "
        f"{m['false_alerts']} ({m['false_alert_rate']:.1%} of benign sessions)",
        f"- per tenant (max risk): AP {m['tenant_ap']:.3f}, recall at 1 % FPR "
        f"{m['tenant_recall_1pct']:.2f}",
        "- recall at 1 % FPR per positive family: "
        + ", ".join(f"{f} {v:.2f}" for f, v in m["recall_1pct_family"].items()),  # type: ignore[attr-defined]
        "",
        "Per family (risk_score; `*_ev`: mean of the evidence columns; `max_linked`: most "
        "tenants sharing an entity_id):",
        "",
        _md_table(family_table(j)),
        "",
        "Highest-scoring benign sessions:",
        "",
        _md_table(top_negatives(j)),
        "",
        "Positive sessions missed at 1 % FPR (lowest first):",
        "",
        _md_table(weak_positives(j, float(m["threshold_1pct"]))),  # type: ignore[arg-type]
        "",
    ]
    return "\n".join(lines), m


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pair", action="append", default=[], help="TRAIN_SEED:TEST_SEED")
    ap.add_argument("--tenants", type=int, default=70)
    ap.add_argument("--days", type=float, default=6.0)
    ap.add_argument("--work", type=Path, default=Path("out/indep"))
    ap.add_argument("--out", type=Path, default=HERE / "results.md")
    ap.add_argument("--fp64", action="store_true", help="fleets also export FP64 pipe activity")
    args = ap.parse_args()
    pairs = args.pair or ["9103:9104"]
    args.work.mkdir(parents=True, exist_ok=True)
    sections, summary = [], []
    for p in pairs:
        a, b = (int(x) for x in p.split(":"))
        train = fleet(args.work, a, args.tenants, args.days, args.fp64)
        test = fleet(args.work, b, args.tenants, args.days, args.fp64)
        text, m = report_pair(train, test, args.work)
        print(text, flush=True)
        sections.append(text)
        summary.append(
            f"| {a} -> {b} | {m['ap']:.3f} | {m['ap_without_grey']:.3f} "
            f"| {m['recall_1pct']:.2f} | {m['alert_recall']:.2f} "
            f"| {m['false_alerts']} ({m['false_alert_rate']:.1%}) | {m['tenant_ap']:.3f} |"
        )
    head = [
        "# gpuwatch on the independent benchmark",
        "",
        f"{args.tenants} tenants x {args.days:g} days per fleet"
        f"{', FP64 pipe activity exported' if args.fp64 else ''}; generated by "
        "bench/indep/generate.py, measured by bench/indep/evaluate.py.",
        "",
        "| train -> test | AP | AP without grey zone | recall @1 % FPR | recall at alert "
        "| false alerts | tenant AP |",
        "|---|---:|---:|---:|---:|---:|---:|",
        *summary,
        "",
    ]
    args.out.write_text("\n".join(head + sections))


if __name__ == "__main__":
    main()
