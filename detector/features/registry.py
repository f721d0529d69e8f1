"""The feature registry: every session feature's name, unit, family and meaning, declared once."""

from __future__ import annotations

from dataclasses import dataclass

WORKLOAD, ORIGIN, RISK = "workload", "origin", "risk"


@dataclass(frozen=True)
class Feature:
    name: str
    unit: str
    family: str
    description: str


FEATURES: tuple[Feature, ...] = (
    # What runs: the telemetry of the session's GPUs.
    Feature("duration_s", "s", WORKLOAD, "span from the first to the last active sample"),
    Feature("n_gpus", "GPUs", WORKLOAD, "distinct GPUs (host, gpu) in the session"),
    Feature("n_hosts", "hosts", WORKLOAD, "distinct hosts in the session"),
    Feature(
        "gpu_hours", "GPU h", WORKLOAD, "sum over GPUs of the time each GPU was in the session"
    ),
    Feature(
        "est_flop",
        "FLOP",
        WORKLOAD,
        "estimated dense tensor FLOP: GPU time x peak FLOP/s of the model x tensor activity "
        "(SM activity x 0.5, else utilisation x 0.35, when profiling metrics are missing)",
    ),
    Feature("log10_flop", "log10 FLOP", WORKLOAD, "log10 of est_flop"),
    Feature(
        "training_gpu_share",
        "ratio",
        WORKLOAD,
        "share of the session's GPUs that run training: mostly >= 80 % busy with tensor "
        "work (without profiling metrics: a mostly full framebuffer) for at least "
        "[features] training_min_gpu_seconds",
    ),
    Feature("training_gpu_hours", "GPU h", WORKLOAD, "GPU-hours of the training GPUs"),
    Feature("training_flop", "FLOP", WORKLOAD, "estimated FLOP of the training GPUs"),
    Feature("util_mean", "%", WORKLOAD, "mean GPU utilisation"),
    Feature("util_std", "%", WORKLOAD, "standard deviation of GPU utilisation"),
    Feature("util_p95", "%", WORKLOAD, "95th percentile of GPU utilisation"),
    Feature("util_max", "%", WORKLOAD, "maximum GPU utilisation"),
    Feature("busy_frac", "ratio", WORKLOAD, "share of samples with utilisation >= 90 %"),
    Feature("idle_frac", "ratio", WORKLOAD, "share of samples at or below the activity threshold"),
    Feature("sm_active_mean", "ratio", WORKLOAD, "mean SM activity (DCGM_FI_PROF_SM_ACTIVE)"),
    Feature("tensor_active_mean", "ratio", WORKLOAD, "mean tensor-pipe activity"),
    Feature("tensor_share", "ratio", WORKLOAD, "tensor activity / SM activity: matrix math share"),
    Feature("dram_active_mean", "ratio", WORKLOAD, "mean DRAM activity"),
    Feature("mem_fill", "ratio", WORKLOAD, "mean framebuffer fill, used / (used + free)"),
    Feature("power_mean_w", "W", WORKLOAD, "mean board power per GPU"),
    Feature("nvlink_bps", "B/s", WORKLOAD, "mean NVLink traffic per GPU, tx + rx"),
    Feature("pcie_bps", "B/s", WORKLOAD, "mean PCIe traffic per GPU, tx + rx"),
    Feature(
        "lockstep",
        "correlation",
        WORKLOAD,
        "mean correlation of each GPU's utilisation with the session's mean over GPUs "
        "(NaN for one GPU)",
    ),
    Feature(
        "util_autocorr",
        "correlation",
        WORKLOAD,
        "lag-1 autocorrelation of the session's mean utilisation on the time grid",
    ),
    Feature(
        "dip_rate_per_h",
        "1/h",
        WORKLOAD,
        "synchronous utilisation dips (all GPUs below half the session median) per hour",
    ),
    Feature(
        "dip_regularity",
        "ratio",
        WORKLOAD,
        "1 - coefficient of variation of the intervals between dips: 1 = checkpoint-like",
    ),
    Feature(
        "training_signature",
        "ratio",
        WORKLOAD,
        "how much the session looks like large-model training: mean of busy_frac, "
        "tensor activity / 0.4, mem_fill and lockstep (each clipped to 0-1, NaN ones skipped)",
    ),
    # Who drives it: access events of the tenant in the session window.
    Feature(
        "access_events",
        "events",
        ORIGIN,
        "access events in the session window (from lookback before start to end)",
    ),
    Feature(
        "restricted_share",
        "ratio",
        ORIGIN,
        "share of access events from countries of concern (window, else the tenant's)",
    ),
    Feature(
        "tenant_restricted_share",
        "ratio",
        ORIGIN,
        "share of all the tenant's access events from countries of concern",
    ),
    Feature(
        "restricted_leak",
        "ratio",
        ORIGIN,
        "1 if any of the tenant's events came directly from a country of concern",
    ),
    Feature("hosting_share", "ratio", ORIGIN, "share of access events from hosting/VPN ASNs"),
    Feature("unknown_share", "ratio", ORIGIN, "share of access events with unknown country"),
    Feature(
        "kyc_mismatch_share",
        "ratio",
        ORIGIN,
        "share of access events from a country other than the tenant's declared one",
    ),
    Feature(
        "declared_restricted",
        "flag",
        ORIGIN,
        "1 if the tenant declared or bills in a country of concern",
    ),
    Feature("reseller", "flag", ORIGIN, "1 if the tenant came through a reseller"),
    Feature("distinct_countries", "countries", ORIGIN, "distinct source countries of the tenant"),
    Feature(
        "distinct_asns",
        "ASNs",
        ORIGIN,
        "distinct source networks of the tenant (ASN, else AS organisation)",
    ),
    Feature(
        "concern_hours_fit",
        "ratio",
        ORIGIN,
        "best share, over countries of concern, of events on weekdays in its working hours",
    ),
    Feature(
        "declared_hours_fit",
        "ratio",
        ORIGIN,
        "share of events on weekdays in the working hours of the declared country",
    ),
    Feature(
        "origin_evidence",
        "ratio",
        ORIGIN,
        "restricted-origin evidence that survives VPNs, the strongest of: restricted_share; "
        "declared_restricted; hosting_share x (concern_hours_fit - declared_hours_fit)+; "
        "restricted_leak x hosting_share (direct leaks of a tenant hiding behind hosting); "
        "reseller x kyc_mismatch_share; 0.6 x hosting_share x kyc_mismatch_share (only "
        "foreign hosting exits)",
    ),
    # Interactions: large-model training weighted by restricted-origin evidence.
    Feature(
        "restricted_compute",
        "log10 EFLOP",
        RISK,
        "log10(1 + training_flop / 1e18) x origin_evidence",
    ),
    Feature(
        "restricted_gpu_hours",
        "log10 GPU h",
        RISK,
        "log10(1 + training_gpu_hours) x origin_evidence",
    ),
)

BY_NAME = {f.name: f for f in FEATURES}
NAMES = [f.name for f in FEATURES]
