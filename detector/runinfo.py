"""What one run did: counts, timings and model identity, for logs and run metrics."""

from __future__ import annotations

import time
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field


@dataclass
class RunReport:
    """Filled in by the pipeline as it goes; read by the CLI summary and the metrics exporter."""

    run_id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    started_at: float = field(default_factory=time.time)
    finished_at: float | None = None
    stage_seconds: dict[str, float] = field(default_factory=dict)
    rows_read: Counter = field(default_factory=Counter)  # source -> rows
    rows_accepted: Counter = field(default_factory=Counter)  # source -> rows
    rows_quarantined: Counter = field(default_factory=Counter)  # (source, reason) -> rows
    access_coverage: float = 1.0  # share of the days with GPU sessions that have access events
    ips_total: int = 0
    ips_unknown: int = 0
    sessions: int = 0
    model_version: str = ""
    model_trained_at: str = ""
    success: bool = False
    suppressed: dict[str, int] = field(default_factory=dict)  # active rule -> alerts silenced
    rules_expired: list[str] = field(default_factory=list)  # suppression rules past expiry
    late_merged: int = 0  # with --state: rows at or before the watermark merged into open sessions

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        """Time one pipeline stage (adds up if the stage runs more than once)."""
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.stage_seconds[name] = self.stage_seconds.get(name, 0.0) + time.perf_counter() - t0

    @property
    def enrichment_unknown_ratio(self) -> float:
        return self.ips_unknown / self.ips_total if self.ips_total else 0.0
