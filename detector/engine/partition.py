"""The partition pass: telemetry -> tenant-hash partitions on disk, in bounded memory.

Parquet inputs (a file, a folder, hive partitions such as `day=2026-10-05/tenant_id=t001/`) are
streamed batch by batch (pyarrow `ParquetFile.iter_batches`, row-group spans in parallel
processes); every batch is validated exactly as `read_table` validates a file, and its accepted
rows are appended to the partition of their tenant. Other
formats (CSV, JSON Lines, exporter text, a live Prometheus) are read whole by `read_table` and
then partitioned the same way. All of a tenant's rows land in one partition, in input order, so
a partition holds complete sessions: a session that crosses a file boundary is cut exactly as
if the data were one table. Duplicates (same key as an earlier row) share a tenant, and so a
partition; they are quarantined when the partition is read (`read_partition`).
"""

from __future__ import annotations

import math
import multiprocessing
from collections.abc import Callable, Collection, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from .. import quarantine
from ..errors import InputError
from ..ingest import expand
from ..ingest.readers import _arrow_to_pandas
from ..ingest.validate import check_columns, raw_json, validate, validate_arrow
from ..schema import FLOAT, STRING, TELEMETRY, TIMESTAMP
from ..timeutil import epoch_ns
from .scratch import die_with_parent

BATCH_ROWS = 1 << 18  # rows decoded and validated at a time (no more are read ahead)
MIN_ROWS_PARALLEL = 1 << 22  # smaller inputs are not worth starting processes for
SPANS_PER_WORKER = 4  # spans per pass worker: progress, and balance
ROWS_PER_PARTITION = 1 << 18  # default partition size: two in work at once (one per core)
_ORIGIN = ("_file", "_row")  # where an accepted row came from, for duplicate quarantine
LOADED = "(telemetry read whole: CSV, JSON, exporter text or Prometheus)"  # _file -1
# Partition files are uncompressed Arrow IPC: written and read back much faster than Parquet
# (or LZ4-compressed IPC, which cost a third of the pass), and they only live for one run
# (~85 bytes a row on disk). Text is dictionary-encoded with one growing dictionary per
# column and pass worker (written as deltas), so rows are moved as integer codes.
_IPC = pa.ipc.IpcWriteOptions(compression=None, emit_dictionary_deltas=True)
_TEXT = pa.dictionary(pa.int32(), pa.string())
_ARROW_THREADS = True  # False in worker processes (`one_thread`)
_TEXT_COLUMNS = [c.name for c in TELEMETRY.columns if c.kind == STRING]


def arrow_schema(float32: Collection[str] = ()) -> pa.Schema:
    """The on-disk schema of a partition: the canonical telemetry columns, then the origin.
    Columns in `float32` hold only float32 values (every input stores them so) and are kept
    so on disk (half the bytes); they are float64 again when read."""
    kinds = {TIMESTAMP: pa.timestamp("ns", tz="UTC"), FLOAT: pa.float64(), STRING: _TEXT}
    fields = [
        pa.field(c.name, pa.float32() if c.name in float32 else kinds[c.kind])
        for c in TELEMETRY.columns
    ]
    return pa.schema([*fields, pa.field("_file", pa.int32()), pa.field("_row", pa.int64())])


@dataclass
class Partitions:
    """Partition files (per non-empty partition, one per span) and what happened to every row
    read."""

    paths: list[tuple[Path, ...]]  # per partition: its files, in input order
    files: list[str]  # input file names, indexed by `_file`
    rows_read: int = 0
    rows_accepted: int = 0  # streamed rows, before duplicates (per partition)
    rows_out_of_window: int = 0
    rejected: list[pd.DataFrame] = field(default_factory=list)

    @property
    def quarantine(self) -> pd.DataFrame:
        return quarantine.combine(self.rejected)


def partition_of(tenant: pd.Series, n_partitions: int) -> np.ndarray:
    """Stable partition number of each tenant id (the same in every process and run)."""
    codes, names = pd.factorize(tenant)
    return _hash_partition(names, n_partitions)[codes]


def _hash_partition(names: np.ndarray, n_partitions: int) -> np.ndarray:
    hashed = pd.util.hash_array(np.asarray(names, dtype=str).astype(object))
    return (hashed % np.uint64(n_partitions)).astype(np.int64)


def streamable(paths: Sequence[Path], fmt: str) -> bool:
    """True when every input is plain (not gzip) Parquet, which the pass streams."""
    return (
        bool(paths)
        and fmt in ("auto", "parquet")
        and all(f.fmt == "parquet" and not f.gzip for f in expand(paths, fmt))
    )


def count_rows(paths: Sequence[Path]) -> int:
    """Rows in Parquet inputs, from their footers."""
    return sum(pq.ParquetFile(f.path).metadata.num_rows for f in expand(paths, "parquet"))


def auto_partitions(rows: int) -> int:
    return max(1, math.ceil(rows / ROWS_PER_PARTITION))


class _Writer:
    """Appends accepted rows to the partition files of their tenants."""

    def __init__(self, out_dir: Path, n_partitions: int, schema: pa.Schema) -> None:
        self.out_dir, self.n = Path(out_dir), n_partitions
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.schema = schema
        self.writers: dict[int, pa.ipc.RecordBatchFileWriter] = {}
        # "" first: a file's first dictionary is never empty, so later values are deltas
        # (Arrow takes an empty first dictionary followed by values for a replacement)
        self.codes: dict[str, dict[str, int]] = {name: {"": 0} for name in _TEXT_COLUMNS}
        self.values: dict[str, pa.Array] = {}
        self.tenant_part = np.zeros(0, dtype=np.int64)  # partition per tenant code

    def write(self, table: pa.Table) -> None:
        """Append `table` (the partition schema) to the files of its tenants' partitions."""
        if not table.num_rows:
            return
        table = pa.Table.from_arrays(
            [
                self._recode(name, table.column(name))
                if name in self.codes
                else table.column(name).combine_chunks()
                for name in self.schema.names
            ],
            schema=self.schema,
        )
        names = self.codes["tenant_id"]
        if len(names) > len(self.tenant_part):
            new = np.asarray(list(names)[len(self.tenant_part) :], dtype=object)
            self.tenant_part = np.r_[self.tenant_part, _hash_partition(new, self.n)]
        part = self.tenant_part[table.column("tenant_id").combine_chunks().indices.to_numpy()]
        part = part.astype(np.int16) if self.n < 1 << 15 else part  # int16: a radix sort
        order = np.argsort(part, kind="stable")
        table, part = table.take(order), part[order]
        starts = np.r_[0, np.flatnonzero(np.diff(part)) + 1]
        for start, stop in zip(starts, np.r_[starts[1:], len(part)], strict=True):
            p = int(part[start])
            if p not in self.writers:
                self.writers[p] = pa.ipc.new_file(self.path(p), self.schema, options=_IPC)
            self.writers[p].write_table(table.slice(start, stop - start))

    def _recode(self, name: str, column: pa.ChunkedArray) -> pa.DictionaryArray:
        """A dictionary column in terms of this writer's dictionary of `name` (grown as new
        values come: earlier codes never change, so each file gets dictionary deltas)."""
        codes, parts = self.codes[name], []
        for chunk in column.chunks:
            mapping = np.array(
                [codes.setdefault(v, len(codes)) for v in chunk.dictionary.to_pylist()] or [0],
                dtype=np.int32,
            )
            if np.array_equal(mapping, np.arange(len(mapping))):  # same codes: keep them
                parts.append(chunk.indices.cast(pa.int32()))
            else:
                index = mapping[chunk.indices.fill_null(0).to_numpy()]
                parts.append(
                    pa.array(
                        index,
                        mask=chunk.is_null().to_numpy(zero_copy_only=False)
                        if chunk.null_count
                        else None,
                    )
                )
        if name not in self.values or len(self.values[name]) < len(codes):
            self.values[name] = pa.array(list(codes), pa.string())
        index = parts[0] if len(parts) == 1 else pa.concat_arrays(parts)
        return pa.DictionaryArray.from_arrays(index, self.values[name])

    def path(self, p: int) -> Path:
        return self.out_dir / f"part-{p:05d}.arrow"

    def close(self) -> None:
        for writer in self.writers.values():
            writer.close()


@dataclass(frozen=True)
class _Unit:
    """Row groups of one input file, read by one pass worker."""

    file: int  # index into Partitions.files
    path: Path
    name: str
    row_groups: tuple[int, ...]
    first_row: int  # 1-based row number of the first row, within its file
    rows: int


def partition_telemetry(
    paths: Sequence[Path],
    out_dir: Path,
    n_partitions: int,
    *,
    fmt: str = "auto",
    since: pd.Timestamp | None = None,
    until: pd.Timestamp | None = None,
    loaded: Sequence[pd.DataFrame] = (),
    workers: int = 1,
    progress: Callable[[int], None] | None = None,
) -> Partitions:
    """Stream `paths` (Parquet) and already validated tables (`loaded`) into partitions.

    With `workers` > 1 the row groups are split into contiguous spans, each read by one of
    `workers` processes into its own files; a partition is then the spans' files in input
    order. `progress` is called with the number of rows read (per batch, or per span).
    """
    files = expand(paths, fmt) if paths else []
    units = _units(files)
    schema = arrow_schema(() if loaded else _float32_columns(files))
    workers = max(1, workers)
    spans = _spans(units, 1 if workers == 1 else workers * SPANS_PER_WORKER)
    result = Partitions([], [f.name for f in files])
    out_dir = Path(out_dir)
    if len(spans) > 1:
        # fork: workers share the parent's imported modules (spawn would re-import the whole
        # CLI, ~250 MB, in each); Arrow re-creates its thread pools in a forked child.
        ctx = multiprocessing.get_context(
            "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
        )
        with ProcessPoolExecutor(
            min(workers, len(spans)), mp_context=ctx, initializer=one_thread
        ) as pool:
            futures = [
                pool.submit(_pass, span, out_dir / f"w{i:03d}", n_partitions, schema, since, until)
                for i, span in enumerate(spans)
            ]
            for future in futures:
                _add(result, future.result(), progress)
    elif spans:
        _add(
            result,
            _pass(spans[0], out_dir / "w000", n_partitions, schema, since, until, progress),
            None,
        )
    writer = _Writer(out_dir / "loaded", n_partitions, schema)
    for table in loaded:
        writer.write(_to_arrow(table, np.zeros(len(table), dtype=np.int64), -1, schema))
    writer.close()
    parts: dict[str, list[Path]] = {}
    for path in sorted(out_dir.glob("*/part-*.arrow")):  # spans in order, then `loaded`
        parts.setdefault(path.name, []).append(path)
    result.paths = [tuple(parts[name]) for name in sorted(parts)]
    return result


def _float32_columns(files: Sequence) -> list[str]:
    """Float columns that every Parquet input stores as float32 (or lacks)."""
    names = {c.name for c in TELEMETRY.columns if c.kind == FLOAT}
    for file in files:
        try:
            schema = pq.read_schema(file.path)
        except (pa.ArrowException, OSError) as exc:
            raise InputError(f"cannot read Parquet: {exc}", path=file.name) from exc
        names -= {f.name for f in schema if f.name in names and f.type != pa.float32()}
    return sorted(names)


def one_thread() -> None:
    """In a worker process (one per core): Arrow decodes on the calling thread; its thread
    pool would compete with the other workers for the cores (measured: a 15% slower pass).
    The worker also ends with its parent (a killed run leaves no workers behind)."""
    die_with_parent()
    global _ARROW_THREADS
    _ARROW_THREADS = False
    pa.set_cpu_count(1)


def _units(files: Sequence) -> list[_Unit]:
    units = []
    for index, file in enumerate(files):
        try:
            meta = pq.ParquetFile(file.path).metadata
        except (pa.ArrowException, OSError) as exc:
            raise InputError(f"cannot read Parquet: {exc}", path=file.name) from exc
        row = 1
        for g in range(meta.num_row_groups):
            n = meta.row_group(g).num_rows
            units.append(_Unit(index, file.path, file.name, (g,), row, n))
            row += n
    return units


def _spans(units: list[_Unit], workers: int) -> list[list[_Unit]]:
    """Contiguous runs of units with about equal rows, at most `workers` of them."""
    total = sum(u.rows for u in units)
    if workers == 1 or total < MIN_ROWS_PARALLEL:
        return [units] if units else []
    spans: list[list[_Unit]] = [[]]
    done = 0
    for unit in units:
        if done >= total * len(spans) / workers and len(spans) < workers:
            spans.append([])
        spans[-1].append(unit)
        done += unit.rows
    return [span for span in spans if span]


def _add(result: Partitions, got: Partitions, progress: Callable[[int], None] | None) -> None:
    result.rows_read += got.rows_read
    result.rows_accepted += got.rows_accepted
    result.rows_out_of_window += got.rows_out_of_window
    result.rejected.extend(got.rejected)
    if progress:
        progress(got.rows_read)


def _pass(
    units: Sequence[_Unit],
    out_dir: Path,
    n_partitions: int,
    schema: pa.Schema,
    since: pd.Timestamp | None,
    until: pd.Timestamp | None,
    progress: Callable[[int], None] | None = None,
) -> Partitions:
    """Validate the units' rows and append the accepted ones to partition files in `out_dir`."""
    writer = _Writer(out_dir, n_partitions, schema)
    result = Partitions([], [])
    try:
        for unit in units:
            for accepted, rejected, n in _validated_batches(unit, schema):
                result.rows_read += n
                result.rejected.append(rejected)
                keep = ~_outside(accepted.column("timestamp"), since, until)
                if not keep.all():
                    result.rows_out_of_window += int((~keep).sum())
                    accepted = accepted.filter(keep)
                result.rows_accepted += accepted.num_rows
                writer.write(accepted)
                if progress:
                    progress(n)
    finally:
        writer.close()
    return result


def _validated_batches(
    unit: _Unit, schema: pa.Schema
) -> Iterator[tuple[pa.Table, pd.DataFrame, int]]:
    """(accepted rows in the partition schema, quarantine, rows read) per batch of a unit;
    hive keys become columns.

    Columns that already have the canonical Arrow type are checked in Arrow
    (`validate_arrow`); only the rows that fail there, or every row of a batch with other
    types, go through pandas `validate`, which gives the reasons.
    """
    try:
        stored = pq.read_schema(str(unit.path))
        pfile = pq.ParquetFile(
            str(unit.path),
            read_dictionary=[  # text as codes from the start
                f.name for f in stored if f.name in _TEXT_COLUMNS and pa.types.is_string(f.type)
            ],
        )
        names = pfile.schema_arrow.names
        keys = {k: v for k, v in hive_keys(unit.path).items() if k not in names}
        present = check_columns(TELEMETRY, [*names, *keys], unit.name)
        columns = [c for c in present if c not in keys]
        row = unit.first_row
        for batch in pfile.iter_batches(
            batch_size=BATCH_ROWS,
            row_groups=list(unit.row_groups),
            columns=columns,
            use_threads=_ARROW_THREADS,
        ):
            table = pa.Table.from_batches([batch])
            for key, value in keys.items():
                table = table.append_column(
                    key, pa.array(np.full(len(table), value, object), pa.string())
                )
            rows = np.arange(row, row + len(table))
            row += len(table)
            yield *_validated(table, rows, unit, schema), len(table)
    except (pa.ArrowException, OSError) as exc:
        raise InputError(f"cannot read Parquet: {exc}", path=unit.name) from exc


def _validated(
    table: pa.Table, rows: np.ndarray, unit: _Unit, schema: pa.Schema
) -> tuple[pa.Table, pd.DataFrame]:
    """(accepted rows in input order, quarantine) of one batch."""
    fast = validate_arrow(table, TELEMETRY)
    if fast is None:
        typed, ok, rejected = validate(
            _arrow_to_pandas(table, TELEMETRY),
            rows,
            TELEMETRY,
            source=TELEMETRY.name,
            file=unit.name,
        )
        return _to_arrow(typed[ok], rows[ok], unit.file, schema), rejected
    typed, ok = fast
    if ok.all():
        return _with_origin(typed, rows, unit.file, schema), quarantine.empty()
    accepted = _with_origin(typed.filter(ok), rows[ok], unit.file, schema)
    rest = ~ok
    typed, ok, rejected = validate(
        _arrow_to_pandas(table.filter(rest), TELEMETRY),
        rows[rest],
        TELEMETRY,
        source=TELEMETRY.name,
        file=unit.name,
    )
    if ok.any():  # the general path accepts what the fast one did not: keep input order
        both = (
            pa.concat_tables([accepted, _to_arrow(typed[ok], rows[rest][ok], unit.file, schema)])
            .unify_dictionaries()
            .combine_chunks()
        )
        accepted = both.take(np.argsort(both.column("_row").to_numpy(), kind="stable"))
    return accepted, rejected


def _with_origin(typed: pa.Table, rows: np.ndarray, file: int, schema: pa.Schema) -> pa.Table:
    """Typed canonical columns plus `_file` and `_row`, in the partition schema (text
    dictionary-encoded)."""
    columns = [
        _dictionary(typed.column(n))
        if n in _TEXT_COLUMNS
        else typed.column(n).cast(schema.field(n).type)
        for n in TELEMETRY.names
    ]
    origin = [pa.array(np.full(len(rows), file, dtype=np.int32)), pa.array(rows, pa.int64())]
    return pa.Table.from_arrays([*columns, *origin], schema=schema)


def _dictionary(column: pa.ChunkedArray) -> pa.ChunkedArray:
    if pa.types.is_dictionary(column.type):
        return column.cast(_TEXT)
    return pc.dictionary_encode(column.cast(pa.string()))


def _to_arrow(typed: pd.DataFrame, rows: np.ndarray, file: int, schema: pa.Schema) -> pa.Table:
    """Validated pandas rows in the partition schema."""
    plain = pa.Table.from_pandas(
        typed[TELEMETRY.names],
        preserve_index=False,
        schema=pa.schema(
            [
                pa.field(f.name, pa.string() if f.type == _TEXT else f.type)
                for f in arrow_schema()
                if f.name in TELEMETRY.names
            ]
        ),
    )
    return _with_origin(plain, rows, file, schema)


def hive_keys(path: Path) -> dict[str, str]:
    """Schema columns given by the `column=value` folders of a hive-partitioned path."""
    pairs = (part.split("=", 1) for part in path.parent.parts if "=" in part)
    return {key: unquote(value) for key, value in pairs if key in TELEMETRY.names}


def _outside(
    ts: pa.ChunkedArray, since: pd.Timestamp | None, until: pd.Timestamp | None
) -> np.ndarray:
    """Accepted timestamps (ns UTC, no nulls) before `since` or from `until` on."""
    ns = ts.combine_chunks().view(pa.int64()).to_numpy()
    outside = np.zeros(len(ns), dtype=bool)
    if since is not None:
        outside |= ns < _utc(since).as_unit("ns").value
    if until is not None:
        outside |= ns >= _utc(until).as_unit("ns").value
    return outside


def _utc(value: pd.Timestamp) -> pd.Timestamp:
    value = pd.Timestamp(value)
    return value.tz_localize("UTC") if value.tzinfo is None else value.tz_convert("UTC")


def duplicates(frame: pd.DataFrame) -> np.ndarray:
    """Mask of rows whose key repeats an earlier row's, as `DataFrame.duplicated(keep="first")`.

    A 64-bit hash of each row's key (category codes and nanoseconds) is sorted first: when no
    two hashes are equal, no two keys are (the usual case); otherwise pandas decides."""
    hashed = np.zeros(len(frame), dtype=np.uint64)
    for name in TELEMETRY.key:
        column = frame[name]
        if isinstance(column.dtype, pd.CategoricalDtype):
            codes = column.cat.codes.to_numpy()
        elif name == "timestamp":
            codes = epoch_ns(column)
        else:
            codes = pd.factorize(column)[0]
        hashed = hashed * np.uint64(0x9E3779B97F4A7C15) + codes.astype(np.uint64)
    ordered = np.sort(hashed)
    if not (ordered[1:] == ordered[:-1]).any():
        return np.zeros(len(frame), dtype=bool)
    return frame.duplicated(subset=list(TELEMETRY.key), keep="first").to_numpy()


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
    table = pa.concat_tables(tables).unify_dictionaries()
    for i, kind in enumerate(table.schema.types):
        if kind == pa.float32():  # float32 on disk (see arrow_schema): float64 in memory
            table = table.set_column(i, table.field(i).name, table.column(i).cast(pa.float64()))
    frame = table.to_pandas()
    dup = duplicates(frame)
    parts = []
    if dup.any():
        dups = frame[dup]
        for index, group in dups.groupby("_file", sort=True):
            name = files[index] if index >= 0 else LOADED
            mask = np.ones(len(group), dtype=bool)
            parts.append(
                quarantine.rejected(
                    TELEMETRY.name,
                    name,
                    group["_row"],
                    "duplicate",
                    column=",".join(TELEMETRY.key),
                    raw=raw_json(group[TELEMETRY.names], mask),
                )
            )
        frame = frame[~dup]
    telemetry = frame.drop(columns=list(_ORIGIN)).reset_index(drop=True)
    return telemetry, quarantine.combine(parts)
