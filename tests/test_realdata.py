"""Real traces recorded by others (../shared/realdata): read through the shipped mappings,
cut into sessions with the default settings (short NVML runs of 26-55 s at 1 Hz make sessions
too: the minimum is counted in samples), features computed."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from detector.config import load_settings
from detector.enrich import enrich_access, open_database
from detector.features import session_features
from detector.ingest import read_table
from detector.ingest.options import SourceOptions
from detector.ingest.validate import empty_table
from detector.schema import ACCESS, TELEMETRY
from detector.sessions import cut_sessions

REAL = Path(__file__).resolve().parent.parent.parent / "shared" / "realdata"
NVML = REAL / "nvml-a100-workloads"
ALIBABA = REAL / "alibaba-genai-serving"
ALIBABA_FILES = [
    ALIBABA / "pod_gpu_duty_cycle_anon.csv.gz",
    ALIBABA / "pod_gpu_memory_used_bytes_anon.csv.gz",
]
pytestmark = pytest.mark.skipif(not REAL.is_dir(), reason=f"{REAL} not present")

# Workload features a trace without the metric leaves NaN (no profiling, NVLink, PCIe, ...).
NEEDS = {
    "sm_active_mean": "sm_active",
    "tensor_active_mean": "tensor_active",
    "tensor_share": "tensor_active",
    "dram_active_mean": "dram_active",
    "mem_fill": "fb_free_mib",
    "power_mean_w": "power_w",
    "nvlink_bps": "nvlink_tx_bps",
    "pcie_bps": "pcie_tx_bps",
}
ALWAYS = [
    "duration_s",
    "n_gpus",
    "gpu_hours",
    "util_mean",
    "util_std",
    "util_p95",
    "busy_frac",
    "idle_frac",
    "training_evidence",
]


def features(telemetry: pd.DataFrame, settings) -> pd.DataFrame:
    sessions, samples = cut_sessions(telemetry, settings.sessions)
    access, _ = enrich_access(empty_table(ACCESS), open_database(()), settings)
    return session_features(sessions, samples, access, settings)


def check_finite(table: pd.DataFrame, telemetry: pd.DataFrame) -> None:
    for name in ALWAYS:
        assert np.isfinite(table[name].to_numpy(float)).all(), name
    for name, column in NEEDS.items():
        values = table[name].to_numpy(float)
        if telemetry[column].notna().any() and name != "tensor_share":
            assert np.isfinite(values).all(), name
        elif telemetry[column].isna().all():
            assert np.isnan(values).all(), name


def test_nvml_a100_runs_every_row_read_and_one_session_per_run():
    loaded = read_table([NVML], TELEMETRY, fmt="nvml", options=SourceOptions(columns="nvml-spar"))
    raw = sum(len(pd.read_parquet(p, columns=["run_id"])) for p in NVML.glob("*.parquet"))
    assert loaded.counts.read == loaded.counts.accepted == raw
    table = features(loaded.table, load_settings())
    assert sorted(table["job_id"]) == sorted(loaded.table["job_id"].unique())
    check_finite(table, loaded.table)
    evidence = table.groupby("tenant_id")["training_evidence"]
    # Without tensor metrics, power, memory traffic and PCIe per unit of utilisation tell the
    # real training runs from the (busier) Blender renders.
    training = min(evidence.min()["gpt2_wikitext2_amp"], evidence.min()["bert_sst2_amp"])
    assert training > 0.5 > 0.1 > evidence.max()["blender_bmw"]
    assert evidence.min()["gpt2_wikitext2_amp"] > 0.8  # 34 samples: more confident than BERT's 13


def test_alibaba_serving_pods_every_row_read_or_quarantined():
    loaded = read_table(
        ALIBABA_FILES, TELEMETRY, fmt="nvml", options=SourceOptions(columns="alibaba-genai")
    )
    raw = sum(len(pd.read_csv(p, usecols=["value"])) for p in ALIBABA_FILES)
    # rows sharing (time, pod) across the two files are one row; memory samples without a
    # utilisation sample are quarantined
    assert loaded.counts.read == loaded.counts.accepted + loaded.counts.quarantined
    assert loaded.counts.accepted == len(pd.read_csv(ALIBABA_FILES[0], usecols=["value"]))
    assert raw > loaded.counts.read
    assert set(loaded.quarantine["reason"]) == {"gpu_util: missing required value"}
    table = features(loaded.table, load_settings())
    assert len(table) > 20
    check_finite(table, loaded.table)
    assert table["training_evidence"].max() < 0.3  # serving, not training
