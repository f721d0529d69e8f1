"""The partition pass: validated telemetry batches -> tenant-hash partitions on disk.

Spans of units are read in parallel processes, each into its own files. A tenant's rows all
land in one partition, in input order: a partition holds complete sessions, and its duplicates
are found when it is read (`read_partition`).
"""

from __future__ import annotations

import math
import multiprocessing
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from .. import quarantine
from ..ingest import Batch, Counts, Source, Unit, duplicate_rows, duplicates
from ..ingest.validate import arrow_schema
from ..schema import STRING, TELEMETRY
from .scratch import die_with_parent

T = TypeVar("T")

MIN_ROWS_PARALLEL = 1 << 22  # smaller inputs are not worth starting processes for
SPANS_PER_WORKER = 4  # spans per pass worker: progress, and balance
ROWS_PER_PARTITION = 1 << 18  # default partition size: two in work at once (one per core)
_ORIGIN = ("_file", "_row")  # where an accepted row came from, for duplicate quarantine
# Partition files are uncompressed Arrow IPC: written and read back much faster than Parquet
# (or LZ4-compressed IPC, which cost a third of the pass), and they only live for one run
# (~85 bytes a row on disk). Text is dictionary-encoded with one growing dictionary per
# column and pass worker (written as deltas), so rows are moved as integer codes.
_IPC = pa.ipc.IpcWriteOptions(compression=None, emit_dictionary_deltas=True)
_TEXT = pa.dictionary(pa.int32(), pa.string())
_TEXT_COLUMNS = [c.name for c in TELEMETRY.columns if c.kind == STRING]
# On disk: the canonical telemetry columns (text dictionary-encoded), then the row's origin.
SCHEMA = pa.schema(
    [(f.name, _TEXT if f.name in _TEXT_COLUMNS else f.type) for f in arrow_schema(TELEMETRY)]
    + [("_file", pa.int32()), ("_row", pa.int64())]
)
Progress = Callable[[int], None] | None  # called with rows read


@dataclass
class Partitions:
    """Partition files (per non-empty partition, one per span) and the counts of the pass
    (duplicates are found later, per partition)."""

    paths: list[tuple[Path, ...]]  # per partition: its files, in input order
    files: list[str]  # input names, indexed by `_file`
    counts: Counts = field(default_factory=Counts)
    rejected: list[pd.DataFrame] = field(default_factory=list)

    @property
    def quarantine(self) -> pd.DataFrame:
        return quarantine.combine(self.rejected)


def partition_of(names: np.ndarray, n_partitions: int) -> np.ndarray:
    """Stable partition number of each tenant id (the same in every process and run)."""
    hashed = pd.util.hash_array(np.asarray(names, dtype=str).astype(object))
    return (hashed % np.uint64(n_partitions)).astype(np.int64)


def auto_partitions(rows: int) -> int:
    return max(1, math.ceil(rows / ROWS_PER_PARTITION))


class _Writer:
    """Appends accepted rows to the partition files of their tenants."""

    def __init__(self, out_dir: Path, n_partitions: int) -> None:
        self.out_dir, self.n = Path(out_dir), n_partitions
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.writers: dict[int, pa.ipc.RecordBatchFileWriter] = {}
        # "" first: a file's first dictionary is never empty, so later values are deltas
        # (Arrow takes an empty first dictionary followed by values for a replacement)
        self.codes: dict[str, dict[str, int]] = {name: {"": 0} for name in _TEXT_COLUMNS}
        self.values: dict[str, pa.Array] = {}
        self.tenant_part = np.zeros(0, dtype=np.int64)  # partition per tenant code

    def write(self, batch: Batch, file: int) -> None:
        """Append the accepted rows of `batch` (`file`: its index in Partitions.files) to the
        files of their tenants' partitions."""
        if not batch.table.num_rows:
            return
        columns = [
            self._recode(name, _dictionary(batch.table.column(name)))
            if name in self.codes
            else batch.table.column(name).cast(SCHEMA.field(name).type).combine_chunks()
            for name in TELEMETRY.names
        ]
        origin = [pa.array(np.full(len(batch.rows), file, np.int32)), pa.array(batch.rows)]
        table = pa.Table.from_arrays([*columns, *origin], schema=SCHEMA)
        names = self.codes["tenant_id"]
        if len(names) > len(self.tenant_part):
            new = np.asarray(list(names)[len(self.tenant_part) :], dtype=object)
            self.tenant_part = np.r_[self.tenant_part, partition_of(new, self.n)]
        part = self.tenant_part[table.column("tenant_id").combine_chunks().indices.to_numpy()]
        part = part.astype(np.int16) if self.n < 1 << 15 else part  # int16: a radix sort
        order = np.argsort(part, kind="stable")
        table, part = table.take(order), part[order]
        starts = np.r_[0, np.flatnonzero(np.diff(part)) + 1]
        for start, stop in zip(starts, np.r_[starts[1:], len(part)], strict=True):
            p = int(part[start])
            if p not in self.writers:
                path = self.out_dir / f"part-{p:05d}.arrow"
                self.writers[p] = pa.ipc.new_file(path, SCHEMA, options=_IPC)
            self.writers[p].write_table(table.slice(start, stop - start))

    def _recode(self, name: str, column: pa.ChunkedArray) -> pa.DictionaryArray:
        """A dictionary column in terms of this writer's dictionary of `name` (grown as new
        values come: earlier codes never change, so each file gets dictionary deltas)."""
        codes, parts = self.codes[name], []
        for chunk in column.chunks:
            mapping = [codes.setdefault(v, len(codes)) for v in chunk.dictionary.to_pylist()]
            parts.append(pa.array(mapping or [0], pa.int32()).take(chunk.indices))  # null: null
        if name not in self.values or len(self.values[name]) < len(codes):
            self.values[name] = pa.array(list(codes), pa.string())
        index = parts[0] if len(parts) == 1 else pa.concat_arrays(parts)
        return pa.DictionaryArray.from_arrays(index, self.values[name])

    def close(self) -> None:
        for writer in self.writers.values():
            writer.close()


def partition_telemetry(
    source: Source,
    out_dir: Path,
    n_partitions: int,
    *,
    units: Sequence[Unit] | None = None,
    extra: Sequence[Batch] = (),
    extra_name: str = "",
    workers: int = 1,
    progress: Callable[[int], None] | None = None,
) -> Partitions:
    """Read `source` (its `units`, default all) and `extra`, batches already read from
    `extra_name` (a live server), into partitions; with `workers` > 1, contiguous spans of
    units are read in that many processes. `progress` is called with rows read."""
    units = source.units() if units is None else units
    spans = _spans(list(units), 1 if workers <= 1 else workers * SPANS_PER_WORKER)
    result = Partitions([], [*source.names, *([extra_name] if extra else [])])
    out_dir = Path(out_dir)
    if len(spans) > 1:
        with worker_pool(min(workers, len(spans))) as pool:
            futures = [
                pool.submit(_pass, source, span, out_dir / f"w{i:03d}", n_partitions)
                for i, span in enumerate(spans)
            ]
            for future in futures:
                _add(result, future.result(), progress)
    elif spans:
        _add(result, _pass(source, spans[0], out_dir / "w000", n_partitions, progress))
    if extra:
        _add(result, _write(extra, len(source.names), out_dir / "extra", n_partitions))
    parts: dict[str, list[Path]] = {}
    for path in sorted(out_dir.glob("*/part-*.arrow")):  # spans in order, then `extra`
        parts.setdefault(path.name, []).append(path)
    result.paths = [tuple(parts[name]) for name in sorted(parts)]
    return result


class Stopwatch(dict[str, float]):
    """Seconds per step of a partition's work, summed over the calls `run` times."""

    def run(self, step: str, fn: Callable[..., T], *args: Any) -> T:
        t0 = time.perf_counter()
        out = fn(*args)
        self[step] = self.get(step, 0.0) + time.perf_counter() - t0
        return out


def worker_pool(workers: int) -> ProcessPoolExecutor:
    """`workers` forked processes: they share the parent's imported modules (spawn, where
    there is no fork, re-imports the whole CLI, ~250 MB, in each); Arrow re-creates its
    thread pools in a forked child."""
    fork = "fork" in multiprocessing.get_all_start_methods()
    ctx = multiprocessing.get_context("fork" if fork else "spawn")
    return ProcessPoolExecutor(workers, mp_context=ctx, initializer=one_thread)


def one_thread() -> None:
    """In a worker process (one per core): Arrow decodes on the calling thread; its thread
    pool would compete with the other workers for the cores (measured: a 15% slower pass).
    The worker also ends with its parent (a killed run leaves no workers behind)."""
    die_with_parent()
    pa.set_cpu_count(1)


def _spans(units: list[Unit], workers: int) -> list[list[Unit]]:
    """Contiguous runs of units with about equal rows, at most `workers` of them."""
    total = sum(u.rows for u in units)
    if workers == 1 or total < MIN_ROWS_PARALLEL:
        return [units] if units else []
    spans: list[list[Unit]] = [[]]
    done = 0
    for unit in units:
        if done >= total * len(spans) / workers and len(spans) < workers:
            spans.append([])
        spans[-1].append(unit)
        done += unit.rows
    return [span for span in spans if span]


def _add(result: Partitions, got: Partitions, progress: Progress = None) -> None:
    result.counts.merge(got.counts)
    result.rejected.extend(got.rejected)
    if progress:
        progress(got.counts.read)


def _pass(
    source: Source,
    units: Sequence[Unit],
    out_dir: Path,
    n_partitions: int,
    progress: Progress = None,
) -> Partitions:
    """Read the units' batches and append their accepted rows to partition files."""
    batches = (batch for unit in units for batch in source.read(unit))
    return _write(batches, 0, out_dir, n_partitions, progress)


def _write(
    batches: Iterable[Batch],
    first_file: int,
    out_dir: Path,
    n_partitions: int,
    progress: Progress = None,
) -> Partitions:
    writer = _Writer(out_dir, n_partitions)
    result = Partitions([], [])
    try:
        for batch in batches:
            result.counts.add(batch)
            result.rejected.append(batch.rejected)
            writer.write(batch, first_file + batch.file)
            if progress:
                progress(batch.read)
    finally:
        writer.close()
    return result


def _dictionary(column: pa.ChunkedArray) -> pa.ChunkedArray:
    if pa.types.is_dictionary(column.type):
        return column.cast(_TEXT)
    return pc.dictionary_encode(column.cast(pa.string()))


def read_partition(
    paths: Sequence[Path], files: Sequence[str]
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(telemetry, quarantine) of one partition (its files in input order): duplicates of an
    earlier row are quarantined."""
    tables = []
    for path in paths:
        with pa.memory_map(str(path)) as source:
            tables.append(pa.ipc.open_file(source).read_all())
    # text as categoricals: the factorizing, duplicate search and row selection that follow
    # work on integer codes
    frame = pa.concat_tables(tables).unify_dictionaries().to_pandas()
    dup = duplicates(frame, TELEMETRY.key)
    rejected = quarantine.empty()
    if dup.any():
        origin = frame.loc[dup, list(_ORIGIN)].to_numpy()
        rejected = duplicate_rows(frame[dup], origin, files, TELEMETRY, TELEMETRY.name)
        frame = frame[~dup]
    return frame.drop(columns=list(_ORIGIN)).reset_index(drop=True), rejected
