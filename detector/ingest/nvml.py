"""NVML / nvidia-smi style exports with foreign column names and units, through a declared
column mapping (TOML; bundled ones in `detector/data/mappings/`; DESIGN-NOTES "Column mappings").
Long layout (one metric per file): rows sharing their key merge across files (`merge_long`).
"""

from __future__ import annotations

import fnmatch
import tomllib
from dataclasses import dataclass, field, replace
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .. import quarantine
from ..errors import ConfigError, InputError
from ..schema import TELEMETRY, TIMESTAMP, Column, TableSchema
from .files import InputFile, open_parquet, parquet_errors
from .options import SourceOptions
from .readers import RawFile, csv_header, csv_rows

# Source unit -> factor to the canonical unit (schema Column.unit), by canonical unit.
UNITS: dict[str, dict[str, float]] = {
    "%": {"%": 1.0, "ratio": 100.0},
    "ratio": {"ratio": 1.0, "%": 0.01},
    "MiB": {
        "bytes": 2.0**-20,
        "B": 2.0**-20,
        "KiB": 2.0**-10,
        "MiB": 1.0,
        "GiB": 1024.0,
        "kB": 1e3 / 2**20,
        "MB": 1e6 / 2**20,
        "GB": 1e9 / 2**20,
    },
    "W": {"W": 1.0, "mW": 1e-3, "kW": 1e3},
    "B/s": {
        "B/s": 1.0,
        "KiB/s": 1024.0,
        "MiB/s": 2.0**20,
        "GiB/s": 2.0**30,
        "kB/s": 1e3,
        "MB/s": 1e6,
        "GB/s": 1e9,
        "kbit/s": 125.0,
        "Mbit/s": 1.25e5,
        "Gbit/s": 1.25e8,
    },
    "UTC": {"iso": 1.0, "s": 1.0, "ms": 1e-3, "us": 1e-6, "ns": 1e-9},
}


@dataclass(frozen=True)
class Source:
    """How one canonical column is made: a source column (minus another), in a unit."""

    column: str
    unit: str | None = None
    minus: str | None = None


@dataclass(frozen=True)
class Mapping:
    name: str
    columns: dict[str, Source]
    constants: dict[str, str] = field(default_factory=dict)
    missing: tuple[float, ...] = ()
    metrics: dict[str, Source] = field(default_factory=dict)  # long: file pattern -> target
    value: str = "value"
    key: tuple[str, ...] = ()

    @property
    def long(self) -> bool:
        return bool(self.metrics)

    def sources(self, targets: dict[str, Source]) -> list[str]:
        names = [s.column for s in targets.values()] + [
            s.minus for s in targets.values() if s.minus
        ]
        return list(dict.fromkeys(names))


def bundled_mappings() -> list[str]:
    folder = resources.files("detector.data").joinpath("mappings")
    return sorted(
        p.name.removesuffix(".toml") for p in folder.iterdir() if p.name.endswith(".toml")
    )


@cache
def load_mapping(spec: str | Path) -> Mapping:
    """A mapping from a TOML file, or a bundled one by name (`nvml-spar`, `alibaba-genai`)."""
    path = Path(spec)
    if not path.exists() and path.suffix == "" and str(spec) in bundled_mappings():
        path = Path(str(resources.files("detector.data").joinpath("mappings", f"{spec}.toml")))
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(
            f"{spec}: cannot read column mapping ({exc.strerror}); bundled: "
            f"{', '.join(bundled_mappings())}"
        ) from exc
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: not valid TOML ({exc})") from exc
    try:
        mapping = Mapping(
            name=str(raw.get("name", path.stem)),
            columns={k: _source(k, v) for k, v in raw.get("columns", {}).items()},
            constants={k: str(v) for k, v in raw.get("constants", {}).items()},
            missing=tuple(float(v) for v in raw.get("missing", [])),
            metrics={k: _source(k, v) for k, v in raw.get("metrics", {}).items()},
            value=str(raw.get("value", "value")),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise ConfigError(f"{path}: invalid column mapping ({exc})") from exc
    targets = [*mapping.columns, *mapping.constants]
    pairs = [*mapping.columns.items(), *((m.column, m) for m in mapping.metrics.values())]
    for target in [*targets, *(t for t, _ in pairs)]:
        if target not in TELEMETRY.names:
            raise ConfigError(
                f"{path}: {target!r} is not a telemetry column ({', '.join(TELEMETRY.names)})"
            )
    for target, src in pairs:
        canonical = TELEMETRY.column(target).unit
        if src.unit is not None and src.unit not in UNITS.get(canonical, {}):
            raise ConfigError(
                f"{path}: unit {src.unit!r} of {target!r} cannot be converted to "
                f"{canonical or 'text'}; known: "
                f"{', '.join(UNITS.get(canonical, {})) or 'none'}"
            )
    key = tuple(k for k in TELEMETRY.key if k in targets)
    return replace(mapping, key=key)


def _source(target: str, spec: Any) -> Source:
    if isinstance(spec, str):
        return Source(spec)
    if not isinstance(spec, dict) or "column" not in spec:
        raise ValueError(f"{target}: expected a column name or {{column = ..., unit = ...}}")
    unknown = set(spec) - {"column", "unit", "minus"}
    if unknown:
        raise ValueError(f"{target}: unknown key(s) {sorted(unknown)}")
    return Source(str(spec["column"]), spec.get("unit"), spec.get("minus"))


def read(file: InputFile, schema: TableSchema, source: str, options: SourceOptions) -> RawFile:
    if options.columns is None:
        raise InputError(
            "nvml format needs a column mapping (--columns MAPPING.toml or a "
            f"bundled one: {', '.join(bundled_mappings())})",
            path=file.name,
        )
    mapping = load_mapping(options.columns)
    targets = dict(mapping.columns)
    if mapping.long:
        metric = next(
            (m for p, m in mapping.metrics.items() if fnmatch.fnmatch(file.path.name, p)), None
        )
        if metric is None:
            raise InputError(
                f"file name matches no [metrics] pattern of mapping "
                f"{mapping.name!r} ({', '.join(mapping.metrics)})",
                path=file.name,
            )
        targets[metric.column] = Source(mapping.value, metric.unit, metric.minus)
    frame, rows, rejected = _read_source(file, mapping.sources(targets), source)
    out = pd.DataFrame(index=frame.index)
    for target, src in targets.items():
        out[target] = _convert(frame, src, TELEMETRY.column(target), mapping.missing)
    for target, value in mapping.constants.items():
        out[target] = value
    return RawFile(file, out, rows, rejected, merge_on=mapping.key if mapping.long else ())


def _read_source(
    file: InputFile, needed: list[str], source: str
) -> tuple[pd.DataFrame, np.ndarray, pd.DataFrame]:
    if file.fmt == "csv" or file.path.name.lower().removesuffix(".gz").endswith(".csv"):
        header = csv_header(file)
        _require(needed, header, file)
        return csv_rows(file, header, needed, source)
    with parquet_errors(file):
        pfile = open_parquet(file)
        _require(needed, pfile.schema_arrow.names, file)
        frame = pfile.read(columns=needed).to_pandas()
    return frame, np.arange(1, len(frame) + 1), quarantine.empty()


def _require(needed: list[str], present: list[str], file: InputFile) -> None:
    missing = [n for n in needed if n not in present]
    if missing:
        raise InputError(
            f"column mapping needs source column(s) {missing}; the file has {present[:30]}",
            path=file.name,
            column=missing[0],
        )


def _convert(
    frame: pd.DataFrame, src: Source, target: Column, missing: tuple[float, ...]
) -> pd.Series:
    """The source column in the unit of `target`; text that is not a number is kept as read,
    so that validation quarantines it with the usual reason."""
    values = frame[src.column]
    if src.unit is None or src.unit == "iso":
        return values
    numbers = pd.to_numeric(values, errors="coerce").astype("float64")
    if src.minus:
        numbers = numbers - pd.to_numeric(frame[src.minus], errors="coerce")
    if missing:
        numbers = numbers.mask(numbers.isin(missing))
    factor = UNITS[target.unit][src.unit]
    converted = numbers * factor if target.kind != TIMESTAMP or factor != 1.0 else numbers
    unreadable = (
        numbers.isna() & values.notna() & ~pd.to_numeric(values, errors="coerce").isin(missing)
    )
    return converted.astype(object).where(~unreadable, values)


def merge_long(raws: list[RawFile]) -> list[RawFile]:
    """Merge the rows of long-layout files that share their key into one row each, kept in
    the file (and at the row) where the key first appears."""
    partial = [i for i, r in enumerate(raws) if r.merge_on and len(r.frame)]
    if len(partial) < 2:
        return raws
    key = list(raws[partial[0]].merge_on)
    parts = [
        raws[i].frame.assign(_file=i, _row=raws[i].rows, _pos=np.arange(len(raws[i].frame)))
        for i in partial
    ]
    both = pd.concat(parts, ignore_index=True)
    ident = [both[k].astype("str").fillna("\0") for k in key]
    group = pd.factorize(pd.MultiIndex.from_arrays(ident))[0]
    merged = both.groupby(group, sort=False).first()  # first non-missing value per column
    out = list(raws)
    for i in partial:
        mine = merged[merged["_file"] == i]
        frame = mine.drop(columns=["_file", "_row", "_pos"]).reset_index(drop=True)
        out[i] = RawFile(raws[i].file, frame, mine["_row"].to_numpy(), raws[i].rejected)
    return out
