"""Every canonical table's columns, types, units and checks, declared once.

Readers map foreign formats onto these names; validation checks rows against them; the
scores table is what every output writes.
"""

from __future__ import annotations

from dataclasses import dataclass

# Column kinds: how a value is parsed and checked.
TIMESTAMP, STRING, FLOAT, INT, BOOL, IP, COUNTRY = (
    "timestamp",
    "string",
    "float",
    "int",
    "bool",
    "ip",
    "country",
)


@dataclass(frozen=True)
class Column:
    """One column of a canonical table."""

    name: str
    kind: str
    required: bool = False
    unit: str = ""
    description: str = ""
    min: float | None = None
    max: float | None = None


@dataclass(frozen=True)
class TableSchema:
    """A canonical table: its columns and the key that makes a row a duplicate."""

    name: str
    columns: tuple[Column, ...]
    key: tuple[str, ...] = ()

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.columns]

    @property
    def required(self) -> list[str]:
        return [c.name for c in self.columns if c.required]

    def column(self, name: str) -> Column:
        for c in self.columns:
            if c.name == name:
                return c
        raise KeyError(name)


TELEMETRY = TableSchema(
    "telemetry",
    (
        Column("timestamp", TIMESTAMP, True, "UTC", "sample time"),
        Column("tenant_id", STRING, True, "", "tenant owning the GPU (namespace/label mapping)"),
        Column("host", STRING, True, "", "node hostname (DCGM Hostname)"),
        Column("gpu", STRING, True, "", "GPU index or UUID"),
        Column("gpu_util", FLOAT, True, "%", "DCGM_FI_DEV_GPU_UTIL", 0, 100),
        Column("sm_active", FLOAT, False, "ratio", "DCGM_FI_PROF_SM_ACTIVE", 0, 1),
        Column("tensor_active", FLOAT, False, "ratio", "DCGM_FI_PROF_PIPE_TENSOR_ACTIVE", 0, 1),
        Column("fp64_active", FLOAT, False, "ratio", "DCGM_FI_PROF_PIPE_FP64_ACTIVE", 0, 1),
        Column("dram_active", FLOAT, False, "ratio", "DCGM_FI_PROF_DRAM_ACTIVE", 0, 1),
        Column("fb_used_mib", FLOAT, False, "MiB", "DCGM_FI_DEV_FB_USED", 0, None),
        Column("fb_free_mib", FLOAT, False, "MiB", "DCGM_FI_DEV_FB_FREE", 0, None),
        Column("power_w", FLOAT, False, "W", "DCGM_FI_DEV_POWER_USAGE", 0, 5000),
        Column("nvlink_tx_bps", FLOAT, False, "B/s", "DCGM_FI_PROF_NVLINK_TX_BYTES", 0, None),
        Column("nvlink_rx_bps", FLOAT, False, "B/s", "DCGM_FI_PROF_NVLINK_RX_BYTES", 0, None),
        Column("pcie_tx_bps", FLOAT, False, "B/s", "DCGM_FI_PROF_PCIE_TX_BYTES", 0, None),
        Column("pcie_rx_bps", FLOAT, False, "B/s", "DCGM_FI_PROF_PCIE_RX_BYTES", 0, None),
        Column("model_name", STRING, False, "", "GPU model (DCGM modelName)"),
        Column("job_id", STRING, False, "", "pod or scheduler job, when known"),
    ),
    key=("timestamp", "tenant_id", "host", "gpu"),
)

ACCESS = TableSchema(
    "access",
    (
        Column("timestamp", TIMESTAMP, True, "UTC", "event time"),
        Column("tenant_id", STRING, True, "", "tenant the event belongs to"),
        Column("src_ip", IP, True, "", "source address, IPv4 or IPv6"),
        Column("event", STRING, True, "", "login, ssh, api, console, transfer, ..."),
        Column("principal", STRING, False, "", "user or key that acted"),
        Column("user_agent", STRING, False),
        Column("bytes_in", FLOAT, False, "B", "", 0, None),
        Column("bytes_out", FLOAT, False, "B", "", 0, None),
        Column("country", COUNTRY, False, "", "ISO 3166-1 alpha-2, filled by enrichment"),
        Column("asn", INT, False, "", "autonomous system number, filled by enrichment", 0, None),
        Column("as_org", STRING, False, "", "AS organisation, filled by enrichment"),
    ),
    key=("timestamp", "tenant_id", "src_ip", "event", "principal"),
)

TENANTS = TableSchema(
    "tenants",
    (
        Column("tenant_id", STRING, True),
        Column("declared_country", COUNTRY, False, "", "KYC country of the customer"),
        Column("org_name", STRING, False),
        Column("created_at", TIMESTAMP, False, "UTC"),
        Column("billing_country", COUNTRY, False),
        Column("reseller", STRING, False, "", "reseller through which the tenant signed up"),
        Column(
            "billing_id",
            STRING,
            False,
            "",
            "payment method or billing account fingerprint; accounts sharing one are linked",
        ),
    ),
    key=("tenant_id",),
)

LABELS = TableSchema(
    "labels",
    (
        Column("session_id", STRING, False),
        Column("tenant_id", STRING, False),
        Column("start", TIMESTAMP, False, "UTC"),
        Column("end", TIMESTAMP, False, "UTC"),
        Column("label", STRING, True, "", "incident or benign"),
        Column("analyst", STRING, False),
        Column("note", STRING, False),
        Column("labeled_at", TIMESTAMP, False, "UTC"),
    ),
)

LABEL_VALUES = ("incident", "benign")

# Columns of the scores table around the feature columns (which come from the feature registry).
SCORE_HEAD = (
    "session_id",
    "tenant_id",
    "start",
    "end",
    "duration_s",
    "n_gpus",
    "n_hosts",
    "gpu_hours",
)
SCORE_TAIL = (
    "anomaly_score",
    "risk_score",
    "severity",
    "alert",
    "top_features",
    "model_version",
    "run_id",
)

# Severity bands of risk_score, as cloud security tools use them: (lowest score, name).
SEVERITY_BANDS = ((90, "critical"), (70, "high"), (40, "medium"), (0, "low"))
