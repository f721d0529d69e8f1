"""An independent labelled GPU-cloud fleet, written without looking at gpuwatch's simulator.

``python bench/indep/generate.py --out DIR --tenants 70 --days 6 --seed 9103`` writes
``telemetry.parquet`` (one row per GPU per minute), ``access.parquet``, ``tenants.csv`` and
``truth.csv`` (one row per job: its tenant, window, workload, origin, family and label). The
families, their parameters and the positive label are described in bench/indep/README.md.
Everything is vectorised per job with numpy; only jobs and tenants are looped over.
"""

from __future__ import annotations

import argparse
import ipaddress
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

STEP_S = 60
EPOCH = pd.Timestamp("2026-03-02T00:00:00Z")  # a Monday

# GPU models: (DCGM modelName, framebuffer MiB, board power W, idle power W, NVLink).
GPUS = {
    "h100": ("NVIDIA H100 80GB HBM3", 81559.0, 700.0, 68.0, True),
    "a100": ("NVIDIA A100-SXM4-80GB", 81920.0, 400.0, 52.0, True),
    "a100p": ("NVIDIA A100-PCIE-40GB", 40960.0, 250.0, 34.0, False),
    "l40s": ("NVIDIA L40S", 46068.0, 350.0, 33.0, False),
    "a10": ("NVIDIA A10", 23028.0, 150.0, 18.0, False),
    "rtx4090": ("NVIDIA GeForce RTX 4090", 24564.0, 450.0, 24.0, False),
    "l4": ("NVIDIA L4", 23034.0, 72.0, 15.0, False),
}

# Address pools checked against GeoLite2 (June 2024) with geoip2fast: name -> (CIDRs, country).
POOLS: dict[str, tuple[tuple[str, ...], str]] = {
    "us_res": (("73.15.0.0/17", "98.207.0.0/17", "24.5.0.0/19", "67.176.0.0/12"), "US"),
    "us_corp": (("12.40.0.0/16", "199.104.0.0/13"), "US"),
    "gb_res": (("86.128.0.0/14", "2.24.0.0/13"), "GB"),
    "de_res": (("91.64.0.0/14", "84.128.0.0/12"), "DE"),
    "fr_res": (("90.0.0.0/13", "86.192.0.0/10"), "FR"),
    "jp_res": (("126.0.0.0/9", "153.128.0.0/13"), "JP"),
    "kr_res": (("121.128.0.0/11", "175.192.0.0/12"), "KR"),
    "ca_res": (("99.224.0.0/11", "174.88.0.0/13"), "CA"),
    "au_res": (("1.128.0.0/11", "120.144.0.0/12"), "AU"),
    "in_res": (("49.32.0.0/12", "117.192.0.0/13"), "IN"),
    "sg_res": (("116.86.0.0/15", "118.200.0.0/15"), "SG"),
    "my_res": (("175.136.0.0/13", "60.48.0.0/14"), "MY"),
    "ae_res": (("94.200.0.0/13", "86.96.0.0/14"), "AE"),
    "tw_res": (("1.160.0.0/13",), "TW"),
    "cn_res": (("115.192.0.0/11", "183.128.0.0/11", "222.64.0.0/11", "36.96.0.0/11"), "CN"),
    "cn_corp": (("123.112.0.0/12", "114.224.0.0/11", "58.32.0.0/12"), "CN"),
    "hk_res": (("112.118.0.0/15", "223.16.0.0/14"), "HK"),
    "ru_res": (("95.24.0.0/13", "178.64.0.0/13", "91.76.0.0/14"), "RU"),
    "ir_res": (("5.112.0.0/14", "2.176.0.0/12"), "IR"),
    # hosting / VPN exits
    "vpn_nl": (("188.166.0.0/18", "185.156.172.0/24", "37.48.64.0/22"), "NL"),
    "vpn_gb": (("178.62.0.0/17",), "GB"),
    "vpn_sg": (("159.65.0.0/20", "139.180.128.0/19", "139.162.0.0/18"), "SG"),
    "vpn_us": (("45.76.0.0/20", "23.81.0.0/19", "5.161.0.0/19"), "US"),
    "vpn_de": (("116.202.0.0/15",), "DE"),
    "vpn_fi": (("95.216.0.0/16",), "FI"),
    "vpn_fr": (("51.38.0.0/22",), "FR"),
    "vpn_jp": (("89.187.160.0/23",), "JP"),
    # cloud egress (NAT gateways of big clouds)
    "cloud_sg": (("13.228.0.0/15", "52.230.0.0/17"), "SG"),
    "cloud_jp": (("52.192.0.0/13", "34.84.0.0/16"), "JP"),
    "cloud_kr": (("15.164.0.0/15",), "KR"),
    "cloud_us": (("35.185.0.0/17", "52.95.0.0/20"), "US"),
}
VPN_POOLS = ("vpn_nl", "vpn_gb", "vpn_sg", "vpn_us", "vpn_de", "vpn_fi", "vpn_fr", "vpn_jp")

# Operator homes: residential pool, UTC offset (hours), plausible declared countries.
HOMES = {
    "US": ("us_res", -6.0), "GB": ("gb_res", 0.0), "DE": ("de_res", 1.0), "FR": ("fr_res", 1.0),
    "JP": ("jp_res", 9.0), "KR": ("kr_res", 9.0), "CA": ("ca_res", -5.0), "AU": ("au_res", 10.0),
    "IN": ("in_res", 5.5), "SG": ("sg_res", 8.0), "MY": ("my_res", 8.0), "AE": ("ae_res", 4.0),
    "TW": ("tw_res", 8.0), "CN": ("cn_res", 8.0), "HK": ("hk_res", 8.0), "RU": ("ru_res", 3.0),
    "IR": ("ir_res", 3.5),
}  # fmt: skip
ALLIED = ("GB", "DE", "FR", "JP", "KR", "CA", "AU", "TW")
RESTRICTED = ("CN", "CN", "CN", "CN", "HK", "RU", "IR")
LIE_COUNTRIES = ("US", "SG", "MY", "GB", "DE", "AE", "CA")
RESELLERS = {
    "SG": "Lion City GPU Pte Ltd",
    "MY": "KL Compute Sdn Bhd",
    "AE": "Gulf Accelerate FZE",
    "HK": "Harbour Cloud Ltd",
}

# Families: name -> (workload, origin, label). Label 1 = restricted-origin large training.
POSITIVE = {
    "pos_direct": ("pretrain", "restricted_direct"),
    "pos_vpn": ("pretrain", "restricted_vpn"),
    "pos_reseller": ("pretrain", "restricted_reseller"),
    "pos_throttled": ("throttled", "restricted_mixed"),
    "pos_split": ("split", "restricted_vpn"),
    "pos_resproxy": ("pretrain", "restricted_resproxy"),
}
NEGATIVE = {
    "pretrain_domestic": ("pretrain", "domestic"),
    "pretrain_allied": ("pretrain", "allied"),
    "throttled_allied": ("throttled", "allied"),
    "pretrain_apac_egress": ("pretrain", "apac_egress"),
    "finetune_multinational": ("finetune", "multinational"),
    "finetune_traveller": ("finetune", "traveller"),
    "finetune_us_evening": ("finetune", "us_evening"),
    "finetune_restricted": ("finetune", "restricted_mixed"),
    "inference_restricted": ("inference", "restricted_mixed"),
    "render_restricted": ("render", "restricted_direct"),
    "mining_restricted": ("mining", "restricted_vpn"),
    "hpc_restricted": ("hpc", "restricted_direct"),
    "notebook_restricted": ("notebook", "restricted_direct"),
    "batch_restricted_reseller": ("batch", "restricted_reseller"),
    "hpc_domestic": ("hpc", "domestic"),
    "inference_domestic": ("inference", "us_evening"),
    "inference_allied": ("inference", "apac_egress"),
    "batch_domestic": ("batch", "domestic"),
    "notebook_domestic": ("notebook", "domestic"),
    "render_allied": ("render", "allied"),
    "mining_domestic": ("mining", "domestic"),
    "finetune_reseller": ("finetune", "benign_reseller"),
    "finetune_domestic": ("finetune", "domestic"),
}
# Tenants per family in a 70-tenant fleet (split counts its accounts); scaled for other sizes.
MIX = {
    "pos_direct": 2, "pos_vpn": 3, "pos_reseller": 2, "pos_throttled": 3, "pos_split": 4,
    "pos_resproxy": 2,
    "pretrain_domestic": 3, "pretrain_allied": 3, "throttled_allied": 1,
    "pretrain_apac_egress": 2, "finetune_multinational": 3, "finetune_traveller": 3,
    "finetune_us_evening": 3, "finetune_restricted": 3, "inference_restricted": 3,
    "render_restricted": 2, "mining_restricted": 2, "hpc_restricted": 2,
    "notebook_restricted": 2, "batch_restricted_reseller": 2, "hpc_domestic": 2,
    "inference_domestic": 3, "inference_allied": 2, "batch_domestic": 3,
    "notebook_domestic": 3, "render_allied": 2, "mining_domestic": 2,
    "finetune_reseller": 2, "finetune_domestic": 3,
}  # fmt: skip


@dataclass
class Tenant:
    """One account: who runs it, from where, and its registry entry."""

    tenant_id: str
    family: str
    workload: str
    origin: str
    label: int
    home: str
    declared: str
    reseller: str = ""
    billing_id: str = ""
    org: str = ""
    entity: str = ""
    shared_exits: list[str] = field(default_factory=list)
    shared_principals: list[str] = field(default_factory=list)
    profiling: bool = True  # DCGM profiling fields (sm/tensor/dram) collected
    nvlink_metrics: bool = True  # NVLink counters collected


@dataclass
class Job:
    """One job's telemetry block: GPU-by-time arrays for one tenant."""

    tenant: Tenant
    job_id: str | None
    start: int  # minute index
    metrics: dict[str, np.ndarray]  # each (T, G)
    hosts: list[str]
    per_host: int
    model: str
    n_gpus_entity: int


# --- time-series building blocks -------------------------------------------------------------


def _dips(rng: np.random.Generator, t: int, every: float, length: tuple[int, int]) -> np.ndarray:
    """Boolean mask of periodic dips (checkpoints, evaluation) with jittered spacing."""
    mask = np.zeros(t, dtype=bool)
    pos = int(rng.uniform(0.3, 1.0) * every)
    while pos < t:
        mask[pos : pos + int(rng.integers(length[0], length[1] + 1))] = True
        pos += max(2, int(every * rng.uniform(0.9, 1.1)))
    return mask


def _outages(rng: np.random.Generator, t: int, per_day: float, gap: tuple[int, int]) -> np.ndarray:
    """Boolean mask of crashes and restarts: whole-job stops of a random length."""
    mask = np.zeros(t, dtype=bool)
    for _ in range(rng.poisson(per_day * t / 1440)):
        at = int(rng.integers(30, max(31, t - 30)))
        mask[at : at + int(rng.integers(gap[0], gap[1] + 1))] = True
    return mask


def _finish(
    rng: np.random.Generator,
    gpu: str,
    util: np.ndarray,
    sm_per_util: np.ndarray | float,
    tensor_per_util: np.ndarray | float,
    dram: np.ndarray,
    fb_frac: np.ndarray,
    power_scale: np.ndarray | float,
    nvlink: np.ndarray | float,
    pcie: np.ndarray | float,
) -> dict[str, np.ndarray]:
    """Turn utilisation and per-kind levels into the DCGM fields, with sensor noise."""
    name, fb_total, tdp, idle, has_nvlink = GPUS[gpu]
    shape = util.shape
    util = np.clip(util, 0, 100)
    u = util / 100.0
    sm = np.clip(u * sm_per_util + rng.normal(0, 0.01, shape), 0, 1)
    tensor = np.clip(u * tensor_per_util + rng.normal(0, 0.006, shape), 0, 1)
    dram = np.clip(dram * np.minimum(1.0, u * 1.2) + rng.normal(0, 0.01, shape), 0, 1)
    load = np.clip(0.45 * sm + 0.35 * np.minimum(1, tensor * 1.8) + 0.2 * dram, 0, 1)
    power = idle + (tdp - idle) * load * power_scale + rng.normal(0, 0.012 * tdp, shape)
    fb_used = np.clip(fb_frac * fb_total + rng.normal(0, 40, shape), 300, fb_total - 256)
    nv = np.abs(nvlink * u * rng.lognormal(0, 0.08, shape)) if has_nvlink else np.zeros(shape)
    pc = np.abs(pcie * rng.lognormal(0, 0.3, shape))
    return {
        "gpu_util": np.round(util),
        "sm_active": sm,
        "tensor_active": tensor,
        "dram_active": dram,
        "fb_used_mib": np.round(fb_used),
        "fb_free_mib": np.round(fb_total - fb_used),
        "power_w": np.clip(power, idle * 0.8, tdp * 1.02),
        "nvlink_tx_bps": nv,
        "nvlink_rx_bps": nv * rng.uniform(0.95, 1.05, shape),
        "pcie_tx_bps": pc * rng.uniform(0.2, 0.6),
        "pcie_rx_bps": pc,
    }


# --- workloads: each returns (metrics, gpu kind) for a (T, G) block --------------------------


def training_block(
    rng: np.random.Generator, t: int, g: int, gpu: str, duty: float, cycle: bool
) -> dict[str, np.ndarray]:
    """Synchronous data/tensor/pipeline-parallel training: all GPUs move together.

    Checkpoints every 20-150 min stall every GPU for 1-7 min; evaluation passes run at lower
    load; crashes stop the job for 10-80 min and the model is reloaded. ``duty`` < 1 throttles:
    either a sleep inserted in every step (``cycle`` False: lower mean utilisation every minute)
    or on/off phases of a few minutes (``cycle`` True), both applied to every GPU at once.
    """
    level = rng.uniform(86, 99.5)
    shared = rng.normal(0, rng.uniform(0.5, 2.5), t)
    per_gpu = rng.normal(0, rng.uniform(0.3, 1.5), (t, g))
    util = level + shared[:, None] + per_gpu
    ckpt = _dips(rng, t, rng.uniform(20, 150), (1, int(rng.integers(2, 8))))
    evals = _dips(rng, t, rng.uniform(120, 600), (3, 15)) if rng.random() < 0.6 else ckpt & False
    crash = _outages(rng, t, rng.uniform(0.0, 1.2), (10, 80))
    util[ckpt] = rng.uniform(0, 35, (int(ckpt.sum()), 1)) + rng.normal(0, 2, (int(ckpt.sum()), g))
    util[evals & ~ckpt] *= rng.uniform(0.55, 0.8)
    if duty < 1.0:
        if cycle:
            on, off = int(rng.integers(3, 9)), 0
            off = max(1, int(round(on * (1 - duty) / duty)))
            phase = (np.arange(t) % (on + off)) < on
            util[~phase] = rng.uniform(0, 12, (int((~phase).sum()), 1))
        else:
            util *= duty + rng.normal(0, 0.03, (t, 1))
    warm = int(rng.integers(3, 25))
    util[:warm] = rng.uniform(0, 40, (warm, g))
    util[crash] = 0.0
    fb = np.full((t, g), rng.uniform(0.72, 0.97)) + rng.uniform(-0.04, 0.02, g)
    fb[:warm] *= np.linspace(0.05, 1, warm)[:, None]
    fb[crash] = 0.004
    return _finish(
        rng,
        gpu,
        util,
        sm_per_util=rng.uniform(0.72, 0.96),
        tensor_per_util=rng.uniform(0.22, 0.68),
        dram=np.full((t, g), rng.uniform(0.18, 0.55)),
        fb_frac=fb,
        power_scale=rng.uniform(0.78, 1.0),
        nvlink=rng.uniform(1.5e10, 1.6e11),
        pcie=rng.uniform(2e8, 2.5e9),
    )


def finetune_block(rng: np.random.Generator, t: int, g: int, gpu: str) -> dict[str, np.ndarray]:
    """Fine-tuning (LoRA or full): DDP in step when g > 1, noisier steps, epoch-end saves."""
    level = rng.uniform(62, 97)
    shared = rng.normal(0, rng.uniform(2, 8), t)
    util = level + shared[:, None] + rng.normal(0, rng.uniform(1, 5), (t, g))
    saves = _dips(rng, t, rng.uniform(25, 140), (1, 4))
    util[saves] = rng.uniform(0, 30)
    warm = min(t, int(rng.integers(2, 12)))
    util[:warm] = rng.uniform(0, 30)
    return _finish(
        rng,
        gpu,
        util,
        sm_per_util=rng.uniform(0.65, 0.93),
        tensor_per_util=rng.uniform(0.12, 0.55),
        dram=np.full((t, g), rng.uniform(0.15, 0.6)),
        fb_frac=np.full((t, g), rng.uniform(0.35, 0.95)),
        power_scale=rng.uniform(0.7, 1.0),
        nvlink=rng.uniform(2e9, 5e10) if g > 1 else 0.0,
        pcie=rng.uniform(1e8, 1.5e9),
    )


def inference_block(
    rng: np.random.Generator, t: int, g: int, gpu: str, start_min: int, tz: float
) -> dict[str, np.ndarray]:
    """Online serving: diurnal demand in the customers' time zone, bursty per replica;
    tensor-parallel replicas (2-8 GPUs) move together, memory pre-allocated by the server."""
    tp = int(min(g, rng.choice([1, 2, 4, 8])))
    replicas = max(1, g // tp)
    hours = ((start_min + np.arange(t)) / 60.0 + tz) % 24
    diurnal = 0.5 + 0.5 * np.sin((hours - 9) / 24 * 2 * np.pi)
    base, amp = rng.uniform(0.04, 0.25), rng.uniform(0.25, 0.75)
    demand = base + amp * diurnal**1.5
    rep = demand[:, None] * rng.lognormal(0, 0.35, (t, replicas)) * 100
    util = np.repeat(rep, tp, axis=1)[:, :g] + rng.normal(0, 2, (t, g))
    util = np.where(rng.random((t, g)) < 0.02, util * 1.6, util)
    return _finish(
        rng,
        gpu,
        util,
        sm_per_util=rng.uniform(0.45, 0.85),
        tensor_per_util=rng.uniform(0.08, 0.45),
        dram=np.full((t, g), rng.uniform(0.25, 0.7)),
        fb_frac=np.full((t, g), rng.uniform(0.82, 0.95)),
        power_scale=rng.uniform(0.6, 0.95),
        nvlink=rng.uniform(5e9, 6e10) if tp > 1 else 0.0,
        pcie=rng.uniform(5e7, 6e8),
    )


def batch_block(rng: np.random.Generator, t: int, g: int, gpu: str) -> dict[str, np.ndarray]:
    """Offline batch inference/embedding: each GPU works its own shards, short gaps between."""
    util = rng.uniform(80, 99) + rng.normal(0, rng.uniform(2, 6), (t, g))
    gaps = rng.random((t, g)) < rng.uniform(0.01, 0.06)
    util[gaps] = rng.uniform(0, 20, int(gaps.sum()))
    offsets = rng.integers(0, 25, g)
    for j, off in enumerate(offsets):
        util[:off, j] = 0.0
    return _finish(
        rng,
        gpu,
        util,
        sm_per_util=rng.uniform(0.6, 0.9),
        tensor_per_util=rng.uniform(0.2, 0.6),
        dram=np.full((t, g), rng.uniform(0.2, 0.6)),
        fb_frac=np.full((t, g), rng.uniform(0.35, 0.85)) + rng.uniform(-0.05, 0.05, g),
        power_scale=rng.uniform(0.7, 0.95),
        nvlink=0.0,
        pcie=rng.uniform(5e8, 4e9),
    )


def notebook_block(
    rng: np.random.Generator, t: int, g: int, gpu: str, start_min: int, tz: float
) -> dict[str, np.ndarray]:
    """Interactive notebooks: idle most of the time, bursts in the user's working hours."""
    hours = ((start_min + np.arange(t)) / 60.0 + tz) % 24
    working = (hours > 9) & (hours < 19)
    burst = (rng.random((t, g)) < 0.08) & working[:, None]
    burst = burst | np.roll(burst, 1, 0) | np.roll(burst, 2, 0) | np.roll(burst, 3, 0)
    util = np.where(burst, rng.uniform(20, 100, (t, g)), rng.uniform(0, 2, (t, g)))
    return _finish(
        rng,
        gpu,
        util,
        sm_per_util=rng.uniform(0.5, 0.9),
        tensor_per_util=rng.uniform(0.0, 0.5),
        dram=np.full((t, g), rng.uniform(0.1, 0.5)),
        fb_frac=np.full((t, g), rng.uniform(0.05, 0.7)),
        power_scale=rng.uniform(0.6, 0.95),
        nvlink=0.0,
        pcie=rng.uniform(1e6, 2e8),
    )


def render_block(rng: np.random.Generator, t: int, g: int, gpu: str) -> dict[str, np.ndarray]:
    """Path-traced rendering: every GPU renders its own frames; scene loads between frames."""
    frame = rng.uniform(2, 25)
    util = rng.uniform(94, 100) + rng.normal(0, 1.5, (t, g))
    load = (rng.random((t, g)) < 1.0 / frame) | (rng.random((t, g)) < 0.005)
    util[load] = rng.uniform(5, 45, int(load.sum()))
    fb = rng.uniform(0.2, 0.85) + 0.1 * np.sin(np.arange(t) / rng.uniform(30, 300))[:, None]
    return _finish(
        rng,
        gpu,
        util,
        sm_per_util=rng.uniform(0.82, 0.98),
        tensor_per_util=rng.uniform(0.0, 0.04),
        dram=np.full((t, g), rng.uniform(0.15, 0.45)),
        fb_frac=np.clip(fb + np.zeros((t, g)), 0.05, 0.95),
        power_scale=rng.uniform(0.85, 1.0),
        nvlink=0.0,
        pcie=rng.uniform(2e8, 3e9) * (1 + 5 * load),
    )


def mining_block(rng: np.random.Generator, t: int, g: int, gpu: str) -> dict[str, np.ndarray]:
    """Proof-of-work mining: flat 100 % on every GPU, undervolted, little memory, no tensor."""
    util = np.full((t, g), 100.0) - np.abs(rng.normal(0, 0.4, (t, g)))
    down = _outages(rng, t, 0.3, (2, 15))
    util[down] = 0.0
    return _finish(
        rng,
        gpu,
        util,
        sm_per_util=rng.uniform(0.93, 1.0),
        tensor_per_util=0.0,
        dram=np.full((t, g), rng.choice([rng.uniform(0.05, 0.2), rng.uniform(0.7, 0.97)])),
        fb_frac=np.full((t, g), rng.uniform(0.06, 0.3)),
        power_scale=rng.uniform(0.5, 0.72),
        nvlink=0.0,
        pcie=rng.uniform(1e4, 1e6),
    )


def hpc_block(rng: np.random.Generator, t: int, g: int, gpu: str) -> dict[str, np.ndarray]:
    """MPI simulation (CFD, MD, climate): GPUs in lock-step, restart files at intervals,
    FP64 and memory-bound kernels (little tensor work, DRAM busy)."""
    level = rng.uniform(70, 97)
    util = level + rng.normal(0, 3, t)[:, None] + rng.normal(0, 1.5, (t, g))
    io = _dips(rng, t, rng.uniform(30, 240), (2, 10))
    util[io] = rng.uniform(0, 25)
    return _finish(
        rng,
        gpu,
        util,
        sm_per_util=rng.uniform(0.6, 0.92),
        tensor_per_util=rng.choice([rng.uniform(0.0, 0.05), rng.uniform(0.1, 0.3)]),
        dram=np.full((t, g), rng.uniform(0.45, 0.85)),
        fb_frac=np.full((t, g), rng.uniform(0.3, 0.85)),
        power_scale=rng.uniform(0.65, 0.92),
        nvlink=rng.uniform(5e9, 8e10),
        pcie=rng.uniform(1e8, 1e9),
    )


# --- fleet ----------------------------------------------------------------------------------


def _hex(rng: np.random.Generator, n: int) -> str:
    return "".join(rng.choice(list("0123456789abcdef"), n))


def _hosts(rng: np.random.Generator, g: int, per_host: int) -> list[str]:
    """Host names for g GPUs, per_host GPUs to a host."""
    rack = _hex(rng, 4)
    return [f"gpu-{rack}-{i:03d}" for i in range((g + per_host - 1) // per_host)]


def _mix(n_tenants: int, rng: np.random.Generator) -> list[str]:
    """The family of every tenant: MIX scaled to n_tenants, the remainder drawn by weight.

    The split job takes 3-4 accounts when the fleet is large enough for it (>= 30 tenants)."""
    n_split = int(rng.integers(3, 5)) if n_tenants >= 30 else 0
    rest = {f: k for f, k in MIX.items() if f != "pos_split"}
    scale = (n_tenants - n_split) / sum(rest.values())
    counts = {f: int(k * scale) for f, k in rest.items()}
    left = n_tenants - n_split - sum(counts.values())
    frac = np.array([k * scale - counts[f] for f, k in rest.items()]) + 1e-9
    for f in rng.choice(list(rest), left, replace=False, p=frac / frac.sum()):
        counts[str(f)] += 1
    out = [f for f, k in counts.items() for _ in range(k)] + ["pos_split"] * n_split
    if not any(f in POSITIVE for f in out):  # a small fleet still holds one positive tenant
        out[int(rng.integers(len(out)))] = str(
            rng.choice(["pos_direct", "pos_vpn", "pos_throttled"])
        )
    return [str(f) for f in rng.permutation(out)]


def _make_tenants(rng: np.random.Generator, families: list[str]) -> list[Tenant]:
    tenants: list[Tenant] = []
    split_entity = ""
    split_exits: list[str] = []
    split_principals: list[str] = []
    split_billing = ""
    for fam in families:
        workload, origin = POSITIVE.get(fam) or NEGATIVE[fam]
        label = int(fam in POSITIVE)
        home = _home(rng, origin)
        declared = home
        reseller = ""
        if origin.startswith("restricted"):
            declared = home if rng.random() < 0.25 else str(rng.choice(LIE_COUNTRIES))
        if origin in ("restricted_reseller", "benign_reseller"):
            rcountry = str(rng.choice(list(RESELLERS)))
            if origin == "benign_reseller" and rcountry == "HK":
                rcountry = "SG"
            reseller, declared = RESELLERS[rcountry], rcountry
        t = Tenant(
            tenant_id=f"acct-{_hex(rng, 8)}",
            family=fam,
            workload=workload,
            origin=origin,
            label=label,
            home=home,
            declared=declared,
            reseller=reseller,
            billing_id=f"pm-{_hex(rng, 10)}",
            org=f"{rng.choice(ORG_A)} {rng.choice(ORG_B)}",
            profiling=bool(rng.random() > 0.25),
            nvlink_metrics=bool(rng.random() > 0.3),
        )
        if fam == "pos_split":
            if not split_entity:
                split_entity = f"entity-{_hex(rng, 6)}"
                split_exits = [str(rng.choice(VPN_POOLS))]
                split_principals = [f"{n}{int(rng.integers(1, 99))}" for n in _names(rng, 2)]
                split_billing = t.billing_id
            t.entity = split_entity
            t.home = tenants[-1].home if tenants and tenants[-1].entity else t.home
            # Each account shares some, never all, of the links: exit, principals, billing.
            links = rng.random(3) < np.array([0.7, 0.5, 0.3])
            t.shared_exits = split_exits if links[0] else []
            t.shared_principals = split_principals if links[1] else []
            t.billing_id = split_billing if links[2] else t.billing_id
        tenants.append(t)
    return tenants


ORG_A = (
    "Apex",
    "Blue",
    "Cedar",
    "Delta",
    "Ember",
    "Falcon",
    "Granite",
    "Harbor",
    "Iris",
    "Juniper",
    "Kestrel",
    "Lumen",
    "Meridian",
    "Nova",
    "Orchid",
    "Pioneer",
    "Quartz",
    "Summit",
)
ORG_B = (
    "Labs",
    "AI",
    "Analytics",
    "Systems",
    "Robotics",
    "Studio",
    "Research",
    "Data",
    "Dynamics",
    "Works",
    "Cloud",
    "Bio",
)
FIRST = ("wei", "li", "anna", "james", "maria", "chen", "ivan", "olga", "sam", "yuki", "min",
         "raj", "sara", "tom", "ali", "nina", "omar", "lena", "jun", "kai")  # fmt: skip


def _names(rng: np.random.Generator, n: int) -> list[str]:
    return [str(x) for x in rng.choice(FIRST, n, replace=False)]


def _home(rng: np.random.Generator, origin: str) -> str:
    if origin.startswith("restricted"):
        return str(rng.choice(RESTRICTED))
    if origin in ("domestic", "us_evening", "multinational"):
        return "US"
    if origin == "apac_egress":
        return str(rng.choice(["JP", "KR"]))
    if origin == "benign_reseller":
        return str(rng.choice(["SG", "MY", "AE", "IN"]))
    if origin == "traveller":
        return str(rng.choice(["US", "GB", "DE", "CA", "AU"]))
    return str(rng.choice(ALLIED))


@dataclass(frozen=True)
class SplitPlan:
    """The one training job that the split accounts share."""

    start: int
    length: int
    g: int
    gpu: str
    seed: int
    accounts: int


def _window(rng: np.random.Generator, lo: float, hi: float, total: int) -> tuple[int, int]:
    """A job of lo..hi minutes placed at random inside the period (shortened to fit)."""
    length = int(min(rng.uniform(lo, hi), 0.9 * total))
    return int(rng.integers(0, total - length)), length


def _jobs_for(
    rng: np.random.Generator, tenant: Tenant, total: int, split: SplitPlan | None
) -> list[Job]:
    """The jobs one tenant runs over ``total`` minutes."""
    w = tenant.workload
    tz = HOMES[tenant.home][1]
    jobs: list[Job] = []

    def add(
        start: int,
        length: int,
        g: int,
        gpu: str,
        per_host: int,
        block: dict[str, np.ndarray],
        entity_gpus: int = 0,
    ) -> None:
        jid = f"{w}-{_hex(rng, 6)}" if rng.random() < 0.6 else None
        hosts = _hosts(rng, g, per_host)
        jobs.append(Job(tenant, jid, start, block, hosts, per_host, gpu, entity_gpus or g))

    if w in ("pretrain", "throttled"):
        n_runs = int(rng.choice([1, 1, 2, 3]))
        cursor = int(rng.integers(0, total // 6))
        for _ in range(n_runs):
            g = int(rng.choice([16, 24, 32, 64, 96, 128, 256], p=P_SCALE))
            if tenant.label == 0 and rng.random() < 0.3:
                g = int(rng.choice([8, 16]))
            length = int(rng.uniform(0.35, 0.95) * total / n_runs)
            if total - cursor < 720:
                break
            length = min(max(720, length), total - cursor)
            duty = rng.uniform(0.5, 0.75) if w == "throttled" else 1.0
            gpu = str(rng.choice(["h100", "a100", "h100"]))
            blk = training_block(rng, length, g, gpu, duty, bool(rng.random() < 0.5))
            add(cursor, length, g, gpu, 8, blk)
            cursor += length + int(rng.integers(30, 600))
    elif w == "split":
        if split is None:
            raise ValueError("a split tenant needs the shared job's plan")
        length = min(split.length, total - split.start)
        # One job over every account: the same random stream gives the same rhythm and dips.
        blk = training_block(
            np.random.default_rng(split.seed), length, split.g, split.gpu, 1.0, False
        )
        blk["gpu_util"] = np.clip(
            np.round(blk["gpu_util"] + rng.normal(0, 0.6, blk["gpu_util"].shape)), 0, 100
        )
        shift = int(rng.integers(0, 3))
        add(
            split.start + shift,
            length - shift,
            split.g,
            split.gpu,
            8,
            {k: v[: length - shift] for k, v in blk.items()},
            split.g * split.accounts,
        )
    elif w == "finetune":
        for _ in range(int(rng.integers(1, 5))):
            g = int(rng.choice([1, 2, 4, 8], p=[0.2, 0.25, 0.25, 0.3]))
            start, length = _window(rng, 60, 16 * 60, total)
            gpu = str(rng.choice(["a100", "h100", "a100p", "l40s", "a10"]))
            add(start, length, g, gpu, 8, finetune_block(rng, length, g, gpu))
    elif w == "inference":
        g = int(rng.choice([2, 4, 8, 16, 32]))
        gpu = str(rng.choice(["a100", "h100", "l40s", "l4", "a10"]))
        start = int(rng.integers(0, 240))
        length = total - start
        add(start, length, g, gpu, 8, inference_block(rng, length, g, gpu, start, tz))
    elif w == "batch":
        for _ in range(int(rng.integers(1, 4))):
            g = int(rng.choice([4, 8, 16, 32, 64]))
            start, length = _window(rng, 120, 14 * 60, total)
            gpu = str(rng.choice(["a100", "l40s", "a10", "h100"]))
            add(start, length, g, gpu, 8, batch_block(rng, length, g, gpu))
    elif w == "notebook":
        g = int(rng.choice([1, 1, 2]))
        gpu = str(rng.choice(["a10", "l4", "a100p", "a100"]))
        start = int(rng.integers(0, 600))
        length = total - start - int(rng.integers(0, 600))
        add(start, length, g, gpu, 4, notebook_block(rng, length, g, gpu, start, tz))
    elif w == "render":
        for _ in range(int(rng.integers(1, 3))):
            g = int(rng.choice([4, 8, 16, 32]))
            start, length = _window(rng, 180, 30 * 60, total)
            gpu = str(rng.choice(["l40s", "rtx4090", "a10", "a100"]))
            add(start, length, g, gpu, 8, render_block(rng, length, g, gpu))
    elif w == "mining":
        g = int(rng.choice([8, 16, 32, 64]))
        gpu = str(rng.choice(["rtx4090", "a10", "a100p", "l40s"]))
        start = int(rng.integers(0, 300))
        length = total - start
        add(start, length, g, gpu, 8, mining_block(rng, length, g, gpu))
    elif w == "hpc":
        for _ in range(int(rng.integers(1, 3))):
            g = int(rng.choice([16, 32, 64, 128]))
            start, length = _window(rng, 6 * 60, min(48 * 60, total - 1), total)
            gpu = str(rng.choice(["a100", "h100"]))
            add(start, length, g, gpu, 8, hpc_block(rng, length, g, gpu))
    return jobs


P_SCALE = [0.2, 0.12, 0.2, 0.2, 0.1, 0.12, 0.06]


# --- access events ---------------------------------------------------------------------------


def addresses(rng: np.random.Generator, pool: str, n: int, fixed: int = 0) -> np.ndarray:
    """n addresses from a pool; ``fixed`` > 0 reuses that many addresses (VPN/NAT exits)."""
    nets = [ipaddress.ip_network(c) for c in POOLS[pool][0]]
    k = fixed if fixed else n
    which = rng.integers(0, len(nets), k)
    out = np.array(
        [
            str(nets[i].network_address + int(rng.integers(1, nets[i].num_addresses - 1)))
            for i in which
        ]
    )
    return out[rng.integers(0, k, n)] if fixed else out


def _access(rng: np.random.Generator, tenant: Tenant, total: int) -> pd.DataFrame:
    """Logins, SSH, API calls and transfers of one tenant over the period.

    Event times follow the operator's working day in their own time zone; addresses come from
    the origin's mix of pools (residential, corporate, VPN exits, cloud egress)."""
    home_pool, tz = HOMES[tenant.home]
    o = tenant.origin
    per_day = rng.uniform(8, 90)
    days = total / 1440
    n = max(20, int(rng.poisson(per_day * days)))
    # Minutes weighted by the operator's local working hours (and evening work for some).
    minutes = np.arange(total)
    local_h = (minutes / 60.0 + tz) % 24
    weekday = (((minutes / 60.0 + tz) // 24) % 7) < 5
    work = ((local_h >= 8.5) & (local_h < 19)).astype(float)
    evening = ((local_h >= 19) | (local_h < 1)).astype(float)
    if o == "us_evening":
        weight = 0.25 * work + 1.0 * evening + 0.03
    else:
        weight = work + rng.uniform(0.05, 0.35) * evening + 0.04
    weight = weight * np.where(weekday, 1.0, rng.uniform(0.1, 0.6))
    # Automation (CI, API clients, cron) is flat in time.
    auto = rng.uniform(0.05, 0.5)
    weight = (1 - auto) * weight / weight.sum() + auto / total
    ts = np.sort(rng.choice(total, n, p=weight / weight.sum())) * STEP_S
    ts = ts + rng.integers(0, STEP_S, n)
    principals = [f"{x}{int(rng.integers(1, 99))}" for x in _names(rng, int(rng.integers(1, 6)))]
    principals += tenant.shared_principals
    pr = np.array(principals)[rng.integers(0, len(principals), n)]
    # Address mix per origin.
    src = np.empty(n, dtype=object)
    u = rng.random(n)
    if o in ("domestic", "us_evening"):
        egress = rng.choice([0.0, rng.uniform(0.2, 0.7)])
        src[:] = addresses(
            rng, str(rng.choice(["us_res", "us_corp"])), n, fixed=int(rng.integers(3, 40))
        )
        m = u < egress
        src[m] = addresses(rng, "cloud_us", int(m.sum()), fixed=4)
    elif o == "allied":
        src[:] = addresses(rng, home_pool, n, fixed=int(rng.integers(3, 30)))
    elif o == "apac_egress":
        src[:] = addresses(rng, home_pool, n, fixed=int(rng.integers(3, 20)))
        m = u < rng.uniform(0.4, 0.9)
        cloud = str(rng.choice(["cloud_sg", "cloud_jp", "cloud_kr"]))
        src[m] = addresses(rng, cloud, int(m.sum()), fixed=int(rng.integers(2, 8)))
    elif o == "multinational":
        src[:] = addresses(rng, "us_corp", n, fixed=int(rng.integers(5, 30)))
        office = rng.uniform(0.1, 0.35)
        # The office's staff work their own day (UTC+8): events in those hours come from there.
        office_h = ((ts / 3600.0 + 8) % 24 >= 9) & ((ts / 3600.0 + 8) % 24 < 18)
        m = office_h & (u < office * 2.5)
        src[m] = addresses(rng, str(rng.choice(["cn_corp", "hk_res"])), int(m.sum()), fixed=3)
    elif o == "traveller":
        src[:] = addresses(rng, home_pool, n, fixed=int(rng.integers(3, 20)))
        trip_start = int(rng.integers(0, max(1, total * STEP_S - 3 * 86400)))
        trip_len = int(rng.uniform(1, 3.5) * 86400)
        who = pr[0]
        m = (ts >= trip_start) & (ts < trip_start + trip_len) & (pr == who)
        dest = str(rng.choice(["cn_res", "hk_res", "sg_res", "tw_res"]))
        src[m] = addresses(rng, dest, int(m.sum()), fixed=2)
    elif o == "benign_reseller":
        src[:] = addresses(rng, home_pool, n, fixed=int(rng.integers(3, 20)))
        m = u < rng.uniform(0.0, 0.5)
        src[m] = addresses(rng, "vpn_sg", int(m.sum()), fixed=3)
    elif o.startswith("restricted"):
        mode = o
        if o == "restricted_mixed":
            mode = str(rng.choice(["restricted_direct", "restricted_vpn", "restricted_reseller"]))
        if mode == "restricted_resproxy":
            # Residential proxy networks: many home addresses in rich countries.
            exits = ["us_res", "gb_res", "de_res", "ca_res"][: int(rng.integers(1, 5))]
            e = np.array(exits)[rng.integers(0, len(exits), n)]
            for pool in set(e):
                m = e == pool
                src[m] = addresses(rng, pool, int(m.sum()), fixed=int(rng.integers(20, 200)))
            leak = u < rng.choice([0.0, rng.uniform(0.003, 0.02), rng.uniform(0.02, 0.12)])
            src[leak] = addresses(rng, home_pool, int(leak.sum()), fixed=2)
        elif mode == "restricted_direct":
            corp = "cn_corp" if tenant.home == "CN" else home_pool
            src[:] = addresses(
                rng, str(rng.choice([home_pool, corp])), n, fixed=int(rng.integers(2, 25))
            )
        else:
            if mode == "restricted_vpn":
                exits = tenant.shared_exits or list(rng.choice(VPN_POOLS, int(rng.integers(1, 4))))
            else:
                rc = {v: k for k, v in RESELLERS.items()}.get(tenant.reseller, "SG")
                exits = ["vpn_sg"] if rc in ("SG", "MY", "HK") else ["vpn_nl"]
                exits += [HOMES.get(rc, ("sg_res", 0))[0]] if rng.random() < 0.5 else []
            e = np.array(exits)[rng.integers(0, len(exits), n)]
            for pool in set(e):
                m = e == pool
                src[m] = addresses(rng, pool, int(m.sum()), fixed=int(rng.integers(1, 5)))
            leak = u < rng.choice([0.0, rng.uniform(0.003, 0.02), rng.uniform(0.02, 0.12)])
            src[leak] = addresses(rng, home_pool, int(leak.sum()), fixed=2)
    else:
        raise ValueError(o)
    kinds = np.array(["login", "ssh", "api", "console", "transfer"])
    style = rng.dirichlet([1, 2, 3, 0.5, 0.7])
    ev = kinds[rng.choice(5, n, p=style)]
    agents = np.array(
        ["OpenSSH_9.6", "python-requests/2.32", "Mozilla/5.0", "aws-cli/2.15", "kubectl/1.30"]
    )
    return pd.DataFrame(
        {
            "timestamp": EPOCH + pd.to_timedelta(ts, unit="s"),
            "tenant_id": tenant.tenant_id,
            "src_ip": src.astype(str),
            "event": ev,
            "principal": pr,
            "user_agent": agents[rng.integers(0, len(agents), n)],
            "bytes_in": np.round(rng.lognormal(9, 2, n)),
            "bytes_out": np.round(rng.lognormal(8, 2, n)),
        }
    )


# --- assembly -------------------------------------------------------------------------------


def _rounded(name: str, values: np.ndarray) -> np.ndarray:
    """Values at the precision DCGM reports them (keeps the Parquet file small)."""
    if name.endswith("_bps"):
        return np.round(values, -3)
    if name in PROFILING:
        return np.round(values, 3)
    return np.round(values, 1)


PROFILING = ("sm_active", "tensor_active", "dram_active", "fp64_active")
# With --fp64 the exporter also reports DCGM_FI_PROF_PIPE_FP64_ACTIVE (dcp-metrics, not a
# default counter): the share of SM activity that is double precision, per workload kind.
FP64_SHARE = {"hpc": (0.3, 0.8), "notebook": (0.0, 0.05)}
FP64_OTHER = (0.0, 0.01)  # neural networks, rendering, mining: next to none
NVLINK = ("nvlink_tx_bps", "nvlink_rx_bps")


def _job_table(job: Job, rng: np.random.Generator, fp64: float | None = None) -> pa.Table:
    """One job's rows in time-major order, as a scraper delivers them: each host scraped a few
    seconds off the minute, about 0.3 % of samples lost, and the profiling or NVLink fields
    null for tenants whose nodes do not collect them."""
    any_metric = next(iter(job.metrics.values()))
    t, g = any_metric.shape
    per_host = job.per_host
    host_idx = np.tile(np.arange(g), t) // per_host
    lag = rng.integers(0, 6, len(job.hosts))[None, :] + rng.integers(0, 3, (t, len(job.hosts)))
    seconds = (job.start + np.repeat(np.arange(t), g)) * STEP_S
    seconds = seconds + lag[np.repeat(np.arange(t), g), host_idx]
    stamps = (EPOCH + pd.to_timedelta(seconds, unit="s")).as_unit("ms")
    gpu_idx = np.tile(np.arange(g), t)
    hosts = np.array(job.hosts)[host_idx]
    keep = rng.random(t * g) > 0.003
    cols: dict[str, pa.Array] = {
        "timestamp": pa.array(stamps, pa.timestamp("ms", tz="UTC")),
        "tenant_id": pa.array(np.full(t * g, job.tenant.tenant_id)),
        "host": pa.array(hosts),
        "gpu": pa.array((gpu_idx % per_host).astype(str)),
    }
    metrics = dict(job.metrics)
    if fp64 is not None:  # drawn outside `rng`: the fleet is the same with or without it
        metrics["fp64_active"] = metrics["sm_active"] * fp64
    for name, arr in metrics.items():
        off = (name in PROFILING and not job.tenant.profiling) or (
            name in NVLINK and not job.tenant.nvlink_metrics
        )
        values = _rounded(name, arr.reshape(-1))
        cols[name] = pa.nulls(t * g, pa.float64()) if off else pa.array(values)
    cols["model_name"] = pa.array(np.full(t * g, GPUS[job.model][0]))
    cols["job_id"] = pa.array([job.job_id] * (t * g), pa.string())
    return pa.table(cols).filter(pa.array(keep))


def generate(
    out: Path, n_tenants: int, days: float, seed: int, fp64: bool = False
) -> dict[str, int]:
    """Write one fleet to ``out``; return row counts. ``fp64``: also the FP64 pipe field."""
    rng = np.random.default_rng(seed)
    total = int(days * 1440)
    families = _mix(n_tenants, rng)
    tenants = _make_tenants(rng, families)
    split = SplitPlan(
        start=int(rng.integers(0, total // 5)),
        length=int(rng.uniform(0.5, 0.9) * total),
        g=int(rng.choice([8, 16, 24, 32])),
        gpu=str(rng.choice(["h100", "a100"])),
        seed=int(rng.integers(1 << 30)),
        accounts=sum(t.workload == "split" for t in tenants),
    )
    jobs: list[Job] = []
    for t in tenants:
        jobs += _jobs_for(rng, t, total, split)
    out.mkdir(parents=True, exist_ok=True)
    shares = np.random.default_rng([seed, 64])
    tables = [
        _job_table(
            j,
            rng,
            shares.uniform(*FP64_SHARE.get(j.tenant.workload, FP64_OTHER)) if fp64 else None,
        )
        for j in jobs
    ]
    tel = pa.concat_tables(tables)
    tel = tel.sort_by([("timestamp", "ascending"), ("tenant_id", "ascending")])
    pq.write_table(tel, out / "telemetry.parquet", row_group_size=500_000)
    truth = pd.DataFrame(
        [
            {
                "tenant_id": j.tenant.tenant_id,
                "job_id": j.job_id or "",
                "start": EPOCH + pd.Timedelta(minutes=j.start),
                "end": EPOCH + pd.Timedelta(minutes=j.start + len(j.metrics["gpu_util"])),
                "n_gpus": j.metrics["gpu_util"].shape[1],
                "entity_gpus": j.n_gpus_entity,
                "family": j.tenant.family,
                "workload": j.tenant.workload,
                "origin": j.tenant.origin,
                "home": j.tenant.home,
                "entity": j.tenant.entity,
                "label": j.tenant.label,
            }
            for j in jobs
        ]
    )
    truth.to_csv(out / "truth.csv", index=False)
    access = pd.concat(
        [_access(np.random.default_rng([seed, i]), t, total) for i, t in enumerate(tenants)],
        ignore_index=True,
    ).sort_values("timestamp", kind="stable")
    # A log has one row per event: the same second, address, event and principal is one event.
    access = access.drop_duplicates(["timestamp", "tenant_id", "src_ip", "event", "principal"])
    access.to_parquet(out / "access.parquet", index=False)
    reg = pd.DataFrame(
        {
            "tenant_id": [t.tenant_id for t in tenants],
            "declared_country": [t.declared for t in tenants],
            "org_name": [t.org for t in tenants],
            "created_at": [
                (EPOCH - pd.Timedelta(days=int(rng.integers(3, 900)))).isoformat() for _ in tenants
            ],
            "billing_country": [t.declared if rng.random() < 0.85 else t.home for t in tenants],
            "reseller": [t.reseller for t in tenants],
            "billing_id": [t.billing_id for t in tenants],
        }
    )
    reg.to_csv(out / "tenants.csv", index=False)
    return {
        "telemetry": tel.num_rows,
        "access": len(access),
        "tenants": len(reg),
        "jobs": len(jobs),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--tenants", type=int, default=70)
    ap.add_argument("--days", type=float, default=6.0)
    ap.add_argument("--seed", type=int, default=9103)
    ap.add_argument("--fp64", action="store_true", help="also export FP64 pipe activity")
    args = ap.parse_args()
    counts = generate(args.out, args.tenants, args.days, args.seed, args.fp64)
    print(counts)


if __name__ == "__main__":
    main()
