"""CSV, JSON Lines and JSON: one file -> the schema's columns it holds, values as read.

Rows the parser cannot read are quarantine rows; a file that cannot be read at all raises
`InputError`, one without a required column `SchemaError`. Parquet is streamed by `batches.py`.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from functools import partial
from itertools import compress

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv

from .. import quarantine
from ..errors import InputError
from ..schema import TableSchema
from . import jsonl
from .files import InputFile, read_bytes, read_head
from .options import SourceOptions
from .text import NOT_UTF8, RAW_LIMIT, is_utf8, objects
from .validate import arrow_to_pandas, check_columns

# Cell texts that mean "no value" in CSV. Not pandas' long list: "NA" is Namibia's country code.
CSV_NULLS = ["", "null", "NULL", "NaN", "nan"]
WRONG_FIELDS = "malformed row: wrong number of fields"
_HEADER_LIMIT = 1 << 20  # bytes: a header line longer than this is not a CSV header


@dataclass
class RawFile:
    """What a reader got from one file, before typing and validation."""

    file: InputFile
    frame: pd.DataFrame  # the schema's columns present in the file, values as read
    rows: np.ndarray  # 1-based data row of each frame row (JSON Lines: the line number)
    rejected: pd.DataFrame  # rows the parser could not read (detector.quarantine.COLUMNS)
    merge_on: tuple[str, ...] = ()  # long-layout files: merge rows with this key across files


# --- CSV -----------------------------------------------------------------------------------
# pyarrow.csv rather than pandas: multi-threaded C++ parsing, every column read as text (so a
# bad cell becomes a quarantine row, not a failed type inference), and a handler for rows with
# the wrong number of fields that pandas offers only in its slow Python engine.


def read_csv(file: InputFile, schema: TableSchema, source: str, options: SourceOptions) -> RawFile:
    header = csv_header(file)
    present = check_columns(schema, header, file.name)
    return RawFile(file, *csv_rows(file, header, present, source))


def csv_rows(
    file: InputFile, header: list[str], columns: list[str], source: str
) -> tuple[pd.DataFrame, np.ndarray, pd.DataFrame]:
    """Read `columns` of a CSV as text: the frame, each row's data row number, rejected rows."""
    data, kept, not_utf8 = _utf8_lines(read_bytes(file), file, source)
    table, bad_rows = _parse_csv(file, data, header, columns, threads=True)
    if bad_rows:  # the threaded parse cannot say where bad rows are: read again, serially
        table, bad_rows = _parse_csv(file, data, header, columns, threads=False)
    frame = table.to_pandas()
    bad = np.array([number - 1 for number, _ in bad_rows], dtype=np.int64)
    rows = np.arange(1, len(frame) + len(bad) + 1)
    rows = rows[~np.isin(rows, bad)]
    if kept is not None:  # rows of the cleaned text -> rows of the file
        rows, bad = kept[rows - 1], kept[bad - 1]
    raw = [json.dumps(text[:RAW_LIMIT]) for _, text in bad_rows]
    rejected = quarantine.rejected(source, file.name, bad, WRONG_FIELDS, raw=raw)
    return frame, rows, quarantine.combine([not_utf8, rejected])


def _utf8_lines(
    data: bytes, file: InputFile, source: str
) -> tuple[bytes, np.ndarray | None, pd.DataFrame]:
    """Drop the data lines that are not UTF-8 (pyarrow cannot even report them): the text to
    parse, the file's data row of each kept row (None: nothing dropped), quarantine rows."""
    if is_utf8(data):
        return data, None, quarantine.empty()
    lines = data.splitlines()  # rare: the offending lines, split at \r too as pyarrow does
    dropped = np.array([not is_utf8(line) for line in lines], dtype=bool)
    dropped[0] = False  # the header decoded already (csv_header)
    rows = np.arange(len(lines))  # data row numbers: the header is row 0
    raw = [json.dumps(b.decode("utf-8", "replace")[:RAW_LIMIT]) for b in compress(lines, dropped)]
    rejected = quarantine.rejected(source, file.name, rows[dropped], NOT_UTF8, raw=raw)
    return b"\n".join(compress(lines, ~dropped)), rows[~dropped][1:], rejected


def csv_header(file: InputFile) -> list[str]:
    line = read_head(file, _HEADER_LIMIT).split(b"\n", 1)[0]
    try:
        header = next(csv.reader([line.decode("utf-8-sig")]), None)
    except UnicodeDecodeError as exc:
        raise InputError(
            "not UTF-8 text: cannot read the CSV header", path=file.name, row=0
        ) from exc
    except csv.Error as exc:
        raise InputError(f"not a CSV file: {exc}", path=file.name) from exc
    if not header or not any(h.strip() for h in header):
        raise InputError("empty CSV file: no header row", path=file.name)
    return [h.strip() for h in header]


def _parse_csv(
    file: InputFile, data: bytes, header: list[str], present: list[str], *, threads: bool
) -> tuple[pa.Table, list[tuple[int, str]]]:
    bad: list[tuple[int, str]] = []

    def on_bad_row(row: pacsv.InvalidRow) -> str:
        bad.append((row.number or 0, row.text))
        return "skip"

    try:
        table = pacsv.read_csv(
            pa.BufferReader(data),
            read_options=pacsv.ReadOptions(column_names=header, skip_rows=1, use_threads=threads),
            parse_options=pacsv.ParseOptions(
                newlines_in_values=True, invalid_row_handler=on_bad_row
            ),
            convert_options=pacsv.ConvertOptions(
                include_columns=present,
                column_types={n: pa.string() for n in present},
                null_values=CSV_NULLS,
                strings_can_be_null=True,
                quoted_strings_can_be_null=True,
            ),
        )
    except (pa.ArrowException, OSError) as exc:
        raise InputError(f"cannot read CSV: {exc}", path=file.name) from exc
    return table, bad


# --- JSON Lines and JSON -------------------------------------------------------------------


def read_jsonl(
    file: InputFile, schema: TableSchema, source: str, options: SourceOptions
) -> RawFile:
    return _parse_jsonl(read_bytes(file), file, schema, source)


def _parse_jsonl(data: bytes, file: InputFile, schema: TableSchema, source: str) -> RawFile:
    convert = partial(arrow_to_pandas, schema=schema)
    parsed = jsonl.Parser(data, convert, schema.names, file.limits).run()
    if parsed.bad and not len(parsed.frame):
        raise InputError("no line is a valid JSON object", path=file.name, row=parsed.bad[0][0])
    present = check_columns(schema, parsed.frame.columns, file.name) if len(parsed.frame) else []
    rejected = quarantine.empty()
    if parsed.bad:
        lines, reasons, raws = zip(*parsed.bad, strict=True)
        rejected = quarantine.rejected(source, file.name, lines, reasons, raw=raws)
    return RawFile(file, parsed.frame[present], parsed.rows, rejected)


def read_json(file: InputFile, schema: TableSchema, source: str, options: SourceOptions) -> RawFile:
    """A JSON array of objects, or an object holding one such array (CloudTrail's
    {"Records": [...]}); a file of one object per line is read as JSON Lines."""
    data = read_bytes(file)
    try:
        doc = json.loads(data)
    except UnicodeDecodeError as exc:
        raise InputError("not UTF-8 text", path=file.name) from exc
    except RecursionError as exc:
        raise InputError("JSON nested too deep", path=file.name) from exc
    except json.JSONDecodeError as exc:
        if exc.msg == "Extra data":
            return _parse_jsonl(data, file, schema, source)
        raise InputError(
            f"invalid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})", path=file.name
        ) from exc
    if isinstance(doc, dict):
        arrays = [v for v in doc.values() if isinstance(v, list)]
        doc = arrays[0] if len(arrays) == 1 else doc
    if not isinstance(doc, list):
        raise InputError(
            "expected an array of objects or an object holding one array", path=file.name
        )
    records, rows, rejected = objects(doc, source, file.name)
    frame = pd.DataFrame()
    if records:
        present = check_columns(schema, set().union(*records), file.name)
        frame = pd.DataFrame.from_records(records, columns=present)
    return RawFile(file, frame, rows, rejected)
