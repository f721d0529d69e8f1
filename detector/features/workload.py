"""Workload features: what the session's GPUs did. Vectorised over all sessions at once.

The samples are first reduced to a mergeable `summary.Summary`; the features are computed
from it. Time slices of one large partition are summarised one by one and merged first
(`engine.slices`), and give the features of the whole.
"""

from __future__ import annotations

import csv
from functools import cache
from importlib import resources

import numpy as np
import pandas as pd

from ..config import Settings
from ..sessions import factorize_rows, first_rows
from ..timeutil import NS as _NS
from .registry import BY_NAME, WORKLOAD
from .summary import Summary, nth_value, summarise
from .training import training_evidence

WORKLOAD_NAMES = [name for name, f in BY_NAME.items() if f.family == WORKLOAD]
DEFAULT_PEAK_TFLOPS = 312.0  # an A100: the model name is unknown or not in the table
DIP_TIMES = "dip_times"  # per-session summary for linking in-step jobs (not a feature)
# A data-centre GPU draws about this share of its board limit doing nothing (H100 ~70 of
# 700 W, A100 ~55 of 400 W): power per utilisation counts what is drawn above it.
IDLE_POWER_SHARE = 0.12
# Utilisation points: below this typical change of the other GPUs' mean per grid step there is
# nothing to be in lock-step with (a flat-out job without dips), and lock-step is unknown.
LOCKSTEP_MIN_MOVE = 1.0
MEANS = [
    "util_mean",
    "busy_frac",
    "idle_frac",
    "sm_active_mean",
    "tensor_active_mean",
    "fp64_active_mean",
    "dram_active_mean",
    "mem_fill",
    "power_mean_w",
    "nvlink_bps",
    "pcie_bps",
]


def workload_features(
    sessions: pd.DataFrame, samples: pd.DataFrame, settings: Settings
) -> pd.DataFrame:
    """One row per session (same index as `sessions`) of the workload features, plus the
    session's synchronous-dip times (`DIP_TIMES`, epoch seconds) for the global linking pass."""
    return summary_features(sessions, summarise(len(sessions), samples, settings), settings)


def summary_features(sessions: pd.DataFrame, summary: Summary, settings: Settings) -> pd.DataFrame:
    """`workload_features` from the summary of the sessions' samples."""
    n = len(sessions)
    if n == 0:
        empty = pd.DataFrame(columns=WORKLOAD_NAMES, index=sessions.index, dtype=float)
        return empty.assign(**{DIP_TIMES: pd.Series(dtype=object)})
    gpus, sums = summary.gpus, summary.sums
    gpu_session = gpus["session"].to_numpy()
    out: dict[str, np.ndarray] = {}  # one DataFrame at the end: no per-column insertion cost
    out["duration_s"] = (sessions["end"] - sessions["start"]).dt.total_seconds().to_numpy()
    out["n_gpus"] = np.bincount(gpu_session, minlength=n)
    out["n_hosts"] = np.bincount(
        gpu_session[first_rows(factorize_rows(gpu_session, gpus["host"])[0])], minlength=n
    )

    # Per GPU: time in the session (span plus its median sampling interval) and estimated FLOP
    # with its band (ACTIVITY_FACTORS).
    steps = summary.steps
    n_steps = np.bincount(steps["group"].to_numpy(), steps["count"], minlength=len(gpus))
    median = (nth_value(steps, (n_steps - 1) // 2) + nth_value(steps, n_steps // 2)) / 2
    median = np.where(n_steps > 0, median, 0.0)
    gpu_seconds = (gpus["last_ts"].to_numpy() - gpus["first_ts"].to_numpy() + median) / _NS
    peak, tdp = _gpu_specs(gpus["model_name"])
    for i, name in enumerate(("est_flop", "est_flop_low", "est_flop_high")):
        act = np.nan_to_num(_ratio(gpus[f"act{i}"].to_numpy(), gpus[f"act{i}#n"].to_numpy()))
        out[name] = np.bincount(gpu_session, weights=gpu_seconds * act * peak, minlength=n)
    out["gpu_hours"] = np.bincount(gpu_session, weights=gpu_seconds / 3600.0, minlength=n)
    out["log10_flop"] = np.log10(1.0 + out["est_flop"])
    out["samples_per_gpu"] = sums["rows"] / out["n_gpus"]

    with np.errstate(invalid="ignore"):
        out["util_std"] = np.sqrt(summary.util_m2 / sums["rows"])
    values = summary.util_counts
    h = (sums["rows"] - 1) * 0.95  # linear interpolation, as pandas' quantile
    low = np.floor(h)
    v_low, v_high = nth_value(values, low), nth_value(values, np.minimum(low + 1, sums["rows"] - 1))
    out["util_p95"] = np.where(sums["rows"] > 0, v_low + (h - low) * (v_high - v_low), np.nan)
    out["util_max"] = np.where(sums["rows"] > 0, nth_value(values, sums["rows"] - 1), np.nan)
    for col in MEANS:
        out[col] = _ratio(sums[col], sums[f"{col}#n"])
    # Shares of SM activity: matrix math (tensor cores), double precision (FP64 pipe)
    active = np.where(out["sm_active_mean"] > 0.01, out["sm_active_mean"], np.nan)
    out["tensor_share"] = np.clip(out["tensor_active_mean"] / active, 0, 1)
    out["fp64_share"] = np.clip(out.pop("fp64_active_mean") / active, 0, 1)
    # Relative to how busy the GPUs are: power against the board's limit, memory traffic.
    known = ~np.isnan(tdp)
    top = gpus["power"].to_numpy() - IDLE_POWER_SHARE * tdp * gpus["power#n"].to_numpy()
    bottom = (1.0 - IDLE_POWER_SHARE) * tdp * gpus["load"].to_numpy()
    out["power_per_util"] = _ratio(
        np.bincount(gpu_session[known], weights=top[known], minlength=n),
        np.bincount(gpu_session[known], weights=bottom[known], minlength=n),
    )
    out["dram_per_util"] = _ratio(sums["dram_top"], sums["dram_bottom"])

    out["lockstep"] = _lockstep(gpus, n)
    shape, dip_times = _shape_features(summary.series, n, settings.sessions.grid_seconds)
    out |= shape
    table = pd.DataFrame(out, index=sessions.index)
    table = table[WORKLOAD_NAMES[: WORKLOAD_NAMES.index("training_evidence")]]
    table["training_evidence"] = training_evidence(table)
    table[DIP_TIMES] = pd.Series(dip_times, index=sessions.index, dtype=object)
    return table


def _ratio(top: np.ndarray, bottom: np.ndarray) -> np.ndarray:
    """top / bottom where bottom > 0 (sums over the rows where both are known), else NaN."""
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(bottom > 0, top / bottom, np.nan)


def mean_by(codes: np.ndarray, values: pd.Series | np.ndarray, n: int) -> np.ndarray:
    """Mean of `values` per code 0..n-1, NaN skipped (NaN where a code has no value).

    Sums run in row order with np.bincount, so a group's mean depends only on its own rows:
    pandas' groupby mean switches algorithm (ufunc.reduceat or compensated sums) depending on
    whether any row of the whole column is NaN, which would make features depend on which
    other tenants share a partition.
    """
    x = np.asarray(values, dtype=float)
    ok = ~np.isnan(x)
    return _ratio(
        np.bincount(codes[ok], weights=x[ok], minlength=n), np.bincount(codes[ok], minlength=n)
    )


def _lockstep(gpus: pd.DataFrame, n: int) -> np.ndarray:
    """Per session: mean over its GPUs of the correlation of the GPU's utilisation changes
    with the other GPUs' (summary.LOCKSTEP sums), where the others move at all."""
    s = {name: gpus[name].to_numpy(float) for name in ("n", "x", "m", "xx", "mm", "xm")}
    with np.errstate(invalid="ignore", divide="ignore"):
        cov = s["xm"] - s["x"] * s["m"] / s["n"]
        var_x = s["xx"] - s["x"] ** 2 / s["n"]
        var_m = s["mm"] - s["m"] ** 2 / s["n"]
        moves = var_m / s["n"] >= LOCKSTEP_MIN_MOVE**2  # the others move at all
        corr = np.where(moves & (var_x > 1e-9), cov / np.sqrt(var_x * var_m), np.nan)
    return mean_by(gpus["session"].to_numpy(), corr, n)


@cache
def _spec_table() -> tuple[tuple[str, float, float], ...]:
    text = resources.files("detector.data").joinpath("gpu_specs.csv").read_text()
    rows = csv.reader(line for line in text.splitlines() if not line.startswith("#"))
    next(rows)
    return tuple((pattern.lower(), float(tflops), float(tdp)) for pattern, tflops, tdp in rows)


def gpu_spec(model_name: str | None) -> tuple[float, float]:
    """Dense tensor peak FLOP/s and board power limit (W, NaN when unknown) of a GPU model,
    from the bundled table."""
    name = (model_name or "").lower()
    for pattern, tflops, tdp in _spec_table():
        if pattern in name:
            return tflops * 1e12, tdp
    return DEFAULT_PEAK_TFLOPS * 1e12, np.nan


def peak_flops(model_name: str | None) -> float:
    """Dense tensor peak FLOP/s of a GPU model, from the bundled table."""
    return gpu_spec(model_name)[0]


def _gpu_specs(model_names: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    codes, names = pd.factorize(model_names, use_na_sentinel=False)
    names = pd.Series(np.asarray(names, dtype=object)).astype("string").fillna("")
    table = np.array([gpu_spec(name) for name in names] or [(0.0, np.nan)])
    return table[codes, 0], table[codes, 1]


def _shape_features(
    series: pd.DataFrame, n: int, grid_seconds: int
) -> tuple[dict[str, np.ndarray], list[np.ndarray]]:
    """Autocorrelation, dispersion and checkpoint-dip features from the session mean series
    on the grid (session, bucket, m), and each session's dip times (epoch seconds)."""
    buckets = series["bucket"].to_numpy()
    sess = series["session"].to_numpy()
    order = np.lexsort((buckets, sess))
    buckets, sess = buckets[order], sess[order]
    mser = series["m"].to_numpy(float)[order]
    same = np.r_[False, sess[1:] == sess[:-1]]
    prev = np.r_[np.nan, mser[:-1]]
    autocorr = (
        pd.DataFrame({"session": sess[same], "a": mser[same], "b": prev[same]})
        .groupby("session")[["a", "b"]]
        .corr()
        .xs("a", level=1)["b"]
    )
    median = pd.Series(mser).groupby(sess).transform("median").to_numpy()
    spread = pd.Series(np.abs(mser - median)).groupby(sess).median()
    level = pd.Series(median).groupby(sess).first()
    dispersion = 1.4826 * spread / level.clip(lower=1.0)  # robust CV: dips and restarts aside

    # Dips: the mean falls below half the session median; count dip starts and their spacing.
    low = mser < 0.5 * median
    start = low & ~np.r_[False, low[:-1] & same[1:]]
    dip_bucket = buckets[start]
    dip_sess = sess[start]
    gaps = np.full(len(dip_bucket), np.nan)
    follows = dip_sess[1:] == dip_sess[:-1]
    gaps[1:][follows] = np.diff(dip_bucket)[follows]
    gaps = pd.Series(gaps)
    gap_stats = gaps.groupby(dip_sess).agg(["mean", "std", "count"])
    regularity = (
        (1 - gap_stats["std"] / gap_stats["mean"]).clip(0, 1).where(gap_stats["count"] >= 2)
    )
    hours = pd.Series(1.0, index=sess).groupby(level=0).sum() * grid_seconds / 3600.0
    dips = pd.Series(start.astype(float)).groupby(sess).sum()
    bounds = np.searchsorted(dip_sess, np.arange(n + 1))  # dip_sess is sorted
    times = dip_bucket.astype(np.int64) * grid_seconds
    features = {
        "util_autocorr": autocorr.reindex(range(n)).to_numpy(),
        "util_dispersion": dispersion.reindex(range(n)).to_numpy(),
        "dip_rate_per_h": (dips / hours).reindex(range(n)).to_numpy(),
        "dip_regularity": regularity.reindex(range(n)).fillna(0.0).to_numpy(),
    }
    return features, [times[bounds[i] : bounds[i + 1]] for i in range(n)]
