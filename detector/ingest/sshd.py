"""OpenSSH auth logs (syslog or journald short-iso lines) -> access events.

A row is one sshd `Accepted <method> for <user> from <ip> port <n>` line; syslog dates take the
file's year, in UTC (DESIGN-NOTES "Real inputs").
"""

from __future__ import annotations

import pandas as pd

from .. import quarantine
from ..errors import InputError
from ..schema import TableSchema
from . import text
from .files import InputFile
from .options import SourceOptions
from .readers import RawFile

MALFORMED = "malformed record: sshd Accepted line"
_SYSLOG = (
    r"^(?:<\d+>)?(?:(?P<month>[A-Z][a-z]{2}) +(?P<day>\d{1,2}) (?P<clock>\d\d:\d\d:\d\d)"
    r"|(?P<iso>\d{4}-\d\d-\d\dT\S+)) (?P<host>\S+) "
)
_SSHD = r"sshd(?:-session)?\[\d+\]: "
_ACCEPTED = (
    r"Accepted (?P<method>[\w-]+) for (?P<user>.+?) from (?P<ip>\S+) port "
    r"(?P<port>\d+)(?: ssh2)?(?::.*)?\s*$"
)


def read(file: InputFile, schema: TableSchema, source: str, options: SourceOptions) -> RawFile:
    lines = text.lines(file)
    nonblank = lines[lines["text"].str.strip().ne("")]
    head = nonblank["text"].str.extract(_SYSLOG)
    if len(nonblank) and head["host"].isna().all():
        raise InputError(
            "not a syslog or journald auth log: no line starts with a timestamp and a host name",
            path=file.name,
            row=int(nonblank["line"].iloc[0]),
        )
    bad_bytes = nonblank[~nonblank["utf8"]]
    is_sshd = nonblank["text"].str.contains(_SSHD + "Accepted ", regex=True).to_numpy(dtype=bool)
    ok = nonblank["utf8"].to_numpy(dtype=bool)
    candidates = nonblank[is_sshd & ok]
    parts = candidates["text"].str.extract(_SYSLOG.removesuffix(" ") + " " + _SSHD + _ACCEPTED)
    good = (parts["host"].notna() & parts["ip"].notna()).to_numpy(dtype=bool)
    rejected = [
        text.rejected_lines(source, file.name, bad_bytes, text.NOT_UTF8),
        text.rejected_lines(source, file.name, candidates[~good], MALFORMED),
    ]
    parts, candidates = parts[good], candidates[good]
    host = parts["host"]
    frame = pd.DataFrame(
        {
            "timestamp": _timestamps(parts, file),
            "tenant_id": options.tenant([("host", host)], host),
            "src_ip": parts["ip"],
            "event": "ssh",
            "principal": parts["user"],
            "user_agent": "ssh " + parts["method"],
        }
    ).reset_index(drop=True)
    return RawFile(file, frame, candidates["line"].to_numpy(), quarantine.combine(rejected))


def _timestamps(parts: pd.DataFrame, file: InputFile) -> pd.Series:
    """ISO text as written; syslog dates completed with the file's year (as ISO text)."""
    syslog = parts["iso"].isna()
    if not syslog.any():
        return parts["iso"]
    mtime = pd.Timestamp(file.path.stat().st_mtime, unit="s", tz="UTC")
    stamp = parts["month"] + " " + parts["day"] + " " + parts["clock"]
    this, last = (
        pd.to_datetime(f"{year} " + stamp, format="%Y %b %d %H:%M:%S", errors="coerce", utc=True)
        for year in (mtime.year, mtime.year - 1)
    )
    when = this.where(this <= mtime + pd.Timedelta(days=1), last)
    iso = when.dt.strftime("%Y-%m-%dT%H:%M:%SZ")
    # a date that does not exist (Feb 30) stays as written: validation quarantines it
    return parts["iso"].where(~syslog, iso.where(when.notna(), stamp))
