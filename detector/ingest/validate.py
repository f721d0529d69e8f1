"""Row checks against a TableSchema: type every column, and give each bad row one reason.

All checks are vectorised over columns; IP addresses are parsed once per distinct value.
Reasons come from a small fixed vocabulary (see `docs/DESIGN-NOTES.md`), prefixed with the
column they concern, so that they can be counted and used as metric labels.
"""

from __future__ import annotations

import contextlib
import difflib
import ipaddress
import logging
from collections.abc import Collection, Sequence
from functools import lru_cache

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from .. import quarantine
from ..errors import SchemaError
from ..schema import (
    BOOL,
    COUNTRY,
    FLOAT,
    INT,
    IP,
    LABEL_VALUES,
    LABELS,
    STRING,
    TIMESTAMP,
    Column,
    TableSchema,
)
from ..timeutil import epoch_ns

log = logging.getLogger(__name__)
TS_DTYPE = "datetime64[ns, UTC]"
_PANDAS_TYPES = {TIMESTAMP: TS_DTYPE, FLOAT: "float64", INT: "Int64", BOOL: "boolean"}  # else str
_TS_MIN, _TS_MAX = pd.Timestamp.min.tz_localize("UTC"), pd.Timestamp.max.tz_localize("UTC")
_EPOCH_LIMIT = 9.2e9  # seconds: the datetime64[ns] range
_NUMBER = r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?"
_LABEL_IDENTITY = ("tenant_id", "start", "end")
_OCTET = r"(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)"
_IPV4 = rf"{_OCTET}(?:\.{_OCTET}){{3}}"
_TRUE, _FALSE = ("true", "t", "yes", "y", "1"), ("false", "f", "no", "n", "0")
_BOOLEANS = dict.fromkeys(_TRUE, True) | dict.fromkeys(_FALSE, False)


def check_columns(schema: TableSchema, columns: Collection[str], file: str) -> list[str]:
    """The schema's columns among `columns`, in schema order; SchemaError when a required one
    (for labels: session_id, or tenant_id with start and end) is missing or repeated."""
    columns = list(columns)
    for name in schema.names:
        if columns.count(name) > 1:
            raise _schema_error(f"column {name!r} appears more than once", file, name)
    for name in schema.required:
        if name not in columns:
            raise _schema_error(f"missing required column {name!r}", file, name)
    if schema.name == LABELS.name and "session_id" not in columns:
        for name in _LABEL_IDENTITY:
            if name not in columns:
                raise _schema_error(
                    f"missing column 'session_id', or else {name!r} (labels name a session by"
                    " session_id or by tenant_id, start and end)",
                    file,
                    name,
                )
    unknown = [c for c in dict.fromkeys(columns) if c not in schema.names]
    if unknown:
        log.warning(
            "%s: column(s) not in the %s schema, ignored: %s",
            file,
            schema.name,
            ", ".join(_nearest(c, schema.names) for c in unknown),
        )
    return [name for name in schema.names if name in columns]


def _nearest(name: str, names: Sequence[str]) -> str:
    close = difflib.get_close_matches(name, names, n=1, cutoff=0.75)
    return f"{name!r} (did you mean {close[0]!r}?)" if close else repr(name)


def _schema_error(message: str, file: str, column: str) -> SchemaError:
    error = SchemaError(message, path=file)  # the message already names the column
    error.column = column
    return error


def empty_table(schema: TableSchema) -> pd.DataFrame:
    """A table with every column of the schema, typed, and no rows."""
    return pd.DataFrame({c.name: _null_column(c, 0) for c in schema.columns})


def validate(
    frame: pd.DataFrame, rows: np.ndarray, schema: TableSchema, *, source: str, file: str
) -> tuple[pd.DataFrame, np.ndarray, pd.DataFrame]:
    """Type `frame` (values as read) by `schema` and check every row.

    Returns the typed table with every schema column (bad rows still in it), a boolean mask of
    the good rows, and the quarantine rows of the bad ones (`rows` gives their row numbers).
    """
    frame = frame.reset_index(drop=True)  # rows are positions, whatever index a reader made
    n = len(frame)
    fails = _Failures(n)
    typed = {}
    for col in schema.columns:
        if col.name not in frame.columns:
            typed[col.name] = _null_column(col, n)
            continue
        values = _as_text(_scalars(frame[col.name], col.name, fails))
        missing = values.isna().to_numpy()
        if col.required:
            fails.add(missing, col.name, "missing required value")
        typed[col.name] = _coerce(col, values, missing, fails)
        _check_range(col, typed[col.name], fails)
    table = pd.DataFrame(typed, index=pd.RangeIndex(n))
    if schema.name == LABELS.name:
        table["label"] = _check_labels(table, fails)
    bad = ~fails.ok
    reasons, columns = fails.reason[bad].tolist(), fails.column[bad].tolist()
    rejected = quarantine.rejected(source, file, rows[bad], reasons, columns, raw_json(frame, bad))
    return table, fails.ok, rejected


_ARROW_KIND = {TIMESTAMP: pa.timestamp("ns", tz="UTC"), FLOAT: pa.float64(), STRING: pa.string()}
_TEXT_KINDS = (STRING, IP, COUNTRY)
ARROW_TYPES = {**_ARROW_KIND, INT: pa.int64(), BOOL: pa.bool_()}
ARROW_TYPES |= dict.fromkeys(_TEXT_KINDS, pa.string())
_TO_PANDAS = {pa.int64(): pd.Int64Dtype(), pa.bool_(): pd.BooleanDtype()}
_NS_PER = {"s": 1_000_000_000, "ms": 1_000_000, "us": 1_000, "ns": 1}


def validate_arrow(table: pa.Table, schema: TableSchema) -> tuple[pa.Table, np.ndarray] | None:
    """The fast path of `validate` for Arrow columns of the canonical type (timestamps,
    float32/64, text plain or dictionary-encoded): the typed table (floats as they came) and
    the mask of rows that pass every check, with the values `validate` gives them; the other
    rows need `validate`. None when some column needs the general path."""
    n = table.num_rows
    ok = np.ones(n, dtype=bool)
    columns = {}
    for col in schema.columns:
        if col.kind not in _ARROW_KIND:
            return None
        if col.name not in table.column_names:
            columns[col.name] = pa.nulls(n, _ARROW_KIND[col.kind])
            continue
        values = table.column(col.name).combine_chunks()
        kind = values.type
        if col.kind == TIMESTAMP and pa.types.is_timestamp(kind):
            columns[col.name] = _arrow_timestamps(values, ok)
        elif col.kind == FLOAT and kind in (pa.float32(), pa.float64()):
            columns[col.name] = _arrow_numbers(col, values, ok)
        elif col.kind == STRING and _is_text(kind):
            columns[col.name] = _arrow_text(col, values, ok)
        elif col.kind == STRING and pa.types.is_dictionary(kind) and _is_text(kind.value_type):
            columns[col.name] = _arrow_dictionary_text(col, values, ok)
        else:
            return None
    return pa.table(columns), ok


def _arrow_timestamps(values: pa.Array, ok: np.ndarray) -> pa.Array:
    """Timestamps as ns UTC (naive means UTC); rows null or outside the datetime64[ns] range
    leave `ok`."""
    scale = _NS_PER[values.type.unit]
    raw = values.view(pa.int64()).fill_null(0).to_numpy()
    ok &= ~values.is_null().to_numpy(zero_copy_only=False)
    ok &= (raw >= -((-_TS_MIN.value) // scale)) & (raw <= _TS_MAX.value // scale)
    with np.errstate(over="ignore"):
        return pa.array(raw * scale, type=_ARROW_KIND[TIMESTAMP])


def _arrow_numbers(col: Column, values: pa.Array, ok: np.ndarray) -> pa.Array:
    """The values as they came (float32 or float64: `validate` gives the same numbers as
    float64); rows with a missing required value, an infinite value or one out of range
    leave `ok`."""
    x = values.to_numpy(zero_copy_only=False)  # nulls as NaN
    low = float(x.min(initial=np.inf))  # NaN if any is NaN; compared as float64
    high = float(x.max(initial=-np.inf))
    lo = -np.inf if col.min is None else col.min
    hi = np.inf if col.max is None else col.max
    if not (lo <= low and high <= hi and np.isfinite(low) and np.isfinite(high)):
        x = x.astype(np.float64)
        if col.required:
            ok &= ~np.isnan(x)
        ok &= ~np.isinf(x) & ~(x < lo) & ~(x > hi)
    return values


def _is_text(kind: pa.DataType) -> bool:
    return pa.types.is_string(kind) or pa.types.is_large_string(kind)


def _arrow_dictionary_text(
    col: Column, values: pa.DictionaryArray, ok: np.ndarray
) -> pa.DictionaryArray:
    """`_arrow_text`, the codes kept when the dictionary is already stripped, distinct and
    without blanks (the usual case); else the text is cleaned and encoded again."""
    dictionary = values.dictionary.cast(pa.string())
    text = pc.utf8_trim_whitespace(dictionary)
    if (
        text.equals(dictionary)
        and not dictionary.null_count
        and not pc.any(pc.equal(pc.binary_length(text), 0)).as_py()
        and pc.count_distinct(text).as_py() == len(text)
    ):  # already clean: keep the codes
        if col.required and values.null_count:
            ok &= ~values.is_null().to_numpy(zero_copy_only=False)
        return values
    return pc.dictionary_encode(_arrow_text(col, values, ok))


def _arrow_text(col: Column, values: pa.Array, ok: np.ndarray) -> pa.Array:
    """Stripped text, blank as null (as `_as_text`); rows missing a required value leave `ok`."""
    text = pc.utf8_trim_whitespace(values.cast(pa.string()))
    blank = pc.equal(pc.binary_length(text), 0).fill_null(False)
    if pc.any(blank).as_py():
        text = pc.if_else(blank, pa.scalar(None, pa.string()), text)
    if col.required:
        ok &= ~text.is_null().to_numpy(zero_copy_only=False)
    return text


def arrow_schema(schema: TableSchema) -> pa.Schema:
    """The canonical Arrow type of every column of `schema`."""
    return pa.schema([pa.field(c.name, ARROW_TYPES[c.kind]) for c in schema.columns])


def validated(
    values: pa.Table | pd.DataFrame,
    rows: np.ndarray,
    schema: TableSchema,
    *,
    source: str,
    file: str,
) -> tuple[pa.Table, np.ndarray, pd.DataFrame]:
    """(accepted rows as Arrow, in input order, with their row numbers; quarantine) of a batch.
    Columns of the canonical type are checked in Arrow (`validate_arrow`); the rows that fail
    there, or every row of other types, go through `validate`, which gives the reasons."""
    if isinstance(values, pd.DataFrame) or (fast := validate_arrow(values, schema)) is None:
        frame = values if isinstance(values, pd.DataFrame) else arrow_to_pandas(values, schema)
        typed, ok, rejected = validate(frame, rows, schema, source=source, file=file)
        return to_arrow(typed[ok], schema), rows[ok], rejected
    accepted, ok = fast
    if ok.all():
        return accepted, rows, quarantine.empty()
    rest = ~ok
    typed, good, rejected = validate(
        arrow_to_pandas(values.filter(rest), schema), rows[rest], schema, source=source, file=file
    )
    accepted, kept = accepted.filter(ok), rows[ok]
    if good.any():  # the general path accepts what the fast one did not: keep input order
        extra = to_arrow(typed[good], schema).cast(accepted.schema)
        both = pa.concat_tables([accepted, extra]).unify_dictionaries().combine_chunks()
        kept = np.r_[kept, rows[rest][good]]
        order = np.argsort(kept, kind="stable")
        accepted, kept = both.take(order), kept[order]
    return accepted, kept, rejected


def to_arrow(typed: pd.DataFrame, schema: TableSchema) -> pa.Table:
    """Validated pandas rows (`validate`'s types) as Arrow, in the canonical types."""
    table = pa.Table.from_pandas(
        typed[schema.names], schema=arrow_schema(schema), preserve_index=False
    )
    return table.replace_schema_metadata(None)


def to_pandas(table: pa.Table) -> pd.DataFrame:
    """Accepted Arrow rows as `validate` types them: text plain, floats float64, Int64, boolean."""
    for i, kind in enumerate(table.schema.types):
        if pa.types.is_dictionary(kind) or kind == pa.float32():
            plain = pa.string() if pa.types.is_dictionary(kind) else pa.float64()
            table = table.set_column(i, table.field(i).name, table.column(i).cast(plain))
    return table.to_pandas(types_mapper=_TO_PANDAS.get)


def arrow_to_pandas(table: pa.Table, schema: TableSchema) -> pd.DataFrame:
    """The schema's columns of an Arrow table as read, to pandas; text stored as numbers (a GPU
    index) becomes text first; nested values stay nested (`validate` rejects them)."""
    columns = {}
    for name in (n for n in table.column_names if n in schema.names):
        col = table.column(name)
        if pa.types.is_dictionary(col.type):
            col = col.cast(col.type.value_type)
        if schema.column(name).kind in _TEXT_KINDS and not _is_text(col.type):
            with contextlib.suppress(pa.ArrowInvalid, pa.ArrowNotImplementedError):
                col = col.cast(pa.string())
        columns[name] = col
    return pa.table(columns).to_pandas() if columns else pd.DataFrame(index=range(table.num_rows))


def raw_json(frame: pd.DataFrame, mask: np.ndarray) -> list[str]:
    """The selected rows of `frame` as compact JSON objects, one string per row."""
    if not mask.any():
        return []
    rows = frame.loc[mask]
    mixed = [c for c in rows.columns if rows[c].dtype == object]
    if mixed:  # bytes that are not UTF-8 are shown with U+FFFD
        rows = rows.assign(**{c: rows[c].map(_printable) for c in mixed})
    text = rows.to_json(
        orient="records", lines=True, date_format="iso", force_ascii=False, default_handler=str
    )
    return text.rstrip("\n").split("\n")


def _printable(value: object) -> object:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value


class _Failures:
    """The first failing check of every row."""

    def __init__(self, n: int) -> None:
        self.ok = np.ones(n, dtype=bool)
        self.reason = np.full(n, "", dtype=object)
        self.column = np.full(n, "", dtype=object)

    def add(self, mask: np.ndarray, column: str, problem: str) -> None:
        new = np.asarray(mask, dtype=bool) & self.ok
        self.ok[new] = False
        self.reason[new] = f"{column}: {problem}"
        self.column[new] = column


_NESTED, _NOT_UTF8 = object(), object()


def _scalars(values: pd.Series, column: str, fails: _Failures) -> pd.Series:
    """Mixed values with bytes decoded; a list or object (JSON, nested Parquet) where one value
    belongs, or bytes that are not UTF-8, fail their row and become missing."""
    if values.dtype != object:
        return values
    out = values.map(_scalar)
    nested = np.array([v is _NESTED for v in out], dtype=bool)
    not_utf8 = np.array([v is _NOT_UTF8 for v in out], dtype=bool)
    fails.add(nested, column, "a list or object where a single value belongs")
    fails.add(not_utf8, column, "not UTF-8")
    return out.mask(nested | not_utf8)


def _scalar(value: object) -> object:
    if isinstance(value, bytes):
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            return _NOT_UTF8
    return _NESTED if isinstance(value, list | dict | tuple | np.ndarray) else value


def _as_text(values: pd.Series) -> pd.Series:
    """Text and mixed columns as stripped text with blanks as missing; typed columns as they are."""
    if isinstance(values.dtype, pd.CategoricalDtype):
        values = values.astype(object)
    if values.dtype == object or pd.api.types.is_string_dtype(values.dtype):
        text = values.astype("str").str.strip()
        return text.mask(text == "")
    return values


def _null_column(col: Column, n: int) -> pd.Series:
    return pd.Series(None, index=pd.RangeIndex(n), dtype=_PANDAS_TYPES.get(col.kind, "str"))


def _coerce(col: Column, values: pd.Series, missing: np.ndarray, fails: _Failures) -> pd.Series:
    if col.kind == TIMESTAMP:
        typed, out_of_range = _timestamps(values)
        fails.add(out_of_range, col.name, "timestamp out of range")
        fails.add(typed.isna().to_numpy() & ~missing, col.name, "unparsable timestamp")
        return typed
    if col.kind in (FLOAT, INT):
        typed = _numbers(values)
        fails.add(typed.isna().to_numpy() & ~missing, col.name, "not a number")
        if col.kind == FLOAT:
            return typed
        fractional = (typed.notna() & (typed != typed.round())).to_numpy()
        fails.add(fractional, col.name, "not an integer")
        return typed.mask(fractional).round().astype("Int64")
    if col.kind == BOOL:
        typed = _booleans(values)
        fails.add(typed.isna().to_numpy() & ~missing, col.name, "not true or false")
        return typed
    text = (
        values
        if pd.api.types.is_string_dtype(values.dtype)
        else values.astype("str").mask(values.isna())
    )
    if col.kind == IP:
        typed = _ip_addresses(text)
        fails.add(typed.isna().to_numpy() & ~missing, col.name, "invalid IP address")
        return typed
    if col.kind == COUNTRY:
        typed = text.str.upper()
        bad = (typed.notna() & ~typed.str.fullmatch(r"[A-Z]{2}").fillna(False)).to_numpy()
        fails.add(bad, col.name, "invalid country code")
        return typed.mask(bad)
    if col.kind == STRING:
        return text
    raise ValueError(f"unknown column kind {col.kind!r} of column {col.name!r}")


def _timestamps(values: pd.Series) -> tuple[pd.Series, np.ndarray]:
    """UTC timestamps from datetimes (naive means UTC), epoch seconds (numbers, or text that is
    a plain number) or ISO 8601 text, and the mask of values that parse but lie outside the
    datetime64[ns] range."""
    if pd.api.types.is_datetime64_any_dtype(values.dtype):
        parsed = (
            values.dt.tz_localize("UTC") if values.dt.tz is None else values.dt.tz_convert("UTC")
        )
        out_of_range = np.zeros(len(values), dtype=bool)
    elif pd.api.types.is_numeric_dtype(values.dtype):
        parsed, out_of_range = _epoch(_numbers(values))
    else:
        is_number = values.str.fullmatch(_NUMBER).fillna(False).astype(bool)
        parsed = pd.to_datetime(values.mask(is_number), utc=True, format="ISO8601", errors="coerce")
        out_of_range = np.zeros(len(values), dtype=bool)
        if is_number.any():
            epoch, out_of_range = _epoch(_numbers(values.where(is_number)))
            parsed = parsed.where(~is_number, epoch)
    out_of_range = out_of_range | ((parsed < _TS_MIN) | (parsed > _TS_MAX)).to_numpy(dtype=bool)
    return parsed.mask(out_of_range).astype(TS_DTYPE), out_of_range


def _epoch(seconds: pd.Series) -> tuple[pd.Series, np.ndarray]:
    out_of_range = (seconds.abs() > _EPOCH_LIMIT).to_numpy()
    return pd.to_datetime(seconds.mask(out_of_range), unit="s", utc=True), out_of_range


def _numbers(values: pd.Series) -> pd.Series:
    """float64; anything that is not a finite number becomes NaN."""
    if pd.api.types.is_bool_dtype(values.dtype):
        return pd.Series(np.nan, index=values.index)
    if pd.api.types.is_numeric_dtype(values.dtype):
        numbers = values.astype("float64")
    else:
        try:  # fast path: every value is a number
            numbers = pd.Series(
                pa.array(values.array, from_pandas=True)
                .cast(pa.float64())
                .to_numpy(zero_copy_only=False),
                index=values.index,
            )
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
            numbers = pd.to_numeric(values, errors="coerce").astype("float64")
    return numbers.where(np.isfinite(numbers))


def _booleans(values: pd.Series) -> pd.Series:
    if pd.api.types.is_bool_dtype(values.dtype):
        return values.astype("boolean")
    return values.astype("str").str.lower().map(_BOOLEANS).astype("boolean")


def _ip_addresses(text: pd.Series) -> pd.Series:
    """Normalised addresses (`ipaddress` compressed form; IPv4-mapped IPv6 as IPv4); NaN where
    the text is not an address. Dotted quads already in normal form pass a vectorised check;
    the rest are parsed once per distinct value."""
    plain = text.str.fullmatch(_IPV4).fillna(False).astype(bool).to_numpy()
    if plain.all():
        return text
    rest = text[~plain]
    codes, uniques = pd.factorize(rest)
    normal = np.array([_normal_ip(u) for u in uniques] + [None], dtype=object)
    out = text.copy()
    out[~plain] = pd.Series(normal[codes], index=rest.index, dtype="str")
    return out


@lru_cache(maxsize=65536)
def _normal_ip(value: str) -> str | None:
    try:
        address = ipaddress.ip_address(value.removeprefix("[").removesuffix("]"))
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        address = address.ipv4_mapped
    return address.compressed


def _check_range(col: Column, typed: pd.Series, fails: _Failures) -> None:
    if col.kind in (FLOAT, INT) and col.min is not None:
        fails.add(
            (typed < col.min).fillna(False).to_numpy(bool), col.name, f"below minimum {col.min:g}"
        )
    if col.kind in (FLOAT, INT) and col.max is not None:
        fails.add(
            (typed > col.max).fillna(False).to_numpy(bool), col.name, f"above maximum {col.max:g}"
        )


def _check_labels(table: pd.DataFrame, fails: _Failures) -> pd.Series:
    """Labels: a known label (case-insensitive), a session named by session_id or by tenant_id,
    start and end, and an end after the start. Returns the normalised label column."""
    label = table["label"].str.lower()
    fails.add(
        (~label.isin(LABEL_VALUES) & label.notna()).to_numpy(),
        "label",
        f"not one of {', '.join(LABEL_VALUES)}",
    )
    incomplete = table[list(_LABEL_IDENTITY)].isna().any(axis=1)
    fails.add(
        (table["session_id"].isna() & incomplete).to_numpy(),
        "session_id",
        "missing, and tenant_id, start, end incomplete",
    )
    fails.add(
        (table["end"] <= table["start"]).fillna(False).to_numpy(dtype=bool),
        "end",
        "not after start",
    )
    return label


def duplicates(table: pd.DataFrame, key: Sequence[str]) -> np.ndarray:
    """Mask of rows whose key repeats an earlier row's (missing key values compare equal), as
    `DataFrame.duplicated(keep="first")`: the one duplicates rule of every table. Pandas decides
    only when two rows' 64-bit key hashes are equal (rare)."""
    if not key or table.empty:
        return np.zeros(len(table), dtype=bool)
    hashed = np.zeros(len(table), dtype=np.uint64)
    for name in key:
        column = table[name]
        if isinstance(column.dtype, pd.CategoricalDtype):
            codes = column.cat.codes.to_numpy()
        elif pd.api.types.is_datetime64_any_dtype(column.dtype) and not column.isna().any():
            codes = epoch_ns(column)
        else:
            codes = pd.factorize(column, use_na_sentinel=True)[0]
        hashed = hashed * np.uint64(0x9E3779B97F4A7C15) + codes.astype(np.uint64)
    ordered = np.sort(hashed)
    if not (ordered[1:] == ordered[:-1]).any():
        return np.zeros(len(table), dtype=bool)
    return table.duplicated(subset=list(key), keep="first").to_numpy()
