"""Names of the scores-table columns that labels, suppression and the report read.

The detection stages keep adding evidence to the scores table, so every reader here uses a column
only when the table has it and says so when it is missing; only ``REQUIRED`` must be present.
Renaming a column of the scores table means changing it here, nowhere else.
"""

from __future__ import annotations

SESSION_ID = "session_id"
TENANT = "tenant_id"
JOB = "job_id"
START = "start"
END = "end"
RISK = "risk_score"
SEVERITY = "severity"
ALERT = "alert"
TOP_FEATURES = "top_features"  # JSON list of {feature, value, contribution}
MODEL_VERSION = "model_version"
RUN_ID = "run_id"

REQUIRED = (SESSION_ID, TENANT, START, END, RISK, SEVERITY, ALERT)

# Workload and compute accounting.
N_GPUS = "n_gpus"
N_HOSTS = "n_hosts"
GPU_HOURS = "gpu_hours"
FLOP = "est_flop"
FLOP_LOW = "est_flop_low"  # lower and upper ends of the FLOP interval, when the table has them
FLOP_HIGH = "est_flop_high"

# Who drives the session: the entity it belongs to and where its access came from. Each may hold
# a scalar, a list, a {value: count} mapping, or the JSON text of one (see `suppress.values_of`).
ENTITY = "entity_id"
LINKED_TENANTS = "linked_tenants"
COUNTRIES = "origin_countries"  # countries of the access events, with counts
ASNS = "origin_asns"  # autonomous system numbers, with counts
AS_ORGS = "origin_as_orgs"  # AS organisations, with counts
PREFIXES = "origin_prefixes"  # source prefixes (IPv4 /24, IPv6 /48), with counts
DECLARED_COUNTRY = "declared_country"
BILLING_COUNTRY = "billing_country"
RESELLER_NAME = "reseller_name"  # the reseller the tenant signed up through, if any
LINK_REASONS = "link_reasons"  # what each linked tenant shares with this one

# Written by `gpuwatch score --suppress`.
SUPPRESSED_BY = "suppressed_by"  # id of the rule that silenced the alert, else null
SUPPRESSION_REASON = "suppression_reason"
