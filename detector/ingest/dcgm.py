"""dcgm-exporter series -> canonical telemetry rows: the field map, labels, counters to rates.

Shared by the Prometheus text reader and the Prometheus HTTP API reader. Input is a long table
of samples (`name`, `ts` in epoch seconds, `value`, one column per label); output is one row per
GPU and timestamp with the canonical columns.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from .options import SourceOptions


@dataclass(frozen=True)
class Field:
    """One DCGM field: its canonical column, how to scale its value, and whether it counts."""

    column: str
    scale: float = 1.0
    counter: bool = False  # cumulative: turned into a per-second rate, resets handled
    fallback: bool = False  # used only where the primary field of `column` has no value


# DCGM field (dcgm-exporter metric name) -> canonical column, declared once.
FIELDS: dict[str, Field] = {
    "DCGM_FI_DEV_GPU_UTIL": Field("gpu_util"),  # %
    "DCGM_FI_PROF_SM_ACTIVE": Field("sm_active"),  # ratio
    "DCGM_FI_PROF_PIPE_TENSOR_ACTIVE": Field("tensor_active"),  # ratio
    "DCGM_FI_PROF_PIPE_FP64_ACTIVE": Field("fp64_active"),  # ratio (dcp-metrics, not default)
    "DCGM_FI_PROF_DRAM_ACTIVE": Field("dram_active"),  # ratio
    "DCGM_FI_DEV_FB_USED": Field("fb_used_mib"),  # MiB
    "DCGM_FI_DEV_FB_FREE": Field("fb_free_mib"),  # MiB
    "DCGM_FI_DEV_POWER_USAGE": Field("power_w"),  # W
    "DCGM_FI_PROF_NVLINK_TX_BYTES": Field("nvlink_tx_bps"),  # B/s (a rate already)
    "DCGM_FI_PROF_NVLINK_RX_BYTES": Field("nvlink_rx_bps"),
    "DCGM_FI_PROF_PCIE_TX_BYTES": Field("pcie_tx_bps"),
    "DCGM_FI_PROF_PCIE_RX_BYTES": Field("pcie_rx_bps"),
    # Counters: mJ since driver load -> W; NVLink total counter (KiB, all lanes, both
    # directions) -> B/s, half to tx and half to rx so that tx + rx is the total.
    "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION": Field("power_w", 1e-3, counter=True, fallback=True),
    # FP64 on the tensor cores (DMMA, A100 and later), where the FP64 pipe is not exported
    "DCGM_FI_PROF_PIPE_TENSOR_DFMA_ACTIVE": Field("fp64_active", fallback=True),
    "DCGM_FI_DEV_NVLINK_BANDWIDTH_TOTAL": Field(
        "nvlink_tx_bps", 512.0, counter=True, fallback=True
    ),
}
_SPLIT = {"DCGM_FI_DEV_NVLINK_BANDWIDTH_TOTAL": "nvlink_rx_bps"}  # the other half

# Labels dcgm-exporter writes (with Kubernetes pod mapping), in order of preference.
HOST_LABELS = ("Hostname", "hostname", "instance")
GPU_LABELS = ("gpu", "UUID")
LABELS = (*HOST_LABELS, *GPU_LABELS, "modelName", "namespace", "pod", "container")

_MAX_MS = 9.2e15  # milliseconds within the datetime64[ns] range


def labels_needed(options: SourceOptions) -> list[str]:
    return list(dict.fromkeys([*LABELS, options.tenant_label]))


def rates(samples: pd.DataFrame, series: np.ndarray) -> pd.Series:
    """Per-second rate of counter samples within each series (`series`: an integer key).

    A drop of the counter is a reset (exporter or driver restart): the increase since the
    reset is the new value itself, as Prometheus' rate() does. The first sample of a series
    has no rate (missing).
    """
    order = np.lexsort((samples["ts"].to_numpy(), series))
    ts = samples["ts"].to_numpy(float)[order]
    value = samples["value"].to_numpy(float)[order]
    key = series[order]
    same = np.zeros(len(key), dtype=bool)
    same[1:] = key[1:] == key[:-1]
    dv = np.empty(len(key))
    dt = np.empty(len(key))
    dv[1:], dt[1:] = np.diff(value), np.diff(ts)
    dv = np.where(dv < 0, value, dv)  # reset: increase since restart
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):  # inf: quarantined
        rate = np.where(same & (dt > 0), dv / np.where(dt > 0, dt, 1), np.nan)
    out = np.empty(len(key))
    out[order] = rate
    return pd.Series(out, index=samples.index)


def assemble(samples: pd.DataFrame, options: SourceOptions) -> tuple[pd.DataFrame, np.ndarray]:
    """Canonical telemetry rows from DCGM samples (maybe none), and the first source row of each.

    `samples` columns: `row` (line or position), `name`, `ts` (epoch seconds), `value`, and the
    labels (missing label = NaN). Samples of metrics not in FIELDS must already be dropped.
    """
    if samples.empty:
        return pd.DataFrame(), np.zeros(0, dtype=np.int64)
    labels = [c for c in labels_needed(options) if c in samples.columns]
    host = _first_of(samples, HOST_LABELS)
    gpu = _first_of(samples, GPU_LABELS)
    identity = [samples[c].astype("str").fillna("\0") for c in labels]
    gpu_key = (
        pd.factorize(pd.MultiIndex.from_arrays(identity))[0]
        if identity
        else np.zeros(len(samples), dtype=np.int64)
    )
    name = samples["name"]
    value = samples["value"].astype(float) * name.map({k: f.scale for k, f in FIELDS.items()})
    counter = name.map({k: f.counter for k, f in FIELDS.items()}).astype(bool).to_numpy()
    if counter.any():
        series = pd.factorize(
            pd.MultiIndex.from_arrays([gpu_key[counter], samples["name"].to_numpy()[counter]])
        )[0]
        value[counter] = rates(samples[counter].assign(value=value[counter]), series)
    column = name.map(
        {k: f.column + ("\0fallback" if f.fallback else "") for k, f in FIELDS.items()}
    )
    long = pd.DataFrame(
        {
            "gpu": gpu_key,
            "ts": samples["ts"].to_numpy(float),
            "column": column.to_numpy(),
            "value": value.to_numpy(float),
            "row": samples["row"].to_numpy(),
        }
    )
    for name, other in _SPLIT.items():
        split = (samples["name"] == name).to_numpy()
        long.loc[split, "value"] /= 2
        long = pd.concat([long, long[split].assign(column=other + "\0fallback")], ignore_index=True)
    record = pd.factorize(pd.MultiIndex.from_arrays([long["gpu"], long["ts"]]))[0]
    long["record"] = record
    wide = long.pivot_table(
        index="record", columns="column", values="value", aggfunc="first", dropna=False
    )
    first = long.groupby("record")["row"].min()
    for col in [c for c in wide.columns if c.endswith("\0fallback")]:
        primary = col.removesuffix("\0fallback")
        wide[primary] = wide[primary].fillna(wide[col]) if primary in wide else wide[col]
        wide = wide.drop(columns=col)
    head = long.groupby("record")[["gpu", "ts"]].first()
    keys = (
        samples.assign(_gpu=gpu_key, _host=host, _gpu_id=gpu)
        .drop_duplicates("_gpu")
        .set_index("_gpu")
    )
    at = keys.loc[head["gpu"].to_numpy()]
    tenant = options.tenant(
        [("pod", _col(at, "pod")), ("namespace", _col(at, "namespace")), ("host", at["_host"])],
        _col(at, options.tenant_label),
    )
    frame = pd.DataFrame(
        {
            "timestamp": pd.to_datetime(_millis(head["ts"].to_numpy()), unit="ms", utc=True),
            "tenant_id": tenant.to_numpy(),
            "host": at["_host"].to_numpy(),
            "gpu": at["_gpu_id"].to_numpy(),
            "model_name": _col(at, "modelName").to_numpy(),
            "job_id": _col(at, "pod").to_numpy(),
        }
    )
    for col in wide.columns:
        frame[col] = wide[col].to_numpy()
    return frame, first.to_numpy()


def _first_of(samples: pd.DataFrame, names: tuple[str, ...]) -> pd.Series:
    out = pd.Series(np.nan, index=samples.index, dtype="str")
    for name in names:
        if name in samples:
            out = out.fillna(samples[name])
    return out


def _col(frame: pd.DataFrame, name: str) -> pd.Series:
    return frame[name] if name in frame else pd.Series(np.nan, index=frame.index, dtype="str")


def _millis(seconds: np.ndarray) -> pd.arrays.IntegerArray:
    """Whole milliseconds; missing where the time is not finite or beyond datetime64[ns]."""
    with np.errstate(over="ignore", invalid="ignore"):
        ms = np.round(seconds * 1e3)
    return pd.array(np.where(np.abs(ms) < _MAX_MS, ms, np.nan)).astype("Int64")
