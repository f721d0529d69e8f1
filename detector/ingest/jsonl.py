"""JSON Lines: parsed by pyarrow.json; bad lines are found by bisection and reported.

Lines that could crash pyarrow (not starting with `{`, more `{`/`[` than `Limits.max_depth`,
longer than `Limits.max_line`, not UTF-8) are checked alone with `json.loads` first. A piece
pyarrow fails on is halved until it parses or is `PER_LINE` lines, read line by line: one bad
line in a large file costs a few pyarrow passes, not a Python loop over every line.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Collection
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.json as pajson

from .files import Limits
from .text import NOT_OBJECT, NOT_UTF8, RAW_LIMIT, is_utf8

PER_LINE = 2048  # lines: a failing piece this small is parsed line by line
_SPACE = np.frombuffer(b" \t\r\n\f\v", dtype=np.uint8)


@dataclass
class Parsed:
    """Objects of a JSON Lines text, their line numbers, and the lines that are not objects."""

    frame: pd.DataFrame
    rows: np.ndarray
    bad: list[tuple[int, str, str]] = field(default_factory=list)  # (line, reason, raw JSON)


def depth(value: object) -> int:
    """Nesting depth of a parsed JSON value (a scalar: 0), without recursion."""
    deepest, stack = 0, [(value, 0)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, dict | list):
            deepest = max(deepest, level + 1)
            stack.extend(
                (v, level + 1) for v in (item.values() if isinstance(item, dict) else item)
            )
    return deepest


class Parser:
    """Parses JSON Lines `data` (`run`); `convert` turns a pyarrow table into pandas (keeping
    the columns it wants), `names` are the columns kept from objects parsed line by line."""

    def __init__(
        self,
        data: bytes,
        convert: Callable[[pa.Table], pd.DataFrame],
        names: Collection[str],
        limits: Limits,
    ) -> None:
        self.data, self.convert, self.names, self.limits = data, convert, set(names), limits
        self.buffer = pa.py_buffer(data)
        raw = np.frombuffer(data, dtype=np.uint8)
        newlines = np.flatnonzero(raw == 0x0A)
        self.starts = np.concatenate([[0], newlines + 1]).astype(np.int64)
        self.ends = np.concatenate([newlines, [len(data)]]).astype(np.int64)
        self.frames: list[pd.DataFrame] = []
        self.rows: list[np.ndarray] = []
        self.bad: list[tuple[int, str, str]] = []
        self.alone = self._suspect(raw)

    def _suspect(self, raw: np.ndarray) -> np.ndarray:
        """Lines pyarrow may not be handed as they are: not starting with `{`, too many
        brackets for the depth limit, or too long."""
        solid = np.r_[np.flatnonzero(~np.isin(raw, _SPACE)), len(raw)]  # and an end mark
        head = solid[np.searchsorted(solid, self.starts)]  # each line's first non-space byte
        nonblank = head < self.ends
        starts_object = np.zeros(len(self.starts), dtype=bool)
        starts_object[nonblank] = raw[head[nonblank]] == 0x7B
        opens = np.concatenate([[0], np.cumsum((raw == 0x7B) | (raw == 0x5B))])
        brackets = opens[self.ends] - opens[self.starts]
        too_long = self.ends - self.starts > self.limits.max_line
        suspect = ~starts_object | (brackets > self.limits.max_depth) | too_long
        try:  # pyarrow takes bytes that are not UTF-8 into its strings
            self.data.decode("utf-8")
        except UnicodeDecodeError:  # rare: find the lines, one by one
            suspect |= ~np.array([is_utf8(self._line(i)) for i in range(len(self.starts))])
        return nonblank & suspect

    def _line(self, index: int) -> bytes:
        return self.data[self.starts[index] : self.ends[index]]

    def run(self) -> Parsed:
        cuts = np.flatnonzero(np.diff(self.alone.astype(np.int8))) + 1
        bounds = np.concatenate([[0], cuts, [len(self.starts)]])
        for lo, hi in zip(bounds[:-1], bounds[1:], strict=True):
            if self.alone[lo]:
                self._by_line(int(lo), int(hi))
            else:
                self._piece(int(lo), int(hi), whole=True)
        if not self.frames:
            return Parsed(pd.DataFrame(), np.zeros(0, dtype=np.int64), self.bad)
        return Parsed(_concat(self.frames), np.concatenate(self.rows), sorted(self.bad))

    def _piece(self, lo: int, hi: int, whole: bool = False) -> None:
        if hi - lo <= PER_LINE and not whole:
            self._by_line(lo, hi)
            return
        start, end = self.starts[lo], self.ends[hi - 1]
        try:
            table = pajson.read_json(pa.BufferReader(self.buffer.slice(start, end - start)))
        except pa.ArrowInvalid:
            if hi - lo <= 1:
                self._by_line(lo, hi)
                return
            mid = (lo + hi) // 2
            self._piece(lo, mid)
            self._piece(mid, hi)
            return
        lines = self._nonblank(lo, hi, table.num_rows)
        if lines is None:
            self._by_line(lo, hi)
        elif len(lines):
            self.frames.append(self.convert(table))
            self.rows.append(lines + 1)

    def _nonblank(self, lo: int, hi: int, n: int) -> np.ndarray | None:
        """Indices of the non-empty lines in [lo, hi) when they are the n rows pyarrow read."""
        lines = lo + np.flatnonzero(self.ends[lo:hi] > self.starts[lo:hi])
        if len(lines) != n:  # blank lines holding whitespace ("\r", spaces)
            lines = np.array(
                [i for i in lines if self.data[self.starts[i] : self.ends[i]].strip()],
                dtype=np.int64,
            )
        return lines if len(lines) == n else None

    def _by_line(self, lo: int, hi: int) -> None:
        """Find the bad lines of [lo, hi); read the good ones as pyarrow would, so that their
        types match the other pieces'."""
        good, rows, records = [], [], []
        for index in range(lo, hi):
            line = self._line(index)
            if not line.strip():
                continue
            raw = json.dumps(line[:RAW_LIMIT].decode("utf-8", "replace"))
            if not is_utf8(line):
                self.bad.append((index + 1, NOT_UTF8, raw))
                continue
            if len(line) > self.limits.max_line:
                self.bad.append((index + 1, f"line longer than {self.limits.max_line} bytes", raw))
                continue
            try:
                value = json.loads(line)
            except RecursionError:
                self.bad.append((index + 1, f"nested deeper than {self.limits.max_depth}", raw))
                continue
            except ValueError:
                self.bad.append((index + 1, "invalid JSON", raw))
                continue
            if isinstance(value, dict) and depth(value) > self.limits.max_depth:
                self.bad.append((index + 1, f"nested deeper than {self.limits.max_depth}", raw))
            elif isinstance(value, dict):
                good.append(line)
                records.append(value)
                rows.append(index + 1)
            else:
                self.bad.append((index + 1, NOT_OBJECT, json.dumps(value)[:RAW_LIMIT]))
        if not records:
            return
        try:
            frame = self.convert(pajson.read_json(pa.BufferReader(b"\n".join(good))))
        except pa.ArrowInvalid:  # a field whose type changes between lines
            frame = pd.DataFrame.from_records(records)
            frame = frame[[c for c in frame.columns if c in self.names]]
        self.frames.append(frame)
        self.rows.append(np.array(rows, dtype=np.int64))


def _concat(frames: list[pd.DataFrame]) -> pd.DataFrame:
    """Concatenate pieces; a column that is all null (or absent) in a piece takes the type it
    has in the others, so that one empty column does not turn a whole column into objects."""
    if len(frames) == 1:
        return frames[0]
    columns = list(dict.fromkeys(c for f in frames for c in f.columns))
    filled = [{c for c in f.columns if f[c].notna().any()} for f in frames]
    dtypes = {}
    for name in columns:
        kinds = {f[name].dtype for f, full in zip(frames, filled, strict=True) if name in full}
        if len(kinds) == 1:
            dtypes[name] = kinds.pop()
    aligned = []
    for frame, full in zip(frames, filled, strict=True):
        empty = {
            n: pd.Series(None, index=frame.index, dtype=d)
            for n, d in dtypes.items()
            if n not in full
        }
        # a column absent here whose type the others do not agree on: missing values
        aligned.append(frame.assign(**empty).reindex(columns=columns))
    return pd.concat(aligned, ignore_index=True)
