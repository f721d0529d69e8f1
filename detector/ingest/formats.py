"""One input file: the format to read it with (canonical or foreign), then its reader."""

from __future__ import annotations

from ..errors import InputError
from ..schema import TableSchema
from . import cloudtrail, nvml, prometheus_text, readers, sshd, vpcflow
from .files import FOREIGN, InputFile
from .options import SourceOptions
from .readers import RawFile
from .sniff import sniff

_READERS = {
    "csv": readers.read_csv,
    "jsonl": readers.read_jsonl,
    "json": readers.read_json,
    "prometheus": prometheus_text.read,
    "nvml": nvml.read,
    "cloudtrail": cloudtrail.read,
    "vpcflow": vpcflow.read,
    "sshd": sshd.read,
}
_TELEMETRY_ONLY = ("prometheus", "nvml")


def resolve(file: InputFile, schema: TableSchema, options: SourceOptions, auto: bool) -> InputFile:
    """`file` with the format to read it with; with `auto`, its content may override what the
    extension says."""
    fmt = sniff(file, schema, options) if auto or file.fmt == "sniff" else file.fmt
    if fmt in FOREIGN and (fmt in _TELEMETRY_ONLY) != (schema.name == "telemetry"):
        raise InputError(
            f"{fmt} files hold {'telemetry' if fmt in _TELEMETRY_ONLY else 'access'}"
            f" records, not {schema.name}",
            path=file.name,
        )
    return file if fmt == file.fmt else InputFile(file.path, fmt, file.gzip, file.limits)


def read_any(file: InputFile, schema: TableSchema, source: str, options: SourceOptions) -> RawFile:
    """Read a resolved `file` (not Parquet: `batches.py` streams that) with its reader."""
    return _READERS[file.fmt](file, schema, source, options)
