"""Mergeable summaries of sessions' samples: everything the workload features read.

`summarise` reduces the samples of some sessions to sums and counts per session and per GPU,
value counts (utilisation per session, sampling steps per GPU: quantiles and medians come
from them exactly), the lock-step sums of each GPU with its first and last grid cell, and the
session mean series on the time grid. `merge` combines the summaries of two consecutive time
slices of the same rows into the summary of both, cut at grid boundaries (so every grid cell
lies in one slice): the features of the merged summary are those of one summary of all the
rows, up to the order of float additions. A summary holds no per-sample data; its value
counts are as large as the distinct values (101 for integer utilisation) and its series one
value per session and grid step.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..config import Settings
from ..sessions import factorize_rows, first_rows
from ..timeutil import NS as _NS
from ..timeutil import epoch_ns

# Achieved tensor FLOP/s as a share of peak, from the best metric a sample has: the estimate
# and a band around it (low, high). Tensor-pipe activity bounds the matrix work closely; SM
# activity and utilisation only loosely (the FLOP interval of gpuwatch accounting).
ACTIVITY_FACTORS = {
    "tensor_active": (1.0, 0.7, 1.15),
    "sm_active": (0.5, 0.3, 0.7),
    "gpu_util": (0.35, 0.2, 0.5),  # percent / 100
}
LOCKSTEP = ("n", "x", "m", "xx", "mm", "xm")  # per GPU: sums over its grid steps
FIRST = ["session", "host", "gpu", "model_name", "first_ts", "first_bucket", "first_x", "first_o"]
LAST = ["last_ts", "last_bucket", "last_x", "last_o"]  # of the GPU's last sample / grid cell


@dataclass
class Summary:
    """Partial statistics of the samples of sessions 0..n-1 (positions in their table)."""

    sums: dict[str, np.ndarray]  # per session, additive: "rows", "<feature>" and "<feature>#n"
    util_mean: np.ndarray  # per session (NaN without samples) ...
    util_m2: np.ndarray  # ... and sum of squared deviations from it (merged as Chan et al.)
    util_counts: pd.DataFrame  # group (session), value, count
    gpus: pd.DataFrame  # per GPU: FIRST, LAST, rows, sums (act*, power*, load, LOCKSTEP)
    steps: pd.DataFrame  # group (row of `gpus`), value (gap between samples, ns), count
    series: pd.DataFrame  # session, bucket, m (mean utilisation of its GPUs in the bucket)


def summarise(n: int, samples: pd.DataFrame, settings: Settings) -> Summary:
    """The summary of `samples` (a `session` column: 0..n-1; each GPU's rows in time order,
    as `cut_sessions` gives them)."""
    active_pct = settings.sessions.active_util_pct
    s = samples["session"].to_numpy()
    gpu_key = factorize_rows(s, samples["host"], samples["gpu"])[0]
    util = samples["gpu_util"].to_numpy(float)
    ts = epoch_ns(samples["timestamp"])
    by_gpu = _GpuRows(gpu_key, ts)
    k = len(by_gpu.starts)
    first = by_gpu.first_row
    gpus: dict[str, np.ndarray] = {
        "session": s[first],
        "host": np.asarray(samples["host"].iloc[first], dtype=object),
        "gpu": np.asarray(samples["gpu"].iloc[first], dtype=object),
        "model_name": np.asarray(samples["model_name"].iloc[first], dtype=object),
        "first_ts": by_gpu.reduce(np.minimum, ts),
        "last_ts": by_gpu.reduce(np.maximum, ts),
        "rows": np.diff(np.r_[by_gpu.starts, len(gpu_key)]),
    }
    for i, activity in enumerate(_tensor_activity(samples)):
        gpus[f"act{i}"], gpus[f"act{i}#n"] = sum_count(gpu_key, activity, k)
    # power against the board limit: the limit is the GPU's, so sums per GPU suffice
    load = np.where(util > active_pct, util / 100.0, np.nan)
    power = samples["power_w"].to_numpy(float)
    ok = ~(np.isnan(power) | np.isnan(load))
    gpus["power"] = np.bincount(gpu_key[ok], weights=power[ok], minlength=k)
    gpus["power#n"] = np.bincount(gpu_key[ok], minlength=k).astype(float)
    gpus["load"] = np.bincount(gpu_key[ok], weights=load[ok], minlength=k)

    mem_fill = (
        samples["fb_used_mib"] / (samples["fb_used_mib"] + samples["fb_free_mib"])
    ).to_numpy(float)
    means = {
        "util_mean": util,
        "busy_frac": util >= 90.0,
        "idle_frac": util <= active_pct,
        "sm_active_mean": samples["sm_active"],
        "tensor_active_mean": samples["tensor_active"],
        "fp64_active_mean": samples["fp64_active"],
        "dram_active_mean": samples["dram_active"],
        "mem_fill": mem_fill,
        "power_mean_w": samples["power_w"],
        "nvlink_bps": samples["nvlink_tx_bps"] + samples["nvlink_rx_bps"],
        "pcie_bps": samples["pcie_tx_bps"] + samples["pcie_rx_bps"],
    }
    sums = {"rows": np.bincount(s, minlength=n).astype(float)}
    for col, values in means.items():
        sums[col], sums[f"{col}#n"] = sum_count(s, values, n)
    dram = samples["dram_active"].to_numpy(float)
    ok = ~(np.isnan(dram) | np.isnan(load))
    sums["dram_top"] = np.bincount(s[ok], weights=dram[ok], minlength=n)
    sums["dram_bottom"] = np.bincount(s[ok], weights=load[ok], minlength=n)
    with np.errstate(invalid="ignore", divide="ignore"):
        util_mean = sums["util_mean"] / sums["rows"]
    util_m2 = np.bincount(s, weights=(util - util_mean[s]) ** 2, minlength=n)

    grid = _grid_series(s, gpu_key, ts, util, settings.sessions.grid_seconds)
    gpus |= _lockstep_sums(grid, k)
    cells = first_rows(grid["slot"].to_numpy())  # one row per (session, bucket)
    return Summary(
        sums,
        util_mean,
        util_m2,
        value_counts(s, util),
        pd.DataFrame(gpus),
        by_gpu.step_counts(),
        grid.iloc[cells][["session", "bucket", "m"]].reset_index(drop=True),
    )


def merge(a: Summary, b: Summary) -> Summary:
    """The summary of the rows of `a` and `b`: two time slices of the same sessions' rows,
    `a` entirely before `b`, cut at a grid boundary."""
    sums = {name: a.sums[name] + b.sums[name] for name in a.sums}
    n_a, n_b, n = a.sums["rows"], b.sums["rows"], sums["rows"]
    with np.errstate(invalid="ignore", divide="ignore"):
        delta = np.nan_to_num(b.util_mean - a.util_mean)
        mean = np.where(n_a > 0, np.nan_to_num(a.util_mean) + delta * n_b / n, b.util_mean)
        m2 = a.util_m2 + b.util_m2 + np.nan_to_num(delta**2 * n_a * n_b / n)

    both = pd.concat([a.gpus, b.gpus], ignore_index=True)
    code = factorize_rows(both["session"].to_numpy(), both["host"], both["gpu"])[0]
    k = int(code.max()) + 1 if len(code) else 0
    last = np.full(k, -1)
    np.maximum.at(last, code, np.arange(len(code)))
    gpus = {name: both[name].to_numpy()[first_rows(code)] for name in FIRST}
    gpus |= {name: both[name].to_numpy()[last] for name in LAST}
    for name in both.columns.difference(FIRST + LAST, sort=False):
        gpus[name] = np.bincount(code, weights=both[name].to_numpy(float), minlength=k)
    # a GPU in both slices: the step from its last sample and grid cell in `a` to its first
    # in `b`, which neither slice saw
    code_a, code_b = code[: len(a.gpus)], code[len(a.gpus) :]
    in_a = np.full(k, -1)
    in_a[code_a] = np.arange(len(code_a))
    rb = np.flatnonzero(in_a[code_b] >= 0)
    ra = in_a[code_b[rb]]
    cross = code_b[rb]
    ga, gb = a.gpus.iloc[ra], b.gpus.iloc[rb]
    step = gb["first_ts"].to_numpy() - ga["last_ts"].to_numpy()
    dx = gb["first_x"].to_numpy(float) - ga["last_x"].to_numpy(float)
    dm = gb["first_o"].to_numpy(float) - ga["last_o"].to_numpy(float)
    adjacent = (gb["first_bucket"].to_numpy() - ga["last_bucket"].to_numpy() == 1) & ~np.isnan(dm)
    owner, dx, dm = cross[adjacent], dx[adjacent], dm[adjacent]
    for name, v in zip(LOCKSTEP, _products(dx, dm), strict=True):
        gpus[name] += np.bincount(owner, weights=v, minlength=k)

    steps = pd.concat(
        [
            a.steps.assign(group=code_a[a.steps["group"].to_numpy()]),
            b.steps.assign(group=code_b[b.steps["group"].to_numpy()]),
            pd.DataFrame({"group": cross, "value": step, "count": 1}),
        ],
        ignore_index=True,
    )
    return Summary(
        sums,
        mean,
        m2,
        _add_counts(pd.concat([a.util_counts, b.util_counts], ignore_index=True)),
        pd.DataFrame(gpus),
        _add_counts(steps),
        pd.concat([a.series, b.series], ignore_index=True),
    )


def _add_counts(table: pd.DataFrame) -> pd.DataFrame:
    """Value counts with the counts of equal (group, value) pairs added, sorted."""
    out = table.groupby(["group", "value"], sort=True)["count"].sum()
    return out.reset_index()


def sum_count(
    codes: np.ndarray, values: pd.Series | np.ndarray, n: int
) -> tuple[np.ndarray, np.ndarray]:
    """Sum and count of the known values per code 0..n-1 (NaN skipped), in row order."""
    x = np.asarray(values, dtype=float)
    ok = ~np.isnan(x)
    if not ok.all():
        codes, x = codes[ok], x[ok]
    return np.bincount(codes, weights=x, minlength=n), np.bincount(codes, minlength=n).astype(float)


def value_counts(group: np.ndarray, values: np.ndarray) -> pd.DataFrame:
    """How often each value occurs per group: (group, value, count) sorted by group, value."""
    rank, distinct = pd.factorize(values, sort=True)
    width = max(len(distinct), 1)
    key = group.astype(np.int64) * width + rank
    span = (int(group.max()) + 1) * width if len(group) else 0
    if span <= 4 * len(key):  # few distinct values: count them densely
        count = np.bincount(key, minlength=span)
        key = np.flatnonzero(count)
        count = count[key]
    else:
        key, count = np.unique(key, return_counts=True)
    g, r = np.divmod(key, width)
    return pd.DataFrame({"group": g, "value": np.asarray(distinct)[r], "count": count})


def nth_value(counts: pd.DataFrame, position: np.ndarray) -> np.ndarray:
    """The value at 0-based `position` (one per group 0..len-1) in each group's sorted values,
    from value counts sorted by group and value (`value_counts`)."""
    group = counts["group"].to_numpy()
    total = np.cumsum(counts["count"].to_numpy())
    before = np.r_[0, total][np.searchsorted(group, np.arange(len(position)))]
    index = np.searchsorted(total, before + position, side="right")
    return counts["value"].to_numpy(float)[index.clip(0, len(total) - 1)]


class _GpuRows:
    """The samples grouped by GPU (codes 0..k-1 in order of first appearance), each GPU's
    rows in input order: one stable sort, shared by the per-GPU reductions."""

    def __init__(self, gpu: np.ndarray, ts: np.ndarray) -> None:
        small = gpu.astype(np.int16) if len(gpu) and gpu.max() < 1 << 15 else gpu  # radix sort
        self.order = np.argsort(small, kind="stable")
        self.gpu, self.ts = gpu[self.order], ts[self.order]
        self.starts = np.flatnonzero(np.r_[len(gpu) > 0, self.gpu[1:] != self.gpu[:-1]])
        self.first_row = self.order[self.starts]  # each GPU's first row in input order

    def reduce(self, ufunc: np.ufunc, values: np.ndarray) -> np.ndarray:
        return ufunc.reduceat(values[self.order], self.starts)

    def step_counts(self) -> pd.DataFrame:
        """How often each gap between consecutive samples of a GPU in time occurs (ns)."""
        gpu, ts = self.gpu, self.ts
        inner = gpu[1:] == gpu[:-1]
        if (np.diff(ts)[inner] < 0).any():  # some GPU's rows are not in time order
            order = np.lexsort((ts, gpu))
            gpu, ts = gpu[order], ts[order]
        return value_counts(gpu[1:][inner], np.diff(ts)[inner])


def _tensor_activity(samples: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per sample: achieved share of tensor peak (estimate, low, high) from tensor activity,
    else SM activity, else utilisation (ACTIVITY_FACTORS)."""
    out = [np.full(len(samples), np.nan) for _ in range(3)]
    for column, factors in ACTIVITY_FACTORS.items():
        metric = samples[column].to_numpy(float) / (100.0 if column == "gpu_util" else 1.0)
        for values, factor in zip(out, factors, strict=True):
            values[:] = np.where(np.isnan(values), np.clip(metric * factor, 0, 1), values)
    return out[0], out[1], out[2]


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
    total, count = sum_count(cell, util, len(key))
    c_util = total / count
    total, count = sum_count(slot, c_util, slot.max() + 1 if len(slot) else 0)
    return pd.DataFrame(
        {
            "session": c_session,
            "gpu": c_gpu,
            "bucket": c_bucket + base,
            "util": c_util,
            "slot": slot,
            "m": (total / count)[slot],
        }
    )


def _lockstep_sums(grid: pd.DataFrame, k: int) -> dict[str, np.ndarray]:
    """Per GPU 0..k-1: sums for the Pearson correlation of its utilisation changes (bucket to
    next bucket) with the changes of the mean of the session's *other* GPUs (LOCKSTEP), and
    its first and last grid cell (bucket, utilisation, others' mean) for a merge.
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
    owner = g[1:][step][ok]
    out = {
        name: np.bincount(owner, weights=v, minlength=k)
        for name, v in zip(LOCKSTEP, _products(dx[ok], dm[ok]), strict=True)
    }
    starts = np.flatnonzero(np.r_[True, g[1:] != g[:-1]]) if len(g) else np.zeros(0, int)
    ends = np.r_[starts[1:] - 1, len(g) - 1] if len(g) else starts
    for side, rows in (("first", starts), ("last", ends)):
        for name, values in (("bucket", b), ("x", x), ("o", others)):
            column = np.full(k, np.nan)
            column[g[rows]] = values[rows]
            out[f"{side}_{name}"] = column
    return out


def _products(dx: np.ndarray, dm: np.ndarray) -> tuple[np.ndarray, ...]:
    """The LOCKSTEP terms of steps (dx, dm)."""
    return np.ones(len(dx)), dx, dm, dx * dx, dm * dm, dx * dm
