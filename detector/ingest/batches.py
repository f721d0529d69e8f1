"""The one ingest path: every input, whatever its format, becomes validated Arrow batches.

`open_source` names a table's files with their formats; `Source.units` cuts them into units
(Parquet row groups, other files whole) and `Source.read` yields the `Batch`es of a unit: every
row passes `validate.validated` and every count goes into one `Counts` (DESIGN-NOTES "Ingest:
one path").
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote

import numpy as np
import pandas as pd
import pyarrow as pa

from ..schema import STRING, TableSchema
from ..timeutil import utc
from .files import InputFile, expand, open_parquet, parquet_errors
from .formats import read_any, resolve
from .nvml import merge_long
from .options import SourceOptions
from .readers import RawFile
from .validate import arrow_schema, check_columns, validated

BATCH_ROWS = 1 << 18  # rows decoded and validated at a time (no more are read ahead)
BYTES_PER_ROW = 100  # to guess the rows of a text file from its size (gzip: x GZIP_RATIO)
GZIP_RATIO = 8
WINDOW_COLUMN = "timestamp"  # since/until apply to tables that have it (telemetry, access)


@dataclass
class Batch:
    """Validated rows of one piece of one input file."""

    file: int  # index into Source.files
    table: pa.Table  # accepted rows: the schema's columns, canonical types
    rows: np.ndarray  # 1-based row (or line) of each accepted row in its file
    rejected: pd.DataFrame  # quarantine rows (detector.quarantine.COLUMNS)
    read: int  # rows read: accepted + quarantined + out of window
    out_of_window: int = 0


@dataclass
class Counts:
    """What happened to every row read: read == accepted + quarantined + out_of_window."""

    read: int = 0
    accepted: int = 0
    quarantined: int = 0
    out_of_window: int = 0

    def add(self, batch: Batch) -> None:
        rejected, out = len(batch.rejected), batch.out_of_window
        self.merge(Counts(batch.read, batch.table.num_rows, rejected, out))

    def merge(self, other: Counts) -> None:
        for name in ("read", "accepted", "quarantined", "out_of_window"):
            setattr(self, name, getattr(self, name) + getattr(other, name))

    def demote(self, rows: int) -> None:
        """`rows` accepted rows turn out to be duplicates: quarantined instead."""
        self.accepted -= rows
        self.quarantined += rows

    def check(self) -> Counts:
        if self.read != self.accepted + self.quarantined + self.out_of_window:
            raise RuntimeError(f"ingest lost or invented rows: {self}")
        return self


@dataclass(frozen=True)
class Unit:
    """A piece of input one process reads: some row groups of a Parquet file, or files read
    whole (NVML long-layout files, whose rows merge across files, come as one unit)."""

    files: tuple[int, ...]  # indices into Source.files
    row_groups: tuple[int, ...] | None = None  # Parquet: these row groups (None: every one)
    first_row: int = 1
    rows: int = 0  # rows (Parquet footer) or a guess from the file size


@dataclass(frozen=True)
class Source:
    """One table's input files and how to read them."""

    schema: TableSchema
    files: tuple[InputFile, ...]
    name: str  # the quarantine's `source`
    options: SourceOptions = field(default_factory=SourceOptions)
    since: pd.Timestamp | None = None
    until: pd.Timestamp | None = None

    @property
    def names(self) -> list[str]:
        return [f.name for f in self.files]

    def units(self) -> list[Unit]:
        """The units to read, in input order; Parquet footers and columns are checked here,
        before any row is read."""
        units: list[Unit] = []
        long = tuple(i for i, f in enumerate(self.files) if f.fmt == "nvml")
        for index, file in enumerate(self.files):
            if file.fmt == "parquet":
                units.extend(self._parquet_units(index, file))
            elif file.fmt != "nvml" or index == long[0]:
                group = long if file.fmt == "nvml" else (index,)
                units.append(Unit(group, rows=sum(_guess_rows(self.files[i]) for i in group)))
        return units

    def read(self, unit: Unit) -> Iterator[Batch]:
        """The validated batches of one unit, in input order."""
        if self.files[unit.files[0]].fmt == "parquet":
            yield from self._parquet(unit)
            return
        raws = [read_any(self.files[i], self.schema, self.name, self.options) for i in unit.files]
        for index, raw in zip(unit.files, merge_long(raws), strict=True):
            yield from self.raw_batches(raw, index)

    def raw_batches(self, raw: RawFile, index: int) -> Iterator[Batch]:
        """What a reader got from one file (or query), validated in bounded chunks."""
        if len(raw.rejected):
            empty = arrow_schema(self.schema).empty_table()
            yield Batch(index, empty, np.zeros(0, np.int64), raw.rejected, len(raw.rejected))
        for start in range(0, len(raw.frame), BATCH_ROWS):
            stop = start + BATCH_ROWS
            yield self._batch(index, raw.frame.iloc[start:stop], raw.rows[start:stop])

    def _batch(self, index: int, values: pa.Table | pd.DataFrame, rows: np.ndarray) -> Batch:
        file = self.files[index].name
        table, kept, rejected = validated(values, rows, self.schema, source=self.name, file=file)
        outside = self._outside(table)
        if outside.any():
            table, kept = table.filter(~outside), kept[~outside]
        return Batch(index, table, kept, rejected, len(rows), int(outside.sum()))

    def _outside(self, table: pa.Table) -> np.ndarray:
        """Accepted rows before `since` or from `until` on."""
        if WINDOW_COLUMN not in self.schema.names or (self.since is None and self.until is None):
            return np.zeros(table.num_rows, dtype=bool)
        ns = table.column(WINDOW_COLUMN).combine_chunks().view(pa.int64()).to_numpy()
        since = -np.inf if self.since is None else self.since.as_unit("ns").value
        until = np.inf if self.until is None else self.until.as_unit("ns").value
        return (ns < since) | (ns >= until)

    def _parquet_units(self, index: int, file: InputFile) -> list[Unit]:
        with parquet_errors(file):
            pfile = open_parquet(file)
            keys = hive_keys(file.path, self.schema)
            check_columns(self.schema, [*pfile.schema_arrow.names, *keys], file.name)
            if file.gzip:
                return [Unit((index,), rows=pfile.metadata.num_rows)]
            units, row = [], 1
            for group in range(pfile.metadata.num_row_groups):
                n = pfile.metadata.row_group(group).num_rows
                units.append(Unit((index,), (group,), row, n))
                row += n
            return units

    def _parquet(self, unit: Unit) -> Iterator[Batch]:
        index = unit.files[0]
        file = self.files[index]
        with parquet_errors(file):
            pfile = open_parquet(file, [c.name for c in self.schema.columns if c.kind == STRING])
            names = pfile.schema_arrow.names
            keys = {k: v for k, v in hive_keys(file.path, self.schema).items() if k not in names}
            columns = [c for c in self.schema.names if c in names]
            row = unit.first_row
            for batch in pfile.iter_batches(
                batch_size=BATCH_ROWS,
                row_groups=unit.row_groups,
                columns=columns,
                use_threads=pa.cpu_count() > 1,
            ):
                table = pa.Table.from_batches([batch])
                for key, value in keys.items():
                    table = table.append_column(key, pa.array([value] * len(table), pa.string()))
                yield self._batch(index, table, np.arange(row, row + len(table)))
                row += len(table)


def _guess_rows(file: InputFile) -> int:
    try:
        size = file.path.stat().st_size
    except OSError:
        return 0
    return size * (GZIP_RATIO if file.gzip else 1) // BYTES_PER_ROW


def hive_keys(path: Path, schema: TableSchema) -> dict[str, str]:
    """Schema columns given by the `column=value` folders of a hive-partitioned path."""
    pairs = (part.split("=", 1) for part in path.parent.parts if "=" in part)
    return {key: unquote(value) for key, value in pairs if key in schema.names}


def open_source(
    paths: Sequence[str | Path] | str | Path,
    schema: TableSchema,
    *,
    source: str | None = None,
    fmt: str = "auto",
    since: pd.Timestamp | None = None,
    until: pd.Timestamp | None = None,
    options: SourceOptions | None = None,
) -> Source:
    """The files of `paths` (files or folders), each with its format (`fmt="auto"`: the
    extension, then the content; foreign formats are mapped onto `schema` as `options` say)."""
    options = options or SourceOptions()
    name = source or schema.name
    files = tuple(
        resolve(f, schema, options, auto=fmt == "auto") for f in expand(paths, fmt, options.limits)
    )
    return Source(schema, files, name, options, utc(since), utc(until))
