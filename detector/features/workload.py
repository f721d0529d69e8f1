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
from .training import training_evidence

WORKLOAD_NAMES = [name for name, f in BY_NAME.items() if f.family == WORKLOAD]
DEFAULT_PEAK_TFLOPS = 312.0  # an A100: the model name is unknown or not in the table
# Achieved tensor FLOP/s as a share of peak, from the best metric a sample has: the estimate
# and a band around it (low, high). Tensor-pipe activity bounds the matrix work closely; SM
# activity and utilisation only loosely (the FLOP interval of gpuwatch accounting).
ACTIVITY_FACTORS = {
    "tensor_active": (1.0, 0.7, 1.15),
    "sm_active": (0.5, 0.3, 0.7),
    "gpu_util": (0.35, 0.2, 0.5),  # percent / 100
}
DIP_TIMES = "dip_times"  # per-session summary for linking in-step jobs (not a feature)
# A data-centre GPU draws about this share of its board limit doing nothing (H100 ~70 of
# 700 W, A100 ~55 of 400 W): power per utilisation counts what is drawn above it.
IDLE_POWER_SHARE = 0.12
# Utilisation points: below this typical change of the other GPUs' mean per grid step there is
# nothing to be in lock-step with (a flat-out job without dips), and lock-step is unknown.
LOCKSTEP_MIN_MOVE = 1.0


def workload_features(
    sessions: pd.DataFrame, samples: pd.DataFrame, settings: Settings
) -> pd.DataFrame:
    """One row per session (same index as `sessions`) of the workload features, plus the
    session's synchronous-dip times (`DIP_TIMES`, epoch seconds) for the global linking pass."""
    n = len(sessions)
    if n == 0:
        empty = pd.DataFrame(columns=WORKLOAD_NAMES, index=sessions.index, dtype=float)
        return empty.assign(**{DIP_TIMES: pd.Series(dtype=object)})
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

    # Per GPU: time in the session (span plus one sampling interval) and estimated FLOP with
    # its band (ACTIVITY_FACTORS).
    mem_fill = (
        samples["fb_used_mib"] / (samples["fb_used_mib"] + samples["fb_free_mib"])
    ).to_numpy(float)
    k = len(by_gpu.starts)
    first, last = by_gpu.reduce(np.minimum, ts), by_gpu.reduce(np.maximum, ts)
    gpu_seconds = (last - first + by_gpu.median_interval()) / _NS
    rows = np.diff(np.r_[by_gpu.starts, len(gpu_key)])  # samples per GPU
    peak, tdp = _gpu_specs(samples["model_name"].iloc[by_gpu.first_row])
    for name, activity in zip(
        ("est_flop", "est_flop_low", "est_flop_high"), _tensor_activity(samples), strict=True
    ):
        act = np.nan_to_num(mean_by(gpu_key, activity, k, rows))
        out[name] = np.bincount(gpu_session, weights=gpu_seconds * act * peak, minlength=n)
    out["gpu_hours"] = np.bincount(gpu_session, weights=gpu_seconds / 3600.0, minlength=n)
    out["log10_flop"] = np.log10(1.0 + out["est_flop"])
    out["samples_per_gpu"] = np.bincount(gpu_session, weights=rows, minlength=n) / out["n_gpus"]

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
        "fp64_active_mean": samples["fp64_active"],
        "dram_active_mean": samples["dram_active"],
        "mem_fill": mem_fill,
        "power_mean_w": samples["power_w"],
        "nvlink_bps": samples["nvlink_tx_bps"] + samples["nvlink_rx_bps"],
        "pcie_bps": samples["pcie_tx_bps"] + samples["pcie_rx_bps"],
    }
    count = np.bincount(s, minlength=n)
    for col, values in means.items():
        out[col] = spread[col].to_numpy() if values is None else mean_by(s, values, n, count)
    # Shares of SM activity: matrix math (tensor cores), double precision (FP64 pipe)
    active = np.where(out["sm_active_mean"] > 0.01, out["sm_active_mean"], np.nan)
    out["tensor_share"] = np.clip(out["tensor_active_mean"] / active, 0, 1)
    out["fp64_share"] = np.clip(out.pop("fp64_active_mean") / active, 0, 1)
    # Relative to how busy the GPUs are: power against the board's limit, memory traffic.
    load = np.where(util > settings.sessions.active_util_pct, util / 100.0, np.nan)
    gpu_of_row = np.empty(len(gpu_key), dtype=np.int64)
    gpu_of_row[by_gpu.order] = np.repeat(np.arange(k), rows)
    limit = tdp[gpu_of_row]
    out["power_per_util"] = _ratio_by(
        s,
        samples["power_w"].to_numpy(float) - IDLE_POWER_SHARE * limit,
        (1.0 - IDLE_POWER_SHARE) * limit * load,
        n,
    )
    out["dram_per_util"] = _ratio_by(s, samples["dram_active"].to_numpy(float), load, n)

    grid = _grid_series(s, gpu_key, ts, util, settings.sessions.grid_seconds)
    shape, dip_times = _shape_features(grid, n, settings.sessions.grid_seconds)
    out |= shape
    table = pd.DataFrame(out, index=sessions.index)
    table = table[WORKLOAD_NAMES[: WORKLOAD_NAMES.index("training_evidence")]]
    table["training_evidence"] = training_evidence(table)
    table[DIP_TIMES] = pd.Series(dip_times, index=sessions.index, dtype=object)
    return table


def _ratio_by(codes: np.ndarray, num: np.ndarray, den: np.ndarray, n: int) -> np.ndarray:
    """Per code: sum(num) / sum(den) over rows where both are known."""
    ok = ~(np.isnan(num) | np.isnan(den))
    top = np.bincount(codes[ok], weights=num[ok], minlength=n)
    bottom = np.bincount(codes[ok], weights=den[ok], minlength=n)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(bottom > 0, top / bottom, np.nan)


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


def _tensor_activity(samples: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per sample: achieved share of tensor peak (estimate, low, high) from tensor activity,
    else SM activity, else utilisation (ACTIVITY_FACTORS)."""
    out = [np.full(len(samples), np.nan) for _ in range(3)]
    for column, factors in ACTIVITY_FACTORS.items():
        metric = samples[column].to_numpy(float) / (100.0 if column == "gpu_util" else 1.0)
        for values, factor in zip(out, factors, strict=True):
            values[:] = np.where(np.isnan(values), np.clip(metric * factor, 0, 1), values)
    return out[0], out[1], out[2]


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


def _shape_features(
    grid: pd.DataFrame, n: int, grid_seconds: int
) -> tuple[dict[str, np.ndarray], list[np.ndarray]]:
    """Lock-step, autocorrelation, dispersion and checkpoint-dip features from the gridded
    series, and each session's dip times (epoch seconds)."""
    sums, pair_session = _lockstep_sums(grid)
    with np.errstate(invalid="ignore", divide="ignore"):
        cov = sums["xm"] - sums["x"] * sums["m"] / sums["n"]
        var_x = sums["xx"] - sums["x"] ** 2 / sums["n"]
        var_m = sums["mm"] - sums["m"] ** 2 / sums["n"]
        moves = var_m / sums["n"] >= LOCKSTEP_MIN_MOVE**2  # the others move at all
        corr = np.where(moves & (var_x > 1e-9), cov / np.sqrt(var_x * var_m), np.nan)
    lockstep = mean_by(pair_session, corr, n)

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
        "lockstep": lockstep,
        "util_autocorr": autocorr.reindex(range(n)).to_numpy(),
        "util_dispersion": dispersion.reindex(range(n)).to_numpy(),
        "dip_rate_per_h": (dips / hours).reindex(range(n)).to_numpy(),
        "dip_regularity": regularity.reindex(range(n)).fillna(0.0).to_numpy(),
    }
    return features, [times[bounds[i] : bounds[i + 1]] for i in range(n)]


def _lockstep_sums(grid: pd.DataFrame) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Per GPU: sums for the Pearson correlation of its utilisation changes (bucket to next
    bucket) with the changes of the mean of the session's *other* GPUs, and each GPU's session.
    Changes, not levels: a common daily load curve does not make independent servers look
    lock-step; leaving the GPU out of the mean keeps two independent GPUs at ~0, not 0.7."""
    gpu = grid["gpu"].to_numpy()
    bucket = grid["bucket"].to_numpy()
    x = grid["util"].to_numpy(float)
    slot = grid["slot"].to_numpy()
    count = np.bincount(slot)[slot]
    with np.errstate(invalid="ignore", divide="ignore"):
        others = np.where(count > 1, (grid["m"].to_numpy(float) * count - x) / (count - 1), np.nan)
    order = np.lexsort((bucket, gpu))
    g, b, x, others = gpu[order], bucket[order], x[order], others[order]
    step = (g[1:] == g[:-1]) & (b[1:] - b[:-1] == 1)
    dx, dm = np.diff(x)[step], np.diff(others)[step]
    ok = ~np.isnan(dm)
    owner, dx, dm = g[1:][step][ok], dx[ok], dm[ok]
    k = int(gpu.max()) + 1 if len(gpu) else 0
    sums = {
        name: np.bincount(owner, weights=v, minlength=k)
        for name, v in {
            "n": np.ones(len(dx)),
            "x": dx,
            "m": dm,
            "xx": dx * dx,
            "mm": dm * dm,
            "xm": dx * dm,
        }.items()
    }
    session_of = np.zeros(k, dtype=np.int64)
    session_of[gpu] = grid["session"].to_numpy()
    return sums, session_of
