"""`auto`: tell a file's format from its content where the extension does not say enough."""

from __future__ import annotations

import re

from ..errors import InputError
from ..schema import TableSchema
from .files import SNIFF, InputFile, open_parquet, read_head
from .options import SourceOptions
from .readers import csv_header

HEAD_BYTES = 1 << 16
_PROM = re.compile(r"^(?:# (?:HELP|TYPE) \w+|DCGM_FI_\w+(?:\{.*\})?[ \t]+\S+)", re.M)
_SSHD = re.compile(r"\bsshd(?:-session)?\[\d+\]:")
_VPC_HEADER = re.compile(r"^\s*(?:\S+\s+)*srcaddr\s+(?:\S+\s+)*dstaddr\b")


def sniff(file: InputFile, schema: TableSchema, options: SourceOptions) -> str:
    """The format to read `file` with: its extension's, unless the content says otherwise."""
    if file.fmt in ("parquet", "csv"):
        mapped = options.columns is not None and not set(schema.required) <= set(columns(file))
        return "nvml" if mapped else file.fmt
    start = read_head(file, HEAD_BYTES).decode("utf-8", "replace").removeprefix("\ufeff")
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
    return csv_header(file) if file.fmt == "csv" else open_parquet(file).schema_arrow.names


def _cloudtrail(start: str) -> bool:
    text = start.lstrip()
    return (
        text.startswith("{")
        and '"eventTime"' in text
        and ('"Records"' in text or '"eventSource"' in text)
    )
