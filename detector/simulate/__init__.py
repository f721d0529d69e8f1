"""Seeded simulator of GPU-cloud tenants: DCGM-like telemetry, access logs, KYC registry and
the ground truth of which jobs are training driven from a country of concern."""

from __future__ import annotations

from .ips import build_ip_pool, load_ip_pool, write_ip_pool
from .origins import ORIGINS, RESTRICTED_ORIGINS
from .run import FILES, simulate
from .scenarios import SCENARIOS, Scenario, scenario_counts
from .workloads import GPU_MODELS, TRAINING, WORKLOADS

__all__ = [
    "FILES",
    "GPU_MODELS",
    "ORIGINS",
    "RESTRICTED_ORIGINS",
    "SCENARIOS",
    "TRAINING",
    "WORKLOADS",
    "Scenario",
    "build_ip_pool",
    "load_ip_pool",
    "scenario_counts",
    "simulate",
    "write_ip_pool",
]
