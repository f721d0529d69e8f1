"""Prometheus text exposition and OpenMetrics dumps of dcgm-exporter -> telemetry rows.

One row per GPU and timestamp, numbered by the line of its first sample; samples without a
timestamp get the file's modification time (DESIGN-NOTES "Real inputs").
"""

from __future__ import annotations

from functools import partial

import pandas as pd

from .. import quarantine
from ..errors import InputError
from ..schema import TableSchema
from . import dcgm, text
from .files import InputFile
from .options import SourceOptions
from .readers import RawFile

MALFORMED = "malformed sample line"
BAD_VALUE = "sample value is not a number"
BAD_TIMESTAMP = "sample timestamp is not a number"

_NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
_SAMPLE = (
    rf"^\s*(?P<name>{_NAME})(?:\{{(?P<labels>.*)\}})?[ \t]+(?P<value>\S+)"
    r"(?:[ \t]+(?P<ts>[^\s#]+))?(?:[ \t]+#.*)?\s*$"
)
_LABEL = r'(?P<key>[a-zA-Z_][a-zA-Z0-9_]*)\s*=\s*"(?P<val>(?:[^"\\]|\\.)*)"'
_LABELS_OK = rf"^\s*(?:{_LABEL}\s*(?:,\s*|$))*$"


def read(file: InputFile, schema: TableSchema, source: str, options: SourceOptions) -> RawFile:
    lines = text.lines(file)
    body = lines[lines["text"].str.strip().ne("") & ~lines["text"].str.lstrip().str.startswith("#")]
    bad_bytes = body[~body["utf8"]]
    body = body[body["utf8"]]
    parts = body["text"].str.extract(_SAMPLE)
    labels_ok = parts["labels"].fillna("").str.fullmatch(_LABELS_OK).fillna(False)
    matched = parts["name"].notna() & labels_ok.astype(bool)
    if len(body) and not matched.any():
        raise InputError(
            "not Prometheus text exposition: no line is a metric sample "
            "(name{labels} value [timestamp])",
            path=file.name,
            row=int(body["line"].iloc[0]),
        )
    openmetrics = lines["text"].str.strip().eq("# EOF").any()
    value = pd.to_numeric(
        parts["value"].str.replace(r"^\+?Inf$", "inf", regex=True), errors="coerce"
    )
    value_ok = parts["value"].str.fullmatch(r"[+-]?(?:NaN|Inf|[0-9.eE+-]+)").fillna(False) & (
        value.notna() | parts["value"].eq("NaN")
    )
    ts = pd.to_numeric(parts["ts"], errors="coerce")
    ts_ok = parts["ts"].isna() | ts.notna()
    ts = ts if openmetrics else ts / 1000.0
    ts = ts.fillna(float(int(file.path.stat().st_mtime)))
    wanted = parts["name"].isin(dcgm.FIELDS.keys())
    reject = partial(text.rejected_lines, source, file.name)
    rejected = [
        reject(bad_bytes, text.NOT_UTF8),
        reject(body[~matched], MALFORMED),
        reject(body[matched & wanted & ~value_ok], BAD_VALUE),
        reject(body[matched & wanted & value_ok & ~ts_ok], BAD_TIMESTAMP),
    ]
    good = (matched & wanted & value_ok & ts_ok).to_numpy()
    samples = _samples(body[good], parts[good], value[good], ts[good], options)
    frame, rows = dcgm.assemble(samples, options)
    return RawFile(file, frame, rows, quarantine.combine(rejected))


def _samples(
    body: pd.DataFrame, parts: pd.DataFrame, value: pd.Series, ts: pd.Series, options: SourceOptions
) -> pd.DataFrame:
    out = pd.DataFrame(
        {
            "row": body["line"].to_numpy(),
            "name": parts["name"].to_numpy(),
            "ts": ts.to_numpy(float),
            "value": value.to_numpy(float),
        }
    )
    pairs = parts["labels"].fillna("").str.extractall(_LABEL)
    if len(pairs):
        pairs = pairs[pairs["key"].isin(dcgm.labels_needed(options))]
        pairs["val"] = (
            pairs["val"]
            .str.replace(r"\\n", "\n", regex=False)
            .str.replace(r"\"", '"', regex=False)
            .str.replace(r"\\", "\\", regex=False)
        )
        pairs = pairs.droplevel("match").reset_index(names="pos")
        wide = pairs.drop_duplicates(["pos", "key"]).pivot(index="pos", columns="key", values="val")
        positions = pd.Index(parts.index)
        for key in wide.columns:
            out[key] = wide[key].reindex(positions).to_numpy()
    return out
