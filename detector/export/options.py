"""What the exporter publishes and where: one frozen object (the CLI's options fill it)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_PORT = 9847  # `gpuwatch serve`


@dataclass(frozen=True)
class ExportOptions:
    """Sinks (textfile, Pushgateway), grouping key and the series budget of one export."""

    metrics_file: Path | None = None
    pushgateway: str | None = None
    job: str = "gpuwatch"
    grouping: Mapping[str, str] = field(default_factory=dict)
    top_n: int = 10
    max_series: int = 500
    pseudonymize_salt: str | None = None
    # The policy's numbers; the CLI sets them from the settings (`policy_export`).
    # origin="restricted" from this origin evidence up ([scoring] alert_origin_evidence)
    restricted_evidence: float = 0.5
    # entities counted past each of these training FLOP ([accounting] thresholds_flop)
    flop_thresholds: tuple[float, ...] = ()
