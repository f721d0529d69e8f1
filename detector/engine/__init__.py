"""Where feature extraction runs: in this process, partition by partition, or on Dask.

Ingest gives validated batches; the partition pass (`partition.py`) writes them to tenant-hash
partitions. Both engines run the same function on the same partitions, so their features are
identical; only the sessions' workload features (the per-sample work) are computed per
partition, the origin features from the small access table afterwards.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from .. import quarantine
from ..config import Settings
from ..errors import ConfigError
from ..ingest import Batch, Counts, Source
from ..runinfo import RunReport
from .local import run_local
from .partition import auto_partitions, partition_of, partition_telemetry
from .scratch import scratch_dir
from .slices import SLICE_ROWS

__all__ = ["ENGINES", "Engine", "Progress", "extract", "partition_of", "partition_telemetry"]

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
    slice_rows: int = SLICE_ROWS  # a larger partition is read in time slices of this size

    def __post_init__(self) -> None:
        if self.name not in ENGINES:
            raise ConfigError(f"unknown engine {self.name!r}; expected one of {', '.join(ENGINES)}")
        if self.slice_rows < 1:
            raise ConfigError(f"slice_rows must be at least 1, got {self.slice_rows}")
        if self.partitions is not None and self.partitions < 1:
            raise ConfigError(f"partitions must be at least 1, got {self.partitions}")
        if self.scheduler and self.name != "dask":
            raise ConfigError("--scheduler needs --engine dask")


def extract(
    source: Source,
    settings: Settings,
    report: RunReport,
    *,
    engine: Engine = Engine(),
    extra: Sequence[Batch] = (),
    extra_name: str = "",
    progress: Progress | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame, Counts]:
    """(sessions with workload features, quarantine, counts) of the telemetry of `source` and
    of `extra`, batches already read from `extra_name` (a live server). Sessions come in a
    stable order: tenant, start, job."""
    units = source.units()
    rows = sum(u.rows for u in units) + sum(b.read for b in extra)
    n_parts = engine.partitions or auto_partitions(rows)
    workers = engine.workers or os.cpu_count() or 1
    with scratch_dir(engine.work_dir) as tmp:
        with report.stage("partition"):
            advance = progress("reading telemetry", rows) if progress and rows else None
            parts = partition_telemetry(
                source,
                Path(tmp),
                n_parts,
                units=units,
                extra=extra,
                extra_name=extra_name,
                progress=advance,
                workers=workers,
            )
        log.debug("partition: %d rows into %d of %d", parts.counts.read, len(parts.paths), n_parts)
        advance = progress("features", len(parts.paths)) if progress else None
        # largest partitions first, so that none starts last and leaves the other workers idle
        order = sorted(
            range(len(parts.paths)), key=lambda i: -sum(p.stat().st_size for p in parts.paths[i])
        )
        paths = [parts.paths[i] for i in order]
        with report.stage("extract"):
            if engine.name == "dask":
                from .dask import run_dask

                results = run_dask(paths, parts.files, settings, engine, advance)
            else:
                results = run_local(
                    paths, parts.files, settings, advance, workers, engine.slice_rows
                )
        results = [results[k] for k in np.argsort(order)]  # back in partition order
    for name in ("read", "sessions", "workload"):
        report.stage_seconds[f"extract_{name}"] = sum(r.seconds[name] for r in results)
    dup = quarantine.combine([r.quarantine for r in results])
    parts.counts.demote(len(dup))
    log.debug("extract: %d rows, engine %s", sum(r.rows for r in results), engine.name)
    features = combine([r.features for r in results])
    return features, quarantine.combine([parts.quarantine, dup]), parts.counts.check()


def combine(parts: Sequence[pd.DataFrame]) -> pd.DataFrame:
    """Per-partition session tables as one, in the stable session order."""
    parts = [p for p in parts if len(p)]
    if not parts:
        return pd.DataFrame()
    table = pd.concat(parts, ignore_index=True)
    key = table[SESSION_ORDER].assign(job_id=table["job_id"].astype("string").fillna(""))
    order = key.sort_values(SESSION_ORDER, kind="stable").index
    return table.loc[order].reset_index(drop=True)
