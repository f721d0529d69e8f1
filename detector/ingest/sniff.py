"""`auto`: tell a file's format from its content where the extension does not say enough."""

from __future__ import annotations

import gzip
import re
import zlib

import pyarrow as pa
import pyarrow.parquet as pq

from ..errors import InputError
from ..schema import TableSchema
from .files import SNIFF, InputFile, read_bytes
from .options import SourceOptions
from .readers import csv_header

HEAD_BYTES = 1 << 16
_PROM = re.compile(r"^(?:# (?:HELP|TYPE) \w+|DCGM_FI_\w+(?:\{.*\})?[ \t]+\S+)", re.M)
_SSHD = re.compile(r"\bsshd(?:-session)?\[\d+\]:")
_VPC_HEADER = re.compile(r"^\s*(?:\S+\s+)*srcaddr\s+(?:\S+\s+)*dstaddr\b")


def head(file: InputFile) -> str:
    """The first 64 KiB of the file (decompressed), as text."""
    try:
        if file.gzip:
            with gzip.open(file.path, "rb") as fh:
                data = fh.read(HEAD_BYTES)
        else:
            with open(file.path, "rb") as fh:
                data = fh.read(HEAD_BYTES)
    except (OSError, EOFError, zlib.error) as exc:
        raise InputError(f"cannot read file: {exc}", path=file.name) from exc
    return data.decode("utf-8", "replace").removeprefix("\ufeff")


def sniff(file: InputFile, schema: TableSchema, options: SourceOptions) -> str:
    """The format to read `file` with: its extension's, unless the content says otherwise."""
    if file.fmt in ("parquet", "csv"):
        mapped = options.columns is not None and not set(schema.required) <= set(columns(file))
        return "nvml" if mapped else file.fmt
    start = head(file)
    if file.fmt in ("json", "jsonl"):
        return "cloudtrail" if _cloudtrail(start) else file.fmt
    if file.fmt != SNIFF:
        return file.fmt
    if _cloudtrail(start):
        return "cloudtrail"
    first = next((line for line in start.splitlines() if line.strip()), "")
    if _VPC_HEADER.match(first):
        return "vpcflow"
    if _SSHD.search(start):
        return "sshd"
    if _PROM.search(start):
        return "prometheus"
    raise InputError(
        "unknown file extension, and the content is not Prometheus text, "
        "CloudTrail JSON, VPC Flow Logs or an sshd log; pass a format",
        path=file.name,
    )


def columns(file: InputFile) -> list[str]:
    """Column names of a Parquet or CSV file."""
    if file.fmt == "csv":
        return csv_header(file)
    try:
        handle = pa.BufferReader(read_bytes(file)) if file.gzip else str(file.path)
        return pq.ParquetFile(handle).schema_arrow.names
    except (pa.ArrowException, OSError, UnicodeDecodeError) as exc:  # names not UTF-8
        raise InputError(f"cannot read Parquet: {exc}", path=file.name) from exc


def _cloudtrail(start: str) -> bool:
    text = start.lstrip()
    return (
        text.startswith("{")
        and '"eventTime"' in text
        and ('"Records"' in text or '"eventSource"' in text)
    )
