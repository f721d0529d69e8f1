"""Workload features: what the session's GPUs did. Vectorised over all sessions at once."""

from __future__ import annotations

import csv
from functools import cache
from importlib import resources

import numpy as np
import pandas as pd

from ..config import Settings
from ..sessions import factorize_rows, first_rows
from ..timeutil import NS as _NS
from ..timeutil import epoch_ns
from .registry import BY_NAME, WORKLOAD

WORKLOAD_NAMES = [name for name, f in BY_NAME.items() if f.family == WORKLOAD]
DEFAULT_PEAK_TFLOPS = 312.0  # an A100: the model name is unknown or not in the table


def workload_features(
    sessions: pd.DataFrame, samples: pd.DataFrame, settings: Settings
) -> pd.DataFrame:
    """One row per session (same index as `sessions`) of the workload features."""
    n = len(sessions)
    if n == 0:
        return pd.DataFrame(columns=WORKLOAD_NAMES, index=sessions.index, dtype=float)
    s = samples["session"].to_numpy()
    gpu_key = factorize_rows(s, samples["host"], samples["gpu"])[0]
    util = samples["gpu_util"].to_numpy(float)
    ts = epoch_ns(samples["timestamp"])
    by_gpu = _GpuRows(gpu_key, ts)
    gpu_session = pd.Series(s[by_gpu.first_row])
    gpu_host = samples["host"].iloc[by_gpu.first_row]  # each GPU is on one host

    out: dict[str, np.ndarray] = {}  # one DataFrame at the end: no per-column insertion cost
    out["duration_s"] = (sessions["end"] - sessions["start"]).dt.total_seconds().to_numpy()
    out["n_gpus"] = np.bincount(gpu_session, minlength=n)
    out["n_hosts"] = _count_distinct(
        gpu_session.to_numpy(), factorize_rows(gpu_session, gpu_host)[0], n
    )

    # Per GPU: time in the session (span plus one sampling interval), activity, and whether
    # the GPU itself runs training (settings.features): mostly busy, with tensor work (or,
    # without profiling metrics, a mostly full framebuffer), for long enough. Mining, FP64
    # HPC, serving, notebook bursts and idle GPUs do not.
    mem_fill = (
        samples["fb_used_mib"] / (samples["fb_used_mib"] + samples["fb_free_mib"])
    ).to_numpy(float)
    k = len(by_gpu.starts)
    first, last = by_gpu.reduce(np.minimum, ts), by_gpu.reduce(np.maximum, ts)
    gpu_seconds = pd.Series((last - first + by_gpu.median_interval()) / _NS)
    rows = np.diff(np.r_[by_gpu.starts, len(gpu_key)])  # samples per GPU
    act = pd.Series(mean_by(gpu_key, _tensor_activity(samples), k, rows)).fillna(0)
    flop = gpu_seconds * act * _peak_flops(samples["model_name"].iloc[by_gpu.first_row])
    gpu_means = pd.DataFrame(
        {
            c: mean_by(gpu_key, v, k, rows)
            for c, v in (
                ("busy", util >= 80.0),
                ("tensor", samples["tensor_active"]),
                ("mem", mem_fill),
            )
        }
    )
    training = _training_gpus(gpu_means, gpu_seconds, settings)
    out["gpu_hours"] = _sum_by(gpu_session, gpu_seconds / 3600.0, n)
    out["est_flop"] = _sum_by(gpu_session, flop, n)
    out["log10_flop"] = np.log10(1.0 + out["est_flop"])
    out["training_gpu_share"] = _sum_by(gpu_session, training.astype(float), n) / out["n_gpus"]
    out["training_gpu_hours"] = _sum_by(gpu_session, gpu_seconds.where(training, 0) / 3600.0, n)
    out["training_flop"] = _sum_by(gpu_session, flop.where(training, 0), n)

    by = pd.Series(util).groupby(s, sort=True)
    spread = pd.DataFrame(
        {"util_std": by.std(ddof=0), "util_p95": by.quantile(0.95), "util_max": by.max()}
    ).reindex(range(n))
    means = {
        "util_mean": util,
        "util_std": None,
        "util_p95": None,
        "util_max": None,
        "busy_frac": util >= 90.0,
        "idle_frac": util <= settings.sessions.active_util_pct,
        "sm_active_mean": samples["sm_active"],
        "tensor_active_mean": samples["tensor_active"],
        "dram_active_mean": samples["dram_active"],
        "mem_fill": mem_fill,
        "power_mean_w": samples["power_w"],
        "nvlink_bps": samples["nvlink_tx_bps"] + samples["nvlink_rx_bps"],
        "pcie_bps": samples["pcie_tx_bps"] + samples["pcie_rx_bps"],
    }
    count = np.bincount(s, minlength=n)
    for col, values in means.items():
        out[col] = spread[col].to_numpy() if values is None else mean_by(s, values, n, count)
    with np.errstate(invalid="ignore", divide="ignore"):
        share = out["tensor_active_mean"] / out["sm_active_mean"]
    out["tensor_share"] = np.clip(np.where(out["sm_active_mean"] > 0.01, share, np.nan), 0, 1)

    grid = _grid_series(s, gpu_key, ts, util, settings.sessions.grid_seconds)
    out |= _shape_features(grid, n, settings.sessions.grid_seconds)
    table = pd.DataFrame(out, index=sessions.index)
    table["training_signature"] = _training_signature(table)
    return table


def _training_gpus(
    gpu_means: pd.DataFrame, gpu_seconds: pd.Series, settings: Settings
) -> pd.Series:
    f = settings.features
    tensor_work = (
        gpu_means["tensor"]
        .ge(f.training_tensor)
        .where(gpu_means["tensor"].notna(), gpu_means["mem"] >= f.training_memory)
    )
    return (
        (gpu_means["busy"] >= f.training_busy_share)
        & tensor_work.astype(bool)
        & (gpu_seconds >= f.training_min_gpu_seconds)
    )


def mean_by(
    codes: np.ndarray, values: pd.Series | np.ndarray, n: int, count: np.ndarray | None = None
) -> np.ndarray:
    """Mean of `values` per code 0..n-1, NaN skipped (NaN where a code has no value).
    `count`, rows per code, saves counting again when `values` has no NaN.

    Sums run in row order with np.bincount, so a group's mean depends only on its own rows:
    pandas' groupby mean switches algorithm (ufunc.reduceat or compensated sums) depending on
    whether any row of the whole column is NaN, which would make features depend on which
    other tenants share a partition.
    """
    x = np.asarray(values, dtype=float)
    ok = ~np.isnan(x)
    if not ok.all():
        codes, x, count = codes[ok], x[ok], None
    total = np.bincount(codes, weights=x, minlength=n)
    if count is None:
        count = np.bincount(codes, minlength=n)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, total / count, np.nan)


def _count_distinct(session: np.ndarray, key: np.ndarray, n: int) -> np.ndarray:
    """Distinct keys per session (keys numbered in order of first appearance)."""
    return np.bincount(session[first_rows(key)], minlength=n)


def _sum_by(index: pd.Series, values: pd.Series, n: int) -> np.ndarray:
    return np.bincount(index.to_numpy(), weights=values.to_numpy(float), minlength=n)


class _GpuRows:
    """The samples grouped by GPU (codes 0..k-1 in order of first appearance), each GPU's
    rows in input order: one stable sort, shared by the per-GPU reductions."""

    def __init__(self, gpu: np.ndarray, ts: np.ndarray) -> None:
        small = gpu.astype(np.int16) if len(gpu) and gpu.max() < 1 << 15 else gpu  # radix sort
        self.order = np.argsort(small, kind="stable")
        self.gpu, self.ts = gpu[self.order], ts[self.order]
        self.starts = np.flatnonzero(np.r_[True, self.gpu[1:] != self.gpu[:-1]])
        self.first_row = self.order[self.starts]  # each GPU's first row in input order

    def reduce(self, ufunc: np.ufunc, values: np.ndarray) -> np.ndarray:
        return ufunc.reduceat(values[self.order], self.starts)

    def median_interval(self) -> np.ndarray:
        """Median gap between consecutive samples of each GPU in time (0 for one sample)."""
        gpu, ts = self.gpu, self.ts
        inner = gpu[1:] == gpu[:-1]
        if (np.diff(ts)[inner] < 0).any():  # some GPU's rows are not in time order
            order = np.lexsort((ts, gpu))
            gpu, ts = gpu[order], ts[order]
        step = np.diff(ts)[inner]  # in int64, then float (as pandas diff does)
        owner = gpu[1:][inner]
        k = len(self.starts)
        count = np.bincount(owner, minlength=k)
        median = np.zeros(k)
        has = count > 0
        if not has.any():
            return median
        rank, values = pd.factorize(step, sort=True)
        values, step = values.astype(float), step.astype(float)
        low, high = (count[has] - 1) // 2, count[has] // 2  # positions of the middle steps
        if k * len(values) <= 4 * len(step):  # few distinct steps: count them per GPU
            seen = np.cumsum(
                np.bincount(owner * len(values) + rank, minlength=k * len(values)).reshape(
                    k, len(values)
                ),
                axis=1,
            )[has]
            low = values[(seen <= low[:, None]).sum(axis=1)]
            high = values[(seen <= high[:, None]).sum(axis=1)]
        else:
            ordered = step[np.lexsort((step, owner))]
            begin = np.r_[0, np.cumsum(count[has])[:-1]]
            low, high = ordered[begin + low], ordered[begin + high]
        median[has] = (low + high) / 2
        return median


def _tensor_activity(samples: pd.DataFrame) -> np.ndarray:
    """Tensor activity, else a documented estimate from SM activity or utilisation."""
    act = samples["tensor_active"].to_numpy(float)
    act = np.where(np.isnan(act), samples["sm_active"].to_numpy(float) * 0.5, act)
    return np.where(np.isnan(act), samples["gpu_util"].to_numpy(float) / 100.0 * 0.35, act)


@cache
def _peak_table() -> tuple[tuple[str, float], ...]:
    text = resources.files("detector.data").joinpath("gpu_specs.csv").read_text()
    rows = csv.reader(line for line in text.splitlines() if not line.startswith("#"))
    next(rows)
    return tuple((pattern.lower(), float(tflops)) for pattern, tflops in rows)


def peak_flops(model_name: str | None) -> float:
    """Dense tensor peak FLOP/s of a GPU model, from the bundled table."""
    name = (model_name or "").lower()
    for pattern, tflops in _peak_table():
        if pattern in name:
            return tflops * 1e12
    return DEFAULT_PEAK_TFLOPS * 1e12


def _peak_flops(model_names: pd.Series) -> np.ndarray:
    codes, names = pd.factorize(model_names, use_na_sentinel=False)
    names = pd.Series(np.asarray(names, dtype=object)).astype("string").fillna("")
    table = np.array([peak_flops(name) for name in names] or [0.0])
    return table[codes]


def _grid_series(
    session: np.ndarray, gpu: np.ndarray, ts: np.ndarray, util: np.ndarray, grid_seconds: int
) -> pd.DataFrame:
    """Per (session, bucket): mean over GPUs (`m`, with its `slot` code); and per (session,
    gpu, bucket): the GPU's mean (`util`). `gpu` holds codes 0..k-1 that each belong to one
    session (as `factorize_rows(session, host, gpu)` gives)."""
    bucket = ts // (grid_seconds * _NS)
    base = int(bucket.min()) if len(bucket) else 0
    span = int(bucket.max()) - base + 1 if len(bucket) else 1
    # codes in order of first appearance, as factorize_rows(session, gpu, bucket) would give:
    # the gpu determines the session, so (gpu, bucket) is an equivalent key
    cell, key = pd.factorize(gpu.astype(np.int64) * span + (bucket - base))
    c_gpu, c_bucket = np.divmod(key, span)
    of_gpu = np.zeros(len(c_gpu) and int(c_gpu.max()) + 1, dtype=np.int64)
    of_gpu[gpu] = session
    c_session = of_gpu[c_gpu]
    slot, _ = pd.factorize(c_session * span + c_bucket)
    c_util = mean_by(cell, util, len(key))
    return pd.DataFrame(
        {
            "session": c_session,
            "gpu": c_gpu,
            "bucket": c_bucket + base,
            "util": c_util,
            "slot": slot,
            "m": mean_by(slot, c_util, slot.max() + 1 if len(slot) else 0)[slot],
        }
    )


def _shape_features(grid: pd.DataFrame, n: int, grid_seconds: int) -> dict[str, np.ndarray]:
    """Lock-step, autocorrelation and checkpoint-dip features from the gridded series."""
    # Lock-step: Pearson correlation of each GPU with the session mean, from sums.
    x, m = grid["util"].to_numpy(float), grid["m"].to_numpy(float)
    pair, p_gpu = pd.factorize(grid["gpu"].to_numpy())  # a gpu is in one session
    p_session = grid["session"].to_numpy()[first_rows(pair)]
    k = len(p_session)
    sums = {
        name: np.bincount(pair, weights=v, minlength=k)
        for name, v in {
            "n": np.ones(len(x)),
            "x": x,
            "m": m,
            "xx": x * x,
            "mm": m * m,
            "xm": x * m,
        }.items()
    }
    cov = sums["xm"] - sums["x"] * sums["m"] / sums["n"]
    var_x = sums["xx"] - sums["x"] ** 2 / sums["n"]
    var_m = sums["mm"] - sums["m"] ** 2 / sums["n"]
    with np.errstate(invalid="ignore", divide="ignore"):
        corr = np.where((var_x > 1e-9) & (var_m > 1e-9), cov / np.sqrt(var_x * var_m), np.nan)
    by_gpu = np.lexsort((p_gpu.astype(np.int64), p_session.astype(np.int64)))
    pair_session = p_session.astype(np.int64)[by_gpu]
    n_gpus = np.bincount(pair_session, minlength=n)
    lockstep = pd.Series(np.where(n_gpus > 1, mean_by(pair_session, corr[by_gpu], n), np.nan))

    # The session mean series on the grid, in time order.
    first = first_rows(grid["slot"].to_numpy())  # one row per (session, bucket)
    buckets = grid["bucket"].to_numpy()[first]
    sess = grid["session"].to_numpy()[first]
    order = np.lexsort((buckets, sess))
    buckets, sess = buckets[order], sess[order]
    mser = grid["m"].to_numpy(float)[first][order]
    same = np.r_[False, sess[1:] == sess[:-1]]
    prev = np.r_[np.nan, mser[:-1]]
    autocorr = (
        pd.DataFrame({"session": sess[same], "a": mser[same], "b": prev[same]})
        .groupby("session")[["a", "b"]]
        .corr()
        .xs("a", level=1)["b"]
    )

    # Dips: the mean falls below half the session median; count dip starts and their spacing.
    median = pd.Series(mser).groupby(sess).transform("median").to_numpy()
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
    return {
        "lockstep": lockstep.to_numpy(),
        "util_autocorr": autocorr.reindex(range(n)).to_numpy(),
        "dip_rate_per_h": (dips / hours).reindex(range(n)).to_numpy(),
        "dip_regularity": regularity.reindex(range(n)).fillna(0.0).to_numpy(),
    }


def _training_signature(features: pd.DataFrame) -> pd.Series:
    parts = pd.DataFrame(
        {
            "busy": features["busy_frac"],
            "tensor": (features["tensor_active_mean"] / 0.4).clip(0, 1),
            "memory": features["mem_fill"].clip(0, 1),
            "lockstep": features["lockstep"].clip(0, 1),
        }
    )
    return parts.mean(axis=1, skipna=True).fillna(0.0)
