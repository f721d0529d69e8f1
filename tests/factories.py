"""Small hand-built canonical tables for unit tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from detector.schema import ACCESS, TELEMETRY

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "data" / "samples"
# The bundled sample fleet as command-line inputs.
SAMPLE_INPUTS = [
    "--telemetry",
    str(SAMPLES / "telemetry.parquet"),
    "--access",
    str(SAMPLES / "access.jsonl.gz"),
    "--tenants",
    str(SAMPLES / "tenants.csv"),
]

T0 = pd.Timestamp("2026-10-05 00:00", tz="UTC")


def telemetry(
    tenant: str,
    hosts: int,
    gpus: int,
    minutes: int,
    *,
    start: pd.Timestamp = T0,
    util: float | np.ndarray = 95.0,
    tensor: float = 0.5,
    job: str | None = None,
    step_s: int = 60,
    model: str = "NVIDIA H100 80GB HBM3",
    seed: int = 0,
    noise: float = 2.0,
) -> pd.DataFrame:
    """A block of samples: every GPU of every host every `step_s` seconds."""
    rng = np.random.default_rng(seed)
    times = start + pd.to_timedelta(np.arange(minutes * 60 // step_s) * step_s, unit="s")
    shared = np.broadcast_to(np.asarray(util, float), (len(times),))
    frames = []
    for h in range(hosts):
        for g in range(gpus):
            u = np.clip(shared + rng.normal(0, noise, len(times)), 0, 100)
            frames.append(
                pd.DataFrame(
                    {
                        "timestamp": times,
                        "tenant_id": tenant,
                        "host": f"{tenant}-n{h}",
                        "gpu": str(g),
                        "gpu_util": u,
                        "sm_active": u / 100 * 0.9,
                        "tensor_active": u / 100 * tensor,
                        "dram_active": 0.3,
                        "fb_used_mib": 70000.0,
                        "fb_free_mib": 10000.0,
                        "power_w": 300 + 4 * u,
                        "nvlink_tx_bps": 1e9,
                        "nvlink_rx_bps": 1e9,
                        "pcie_tx_bps": 1e8,
                        "pcie_rx_bps": 1e8,
                        "model_name": model,
                        "job_id": job,
                    }
                )
            )
    return canonical(pd.concat(frames, ignore_index=True), TELEMETRY.names)


def access(
    tenant: str,
    times: list[pd.Timestamp],
    country: str,
    *,
    restricted: bool = False,
    hosting: bool = False,
    declared: str = "US",
    asn: int = 7922,
) -> pd.DataFrame:
    """Enriched access events of one tenant from one country."""
    n = len(times)
    frame = pd.DataFrame(
        {
            "timestamp": pd.DatetimeIndex(times),
            "tenant_id": tenant,
            "src_ip": "192.0.2.1",
            "event": "ssh",
            "country": country,
            "asn": pd.array([asn] * n, dtype="Int64"),
            "as_org": "",
            "restricted": restricted,
            "hosting": hosting,
            "declared_country": declared,
            "kyc_mismatch": country != declared,
            "ip_class": "public",
        }
    )
    return canonical(
        frame,
        ACCESS.names + ["ip_class", "restricted", "hosting", "declared_country", "kyc_mismatch"],
    )


def canonical(frame: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    for col in columns:
        if col not in frame:
            frame[col] = None
    return frame[columns]
