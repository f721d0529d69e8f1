"""AWS CloudTrail log files (`{"Records": [...]}`, plain or gzip) -> access events.

One record is one row; calls AWS services make on a principal's behalf are not rows; a file cut
short keeps the records before the cut (DESIGN-NOTES "Real inputs").
"""

from __future__ import annotations

import json
import re

import numpy as np
import pandas as pd

from .. import quarantine
from ..errors import InputError
from ..schema import TableSchema
from .files import InputFile, read_bytes
from .options import SourceOptions
from .readers import RawFile
from .text import NOT_UTF8, RAW_LIMIT, objects

INVALID = "invalid JSON"
_RECORDS = re.compile(r'^\s*\{\s*"Records"\s*:\s*\[')
_SERVICE = r"^(?:[a-z0-9-]+\.)+amazonaws\.com(?:\.cn)?$|^AWS Internal$"
_REPLACED = "\ufffd"  # a byte that is not UTF-8, replaced on decoding


def read(file: InputFile, schema: TableSchema, source: str, options: SourceOptions) -> RawFile:
    text = read_bytes(file).decode("utf-8", "replace").removeprefix("\ufeff")
    records, cut = _records(text, file)
    found, rows, not_objects = objects(records, source, file.name)
    rejected = [not_objects]
    if cut is not None:
        rejected.append(
            quarantine.rejected(
                source, file.name, [len(records) + 1], INVALID, raw=[json.dumps(cut[:RAW_LIMIT])]
            )
        )
    frame = pd.json_normalize(found)

    def get(name: str) -> pd.Series:
        return frame[name] if name in frame else pd.Series(np.nan, index=frame.index, dtype=object)

    ip = get("sourceIPAddress")
    service = ip.astype("str").str.fullmatch(_SERVICE).fillna(False).to_numpy(dtype=bool)
    bad_bytes = (
        frame.astype("str")
        .apply(lambda c: c.str.contains(_REPLACED, regex=False))
        .any(axis=1)
        .to_numpy(dtype=bool)
        if len(frame)
        else np.zeros(0, dtype=bool)
    )
    rejected.append(
        quarantine.rejected(
            source,
            file.name,
            rows[bad_bytes & ~service],
            NOT_UTF8,
            raw=[_raw(r) for r in frame[bad_bytes & ~service].to_dict("records")],
        )
    )
    keep = ~service & ~bad_bytes
    frame, rows = frame[keep].reset_index(drop=True), rows[keep]  # `get` reads this frame now

    account = get("userIdentity.accountId").fillna(get("recipientAccountId"))
    name = get("eventName")
    out = pd.DataFrame(
        {
            "timestamp": get("eventTime"),
            "tenant_id": options.tenant([("account", account.astype("str"))], account),
            "src_ip": get("sourceIPAddress"),
            "event": np.where(name.eq("ConsoleLogin"), "console", "api"),
            "principal": get("userIdentity.arn").fillna(get("userIdentity.userName")),
            "user_agent": get("userAgent"),
        }
    )
    out.loc[name.isna().to_numpy(), "event"] = np.nan
    return RawFile(file, out, rows, quarantine.combine(rejected))


def _records(text: str, file: InputFile) -> tuple[list, str | None]:
    """The elements of `Records` and, when the file is cut short or broken, the unread rest."""
    try:
        doc = json.loads(text)
    except json.JSONDecodeError:
        return _salvage(text, file)
    except RecursionError as exc:
        raise InputError("JSON nested too deep", path=file.name) from exc
    if isinstance(doc, dict) and isinstance(doc.get("Records"), list):
        return doc["Records"], None
    if isinstance(doc, list):
        return doc, None
    raise InputError('not a CloudTrail log file: expected {"Records": [...]}', path=file.name)


def _salvage(text: str, file: InputFile) -> tuple[list, str | None]:
    start = _RECORDS.match(text)
    if start is None:
        raise InputError(
            'not a CloudTrail log file: invalid JSON and no {"Records": [ at the start',
            path=file.name,
        )
    decoder = json.JSONDecoder()
    records: list = []
    pos = start.end()
    while True:
        pos = _skip(text, pos)
        if pos >= len(text) or text[pos] == "]":
            return records, None
        try:
            value, pos = decoder.raw_decode(text, pos)
        except (json.JSONDecodeError, RecursionError):
            return records, text[pos:]
        records.append(value)
        pos = _skip(text, pos)
        if pos < len(text) and text[pos] == ",":
            pos += 1
        elif pos >= len(text) or text[pos] != "]":
            return records, text[pos:] or "(end of file)"


def _skip(text: str, pos: int) -> int:
    while pos < len(text) and text[pos] in " \t\r\n":
        pos += 1
    return pos


def _raw(value: object) -> str:
    return json.dumps(value, default=str, ensure_ascii=True)[:RAW_LIMIT]
