"""Where feature extraction runs: in this process, partition by partition, or on Dask.

Both engines run the same function on the same tenant-hash partitions (`partition.py`), so
their features are identical; only the sessions' workload features (the per-sample work) are
computed per partition, the origin features from the small access table afterwards.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from .. import quarantine
from ..config import Settings
from ..errors import ConfigError
from ..runinfo import RunReport
from ..schema import TELEMETRY
from .local import PartResult, partition_features, run_local
from .partition import (
    Partitions,
    auto_partitions,
    count_rows,
    partition_of,
    partition_telemetry,
    streamable,
)
from .scratch import scratch_dir

__all__ = [
    "ENGINES",
    "Engine",
    "PartResult",
    "Partitions",
    "auto_partitions",
    "extract",
    "partition_features",
    "partition_of",
    "partition_telemetry",
    "run_local",
    "streamable",
]

ENGINES = ("local", "dask")
SESSION_ORDER = ["tenant_id", "start", "job_id", "session_id"]
log = logging.getLogger(__name__)

Progress = Callable[[str, int], Callable[[int], None]]  # (phase, total) -> advance(n)


@dataclass(frozen=True)
class Engine:
    """Where and how finely feature extraction runs."""

    name: str = "local"
    scheduler: str | None = None  # dask: tcp://HOST:PORT; None starts a LocalCluster
    partitions: int | None = None  # None: one per ROWS_PER_PARTITION input rows
    work_dir: Path | None = None  # partition files (shared with dask workers); None: temp
    workers: int | None = None  # processes for the partition pass, the local engine
    # and a LocalCluster; None: one per core

    def __post_init__(self) -> None:
        if self.name not in ENGINES:
            raise ConfigError(f"unknown engine {self.name!r}; expected one of {', '.join(ENGINES)}")
        if self.partitions is not None and self.partitions < 1:
            raise ConfigError(f"partitions must be at least 1, got {self.partitions}")
        if self.scheduler and self.name != "dask":
            raise ConfigError("--scheduler needs --engine dask")


def extract(
    paths: Sequence[Path],
    settings: Settings,
    report: RunReport,
    *,
    engine: Engine = Engine(),
    fmt: str = "auto",
    since: pd.Timestamp | None = None,
    until: pd.Timestamp | None = None,
    loaded: Sequence[pd.DataFrame] = (),
    progress: Progress | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(sessions with workload features, quarantine) for the telemetry in `paths` and `loaded`.

    Rows read, accepted and quarantined from `paths` are added to `report`; `loaded` tables
    were counted when they were read. Sessions come in a stable order: tenant, start, job.
    """
    rows = count_rows(paths) if paths else 0
    n_parts = engine.partitions or auto_partitions(rows + sum(len(t) for t in loaded))
    with scratch_dir(engine.work_dir) as tmp:
        with report.stage("partition"):
            advance = progress("reading telemetry", rows) if progress and rows else None
            parts = partition_telemetry(
                paths,
                Path(tmp),
                n_parts,
                fmt=fmt,
                since=since,
                until=until,
                loaded=loaded,
                progress=advance,
                workers=engine.workers or os.cpu_count() or 1,
            )
        _log_stage(
            report,
            "partition",
            f"{parts.rows_read} rows into {len(parts.paths)} of {n_parts} partitions",
        )
        advance = progress("features", len(parts.paths)) if progress else None
        with report.stage("extract"):
            if engine.name == "dask":
                from .dask import run_dask

                results = run_dask(
                    parts.paths, parts.files, settings, engine.scheduler, engine.workers, advance
                )
            else:
                results = run_local(
                    parts.paths,
                    parts.files,
                    settings,
                    advance,
                    workers=engine.workers or os.cpu_count() or 1,
                )
    for name in ("read", "sessions", "workload"):
        report.stage_seconds[f"extract_{name}"] = sum(r.seconds[name] for r in results)
    dup = quarantine.combine([r.quarantine for r in results])
    rejected = quarantine.combine([parts.quarantine, dup])
    report.rows_read[TELEMETRY.name] += parts.rows_read
    report.rows_accepted[TELEMETRY.name] += parts.rows_accepted - len(dup)
    for reason, count in rejected["reason"].value_counts().items():
        report.rows_quarantined[(TELEMETRY.name, str(reason))] += int(count)
    _log_stage(report, "extract", f"{sum(r.rows for r in results)} rows, engine {engine.name}")
    return combine([r.features for r in results]), rejected


def combine(parts: Sequence[pd.DataFrame]) -> pd.DataFrame:
    """Per-partition session tables as one, in the stable session order."""
    parts = [p for p in parts if len(p)]
    if not parts:
        return pd.DataFrame()
    table = pd.concat(parts, ignore_index=True)
    key = table[SESSION_ORDER].assign(job_id=table["job_id"].astype("string").fillna(""))
    order = key.sort_values(SESSION_ORDER, kind="stable").index
    return table.loc[order].reset_index(drop=True)


def _log_stage(report: RunReport, stage: str, what: str) -> None:
    log.debug("stage %s: %.2f s (%s)", stage, report.stage_seconds.get(stage, 0.0), what)
