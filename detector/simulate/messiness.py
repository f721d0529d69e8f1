"""What real exporters do to clean telemetry: lost samples, silent hosts, a GPU falling off a
job, hosts without profiling (DCP) metrics, and clocks a few seconds apart.

Every function takes the flat telemetry frame (epoch-second ``timestamp``, integer ``host``,
``gpu`` and ``job`` codes, metric columns) and returns a new frame plus a count of what it did.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

PROFILING = (
    "sm_active",
    "tensor_active",
    "dram_active",
    "nvlink_tx_bps",
    "nvlink_rx_bps",
    "pcie_tx_bps",
    "pcie_rx_bps",
)


def drop_random(
    df: pd.DataFrame, rng: np.random.Generator, share: float = 0.004
) -> tuple[pd.DataFrame, int]:
    """Lose single samples at random (a scrape that timed out)."""
    keep = rng.random(len(df)) >= share
    return df[keep], int((~keep).sum())


def exporter_gaps(
    df: pd.DataFrame, rng: np.random.Generator, per_host_day: float = 0.4
) -> tuple[pd.DataFrame, int]:
    """Silence whole hosts for 10-40 minutes (exporter restart, network partition)."""
    span = df.groupby("host")["timestamp"].agg(["min", "max"])
    n = rng.poisson(per_host_day * (span["max"] - span["min"]).to_numpy() / 86400)
    hosts = np.repeat(span.index.to_numpy(), n)
    starts = rng.uniform(np.repeat(span["min"].to_numpy(), n), np.repeat(span["max"].to_numpy(), n))
    ends = starts + rng.uniform(600, 2400, len(starts))
    drop = np.zeros(len(df), dtype=bool)
    host, ts = df["host"].to_numpy(), df["timestamp"].to_numpy()
    for h, s, e in zip(hosts, starts, ends, strict=True):
        drop |= (host == h) & (ts >= s) & (ts < e)
    return df[~drop], len(hosts)


def gpu_dropouts(
    df: pd.DataFrame, rng: np.random.Generator, share: float = 0.3
) -> tuple[pd.DataFrame, int]:
    """In some multi-GPU jobs one GPU stops reporting midway (Xid error, fell off the bus)."""
    gpus = df.groupby(["job", "host", "gpu"], sort=True)["timestamp"].agg(["min", "max"])
    per_job = gpus.groupby(level="job").size()
    jobs = per_job.index[(per_job > 1).to_numpy() & (rng.random(len(per_job)) < share)]
    drop = np.zeros(len(df), dtype=bool)
    cols = {c: df[c].to_numpy() for c in ("job", "host", "gpu", "timestamp")}
    for job in jobs:
        rows = gpus.loc[job]
        i = int(rng.integers(len(rows)))
        (host, gpu), pick = rows.index[i], rows.iloc[i]
        cut = pick["min"] + rng.uniform(0.3, 0.8) * (pick["max"] - pick["min"])
        drop |= (
            (cols["job"] == job)
            & (cols["host"] == host)
            & (cols["gpu"] == gpu)
            & (cols["timestamp"] >= cut)
        )
    return df[~drop], len(jobs)


def no_dcp_hosts(
    df: pd.DataFrame, rng: np.random.Generator, share: float = 0.15
) -> tuple[pd.DataFrame, int]:
    """Hosts whose older exporter lacks DCP: every profiling metric is missing (NaN)."""
    hosts = np.unique(df["host"].to_numpy())
    chosen = hosts[rng.random(len(hosts)) < share]
    if len(chosen) == 0 and len(hosts) > 1:
        chosen = hosts[[int(rng.integers(len(hosts)))]]
    mask = np.isin(df["host"].to_numpy(), chosen)
    out = df.copy()
    for col in PROFILING:
        out[col] = out[col].where(~mask)
    return out, len(chosen)


def clock_jitter(
    df: pd.DataFrame, rng: np.random.Generator, max_s: int = 4
) -> tuple[pd.DataFrame, int]:
    """Each GPU's sample lands a few seconds after the scrape: per-GPU skew plus wobble."""
    keys = df["host"].to_numpy().astype(np.int64) * 64 + df["gpu"].to_numpy()
    uniq, inv = np.unique(keys, return_inverse=True)
    skew = rng.integers(0, max_s, len(uniq))[inv]
    wobble = (rng.random(len(df)) < 0.2).astype(np.int64)
    out = df.copy()
    out["timestamp"] = out["timestamp"].to_numpy() + skew + wobble
    return out, int((skew + wobble > 0).sum())


def make_messy(df: pd.DataFrame, rng: np.random.Generator) -> tuple[pd.DataFrame, dict[str, int]]:
    """Apply every kind of mess in a fixed order; returns the frame and what was done."""
    counts: dict[str, int] = {}
    for name, step in (
        ("dropped_samples", drop_random),
        ("exporter_gaps", exporter_gaps),
        ("gpu_dropouts", gpu_dropouts),
        ("hosts_without_dcp", no_dcp_hosts),
        ("jittered_rows", clock_jitter),
    ):
        df, counts[name] = step(df, rng)
    return df, counts
