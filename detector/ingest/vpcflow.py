"""VPC Flow Logs (space-separated, header line naming the fields) -> access events.

A row is one inbound ACCEPTed flow record; outbound, rejected and NODATA records are not rows,
SKIPDATA records are quarantined (DESIGN-NOTES "Real inputs").
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .. import quarantine
from ..enrich.addresses import IP_CLASSES, classify, parse
from ..errors import InputError
from ..schema import TableSchema
from . import text
from .files import InputFile
from .options import SourceOptions
from .readers import RawFile

DEFAULT_V2 = (
    "version",
    "account-id",
    "interface-id",
    "srcaddr",
    "dstaddr",
    "srcport",
    "dstport",
    "protocol",
    "packets",
    "bytes",
    "start",
    "end",
    "action",
    "log-status",
)
NEEDED = ("srcaddr", "dstaddr", "start", "action", "log-status")
WRONG_FIELDS = "malformed record: wrong number of fields"
SKIPDATA = "SKIPDATA: flows not captured"
# Tenant map kinds and the fields that hold their keys, in the order they are tried.
TENANT_KEYS = (
    ("instance", "instance-id"),
    ("interface", "interface-id"),
    ("address", "dstaddr"),
    ("account", "account-id"),
)


def read(file: InputFile, schema: TableSchema, source: str, options: SourceOptions) -> RawFile:
    lines = text.lines(file)
    lines = lines[lines["text"].str.strip().ne("")]
    if lines.empty:
        return RawFile(file, pd.DataFrame(), np.zeros(0, dtype=np.int64), quarantine.empty())
    first = lines["text"].iloc[0].split()
    if "srcaddr" in first:
        header, lines = first, lines.iloc[1:]
    elif first and first[0].isdigit() and len(first) == len(DEFAULT_V2):
        header = list(DEFAULT_V2)
    else:
        raise InputError(
            "not a VPC Flow Log: the first line is neither a header naming srcaddr,"
            " dstaddr, ... nor a version-2 record",
            path=file.name,
            row=1,
        )
    twice = sorted({f for f in header if header.count(f) > 1})
    if twice:
        raise InputError(f"VPC Flow Log header names field(s) {twice} twice", path=file.name, row=1)
    missing = [f for f in NEEDED if f not in header]
    if missing:
        raise InputError(f"VPC Flow Log header lacks field(s) {missing}", path=file.name, row=1)
    bad_bytes = lines[~lines["utf8"]]
    lines = lines[lines["utf8"]]
    fields = lines["text"].str.strip().str.split(r"\s+", regex=True)
    count_ok = (fields.str.len() == len(header)).to_numpy(dtype=bool)
    rejected = [
        text.rejected_lines(source, file.name, bad_bytes, text.NOT_UTF8),
        text.rejected_lines(source, file.name, lines[~count_ok], WRONG_FIELDS),
    ]
    lines = lines[count_ok]
    table = (
        pd.DataFrame(fields[count_ok].tolist(), columns=header, index=lines.index).replace(
            "-", np.nan
        )
        if count_ok.any()
        else pd.DataFrame(columns=header)
    )
    status = table["log-status"].str.upper()
    rejected.append(
        text.rejected_lines(
            source, file.name, lines[(status == "SKIPDATA").to_numpy(dtype=bool)], SKIPDATA
        )
    )
    accepted = (status == "OK") & (table["action"].str.upper() == "ACCEPT")
    keep = accepted.to_numpy(dtype=bool) & _inbound(table, options)
    table, lines = table[keep], lines[keep]
    account = _field(table, "account-id")
    keys = [(kind, _field(table, name).astype("str")) for kind, name in TENANT_KEYS]
    frame = pd.DataFrame(
        {
            "timestamp": table["start"],
            "tenant_id": options.tenant(keys, account),
            "src_ip": table["srcaddr"],
            "event": "flow",
            "bytes_in": _field(table, "bytes"),
        }
    ).reset_index(drop=True)
    return RawFile(file, frame, lines["line"].to_numpy(), quarantine.combine(rejected))


def _field(table: pd.DataFrame, name: str) -> pd.Series:
    return table[name] if name in table else pd.Series(np.nan, index=table.index, dtype="str")


def _inbound(table: pd.DataFrame, options: SourceOptions) -> np.ndarray:
    if "flow-direction" in table:
        return (table["flow-direction"].str.lower() == "ingress").to_numpy(dtype=bool)
    private = IP_CLASSES.index("private")
    src = classify(parse(table["srcaddr"].fillna("").to_numpy(dtype=object)))
    dst = classify(parse(table["dstaddr"].fillna("").to_numpy(dtype=object))) == private
    mapped = np.zeros(len(table), dtype=bool)
    if options.tenant_map is not None:
        known = options.tenant_map.entries
        for kind, name in TENANT_KEYS:
            if kind != "account" and kind in known and name in table:
                mapped |= table[name].isin(known[kind].keys()).to_numpy(dtype=bool)
    # from outside the VPC to a private address; a source that is not an address at all
    # stays a row, for validation to quarantine it
    return mapped | ((src != private) & dst)
