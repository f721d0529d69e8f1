"""The feature registry: every session feature's name, unit, family and meaning, declared once."""

from __future__ import annotations

from dataclasses import dataclass

WORKLOAD, ENTITY, ORIGIN, ACCOUNTING, RISK = "workload", "entity", "origin", "accounting", "risk"


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
    Feature("samples_per_gpu", "samples", WORKLOAD, "telemetry samples per GPU"),
    Feature(
        "est_flop",
        "FLOP",
        WORKLOAD,
        "estimated dense tensor FLOP: GPU time x peak FLOP/s of the model x achieved share of "
        "peak, from tensor activity, else SM activity, else utilisation "
        "(summary.ACTIVITY_FACTORS)",
    ),
    Feature("est_flop_low", "FLOP", WORKLOAD, "low end of the est_flop band"),
    Feature("est_flop_high", "FLOP", WORKLOAD, "high end of the est_flop band"),
    Feature("log10_flop", "log10 FLOP", WORKLOAD, "log10 of est_flop"),
    Feature("util_mean", "%", WORKLOAD, "mean GPU utilisation"),
    Feature("util_std", "%", WORKLOAD, "standard deviation of GPU utilisation"),
    Feature("util_p95", "%", WORKLOAD, "95th percentile of GPU utilisation"),
    Feature("util_max", "%", WORKLOAD, "maximum GPU utilisation"),
    Feature("busy_frac", "ratio", WORKLOAD, "share of samples with utilisation >= 90 %"),
    Feature("idle_frac", "ratio", WORKLOAD, "share of samples at or below the activity threshold"),
    Feature("sm_active_mean", "ratio", WORKLOAD, "mean SM activity (DCGM_FI_PROF_SM_ACTIVE)"),
    Feature("tensor_active_mean", "ratio", WORKLOAD, "mean tensor-pipe activity"),
    Feature("tensor_share", "ratio", WORKLOAD, "tensor activity / SM activity: matrix math share"),
    Feature(
        "fp64_share",
        "ratio",
        WORKLOAD,
        "FP64 activity / SM activity (DCGM_FI_PROF_PIPE_FP64_ACTIVE, else TENSOR_DFMA_ACTIVE): "
        "double-precision simulation; NaN when the exporter does not report it",
    ),
    Feature("dram_active_mean", "ratio", WORKLOAD, "mean DRAM activity"),
    Feature("mem_fill", "ratio", WORKLOAD, "mean framebuffer fill, used / (used + free)"),
    Feature("power_mean_w", "W", WORKLOAD, "mean board power per GPU"),
    Feature(
        "power_per_util",
        "ratio",
        WORKLOAD,
        "power above idle / (power above idle at the GPU model's limit x utilisation), over "
        "active samples (idle: workload.IDLE_POWER_SHARE of the limit)",
    ),
    Feature("dram_per_util", "ratio", WORKLOAD, "DRAM activity / utilisation, over active samples"),
    Feature("nvlink_bps", "B/s", WORKLOAD, "mean NVLink traffic per GPU, tx + rx"),
    Feature("pcie_bps", "B/s", WORKLOAD, "mean PCIe traffic per GPU, tx + rx"),
    Feature(
        "lockstep",
        "correlation",
        WORKLOAD,
        "mean correlation of each GPU's utilisation changes with those of the mean of the "
        "session's other GPUs (NaN for one GPU, or when the others never move)",
    ),
    Feature(
        "util_autocorr",
        "correlation",
        WORKLOAD,
        "lag-1 autocorrelation of the session's mean utilisation on the time grid",
    ),
    Feature(
        "util_dispersion",
        "ratio",
        WORKLOAD,
        "robust coefficient of variation of the session's mean utilisation on the time grid "
        "(1.4826 x median absolute deviation / median)",
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
        "training_evidence",
        "probability",
        WORKLOAD,
        "evidence that the session is neural-network training, from graded workload signals "
        "(features/training.py; `gpuwatch features --evidence`)",
    ),
    # Linked accounts (features/entities.py).
    Feature("entity_tenants", "tenants", ENTITY, "tenants in the session's entity"),
    Feature(
        "group_sessions",
        "sessions",
        ENTITY,
        "sessions of linked accounts running in step with this one, itself included",
    ),
    Feature("group_flop", "FLOP", ENTITY, "est_flop of the in-step group"),
    Feature("group_gpu_hours", "GPU h", ENTITY, "gpu_hours of the in-step group"),
    # Who drives it: the tenant's access history (features/origin.py).
    Feature(
        "access_events",
        "events",
        ORIGIN,
        "access events of the tenant from [sessions] access_lookback_seconds before the "
        "session to its end",
    ),
    Feature("history_events", "events", ORIGIN, "the tenant's access events in its history"),
    Feature("history_days", "days", ORIGIN, "distinct days with access events in the history"),
    Feature(
        "restricted_share",
        "ratio",
        ORIGIN,
        "share of the tenant's events from countries of concern (any network)",
    ),
    Feature("hosting_share", "ratio", ORIGIN, "share of events from other hosting/VPN networks"),
    Feature(
        "foreign_exit_share",
        "ratio",
        ORIGIN,
        "share of events through hosting exits outside the declared country",
    ),
    Feature(
        "kyc_mismatch_share",
        "ratio",
        ORIGIN,
        "share of events from a non-hosting network outside the declared country (and not "
        "from a country of concern)",
    ),
    Feature(
        "direct_events",
        "events",
        ORIGIN,
        "the tenant's events straight from a country of concern (not through hosting)",
    ),
    Feature(
        "concern_people_share",
        "ratio",
        ORIGIN,
        "of the tenant's events outside hosting networks, the share made by people who connect "
        "from a country of concern whenever they are seen there (a resident, a VPN user's "
        "leaks)",
    ),
    Feature(
        "clock_offset_h",
        "h",
        ORIGIN,
        "UTC offset whose office hours fit the tenant's weekly activity best",
    ),
    Feature(
        "clock_excess",
        "log-likelihood",
        ORIGIN,
        "per event, how much better a country of concern's office hours fit than the declared "
        "country's (negative: the declared country's fit better), times the confidence of the "
        "history",
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
        "entity_origin_evidence",
        "probability",
        ORIGIN,
        "origin evidence of the session's entity, its tenants' events pooled",
    ),
    Feature(
        "origin_evidence",
        "probability",
        ORIGIN,
        "evidence that the people driving the tenant or its entity are in a country of concern, "
        "from tells that add up in log-odds (features/origin.py; `gpuwatch features "
        "--evidence`)",
    ),
    # Compute accounting (features/accounting.py).
    Feature("tenant_gpu_hours", "GPU h", ACCOUNTING, "GPU-hours of the tenant's sessions"),
    Feature(
        "tenant_training_flop",
        "FLOP",
        ACCOUNTING,
        "est_flop of the tenant's sessions that look like training",
    ),
    Feature("tenant_training_flop_low", "FLOP", ACCOUNTING, "low end of tenant_training_flop"),
    Feature("tenant_training_flop_high", "FLOP", ACCOUNTING, "high end of tenant_training_flop"),
    Feature("entity_gpu_hours", "GPU h", ACCOUNTING, "GPU-hours of the entity's sessions"),
    Feature(
        "entity_training_flop",
        "FLOP",
        ACCOUNTING,
        "est_flop of the entity's sessions that look like training",
    ),
    Feature("entity_training_flop_low", "FLOP", ACCOUNTING, "low end of entity_training_flop"),
    Feature("entity_training_flop_high", "FLOP", ACCOUNTING, "high end of entity_training_flop"),
    Feature(
        "entity_flop_threshold",
        "FLOP",
        ACCOUNTING,
        "highest [accounting] thresholds_flop the entity's training FLOP reaches (0: none)",
    ),
    # The forest's inputs (features/risk.py).
    Feature(
        "restricted_training",
        "probability",
        RISK,
        "origin_evidence x training_evidence: restricted-origin training",
    ),
    Feature(
        "restricted_compute",
        "log10 EFLOP",
        RISK,
        "restricted_training x log10(1 + group_flop / 1e18)",
    ),
    Feature(
        "restricted_gpu_hours",
        "log10 GPU h",
        RISK,
        "restricted_training x log10(1 + group_gpu_hours)",
    ),
)

BY_NAME = {f.name: f for f in FEATURES}
NAMES = [f.name for f in FEATURES]
