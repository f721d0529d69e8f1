"""State across scheduled runs: what an hourly run needs so it agrees with one run over all.

A run with `--state DIR` reads only telemetry and access files it has not read before (a
manifest of path, size and mtime; a file that changed is read again for rows after the
watermark only) and scores them together with what the state carries:

- the raw telemetry rows of sessions that may still grow (their last active sample within
  the session gap of the watermark) and of the last gap, so a session that spans runs is cut
  from all of its rows and keeps its id (a hash of tenant, job and start);
- the workload features of closed sessions (the per-row part, never recomputed): the global
  pass (entities, origin evidence, compute accounting, risk) runs again over all of them, as
  one run over the whole period would;
- the raw access events of the origin history window, read again into the origin evidence;
- per (tenant, job) the time of its last active sample that is no longer carried (`settled`)
  and where its carried rows begin (`horizon`): late rows (at or before the watermark) are
  merged when they lie after both (their session is still open), else quarantined with a
  reason, so they are counted and never silently lost;
- alert identities (`alerts`): id, first and last run seen, status new, ongoing or resolved.

Everything lives in one SQLite file (standard library, one transaction per run: a killed run
leaves the previous state whole; a second run waits for the first or fails clearly). Tables
are stored as Parquet blobs, which keep every pandas dtype; alerts and the file manifest are
plain SQL tables an operator can query.
"""

from __future__ import annotations

import hashlib
import io
import json
import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from . import quarantine
from .config import Settings
from .errors import InputError
from .schema import TELEMETRY
from .timeutil import NS, epoch_ns

FILE_NAME = "state.sqlite"
VERSION = 1
DEFAULT_RETENTION_DAYS = 30.0  # `gpuwatch state prune`: closed sessions kept this long
BUSY_SECONDS = 60.0  # how long a run waits for another run that holds the state
LATE_REASON = "late: its session closed in an earlier run"
ALERT_STATUSES = ("new", "ongoing", "resolved")
GROUP_COLUMNS = ["tenant_id", "job_id", "settled", "horizon"]
ALERT_COLUMNS = [
    "alert_id",
    "session_id",
    "tenant_id",
    "entity_id",
    "session_end",
    "first_seen",
    "last_seen",
    "status",
    "risk_score",
]
_NEVER = np.iinfo(np.int64).min // 2  # settled mark of a group with none
_FRAMES = ("telemetry", "sessions", "access", "groups")
_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS frames (name TEXT PRIMARY KEY, data BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS files (
  kind TEXT NOT NULL, path TEXT NOT NULL, size INTEGER NOT NULL, mtime_ns INTEGER NOT NULL,
  PRIMARY KEY (kind, path));
CREATE TABLE IF NOT EXISTS alerts (
  alert_id TEXT PRIMARY KEY, session_id TEXT NOT NULL, tenant_id TEXT NOT NULL, entity_id TEXT,
  session_end TEXT NOT NULL, first_seen TEXT NOT NULL, last_seen TEXT NOT NULL,
  status TEXT NOT NULL, risk_score REAL);
"""


class StateError(InputError):
    """The state store cannot be used (locked by another run, another version, damaged)."""


@dataclass
class State:
    """What one run hands to the next (see the module docstring)."""

    watermark: pd.Timestamp | None = None  # latest telemetry timestamp scored
    telemetry: pd.DataFrame = field(default_factory=pd.DataFrame)
    sessions: pd.DataFrame = field(default_factory=pd.DataFrame)
    access: pd.DataFrame = field(default_factory=pd.DataFrame)
    groups: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=GROUP_COLUMNS))
    files: pd.DataFrame = field(
        default_factory=lambda: pd.DataFrame(columns=["kind", "path", "size", "mtime_ns"])
    )
    alerts: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=ALERT_COLUMNS))
    runs: int = 0
    late_merged: int = 0  # of the last run: late rows merged into open sessions
    late_reported: int = 0  # of the last run: late rows quarantined


# ---------------------------------------------------------------- the store


@contextmanager
def opened(directory: Path, write: bool = True) -> Iterator[sqlite3.Connection]:
    """The state database of `directory` in one transaction, committed if the block ends
    normally. Writers hold the write lock from the start, so runs never interleave."""
    directory = Path(directory)
    path = directory / FILE_NAME
    if not write and not path.exists():
        raise InputError("no state here (run `gpuwatch score --state` first)", path=str(directory))
    try:
        directory.mkdir(parents=True, exist_ok=True)
        con = sqlite3.connect(path, timeout=BUSY_SECONDS, isolation_level=None)
    except (OSError, sqlite3.Error) as exc:
        raise StateError(f"cannot open the state: {exc}", path=str(path)) from exc
    try:
        con.execute("BEGIN IMMEDIATE" if write else "BEGIN")
        for statement in _SCHEMA.split(";") if write else ():
            con.execute(statement)
        yield con
        con.execute("COMMIT")
    except sqlite3.OperationalError as exc:
        raise StateError(
            f"state busy or damaged ({exc}); another run may hold it", path=str(path)
        ) from exc
    except sqlite3.DatabaseError as exc:
        raise StateError(f"state damaged: {exc}", path=str(path)) from exc
    finally:
        if con.in_transaction:
            con.execute("ROLLBACK")
        con.close()


def load(con: sqlite3.Connection) -> State:
    """The state held in `con` (an empty one if nothing was saved yet)."""
    try:
        return _load(con)
    except (sqlite3.Error, pd.errors.DatabaseError, pa.ArrowException, ValueError) as exc:
        raise StateError(f"state damaged or of another version: {exc}") from exc


def _load(con: sqlite3.Connection) -> State:
    meta = dict(con.execute("SELECT key, value FROM meta").fetchall())
    if meta and int(meta.get("version", 0)) != VERSION:
        raise StateError(f"state version {meta.get('version')}, this gpuwatch reads {VERSION}")
    frames = {name: _frame(blob) for name, blob in con.execute("SELECT name, data FROM frames")}
    state = State(
        watermark=pd.Timestamp(int(meta["watermark"]), tz="UTC") if "watermark" in meta else None,
        files=pd.read_sql_query("SELECT kind, path, size, mtime_ns FROM files", con),
        alerts=pd.read_sql_query(f"SELECT {', '.join(ALERT_COLUMNS)} FROM alerts", con),
        runs=int(meta.get("runs", 0)),
        late_merged=int(meta.get("late_merged", 0)),
        late_reported=int(meta.get("late_reported", 0)),
    )
    return replace(state, **{k: v for k, v in frames.items() if k in _FRAMES})


def save(con: sqlite3.Connection, state: State) -> None:
    meta = {"version": VERSION, "runs": state.runs}
    meta |= {"late_merged": state.late_merged, "late_reported": state.late_reported}
    if state.watermark is not None:
        meta["watermark"] = int(state.watermark.as_unit("ns").value)
    con.execute("DELETE FROM meta")
    con.executemany("INSERT INTO meta VALUES (?, ?)", [(k, str(v)) for k, v in meta.items()])
    con.execute("DELETE FROM frames")
    con.executemany(
        "INSERT INTO frames VALUES (?, ?)",
        [(name, _blob(getattr(state, name))) for name in _FRAMES],
    )
    con.execute("DELETE FROM files")
    con.executemany(
        "INSERT INTO files VALUES (?, ?, ?, ?)",
        state.files[["kind", "path", "size", "mtime_ns"]].itertuples(index=False, name=None),
    )
    con.execute("DELETE FROM alerts")
    rows = state.alerts[ALERT_COLUMNS].astype(object).where(state.alerts.notna(), None)
    con.executemany(
        f"INSERT INTO alerts VALUES ({', '.join('?' * len(ALERT_COLUMNS))})",
        rows.itertuples(index=False, name=None),
    )


def _blob(frame: pd.DataFrame) -> bytes:
    out = io.BytesIO()
    frame.reset_index(drop=True).to_parquet(out, index=False)
    return out.getvalue()


def _frame(blob: bytes) -> pd.DataFrame:
    return pd.read_parquet(io.BytesIO(blob))


# ---------------------------------------------------------------- input files


def split_files(state: State, kind: str, files: Sequence[Path]) -> tuple[list[Path], list[Path]]:
    """(new, changed) among `files`: new ones are read whole, changed ones (size or mtime
    differ from the manifest) only after the watermark; unchanged ones are not read."""
    mine = state.files[state.files["kind"] == kind]
    known = {
        path: (int(size), int(mtime))
        for path, size, mtime in zip(mine["path"], mine["size"], mine["mtime_ns"], strict=True)
    }
    new, changed = [], []
    for path in files:
        stamp = known.get(str(Path(path).resolve()))
        if stamp is None:
            new.append(path)
        elif stamp != _stamp(path):
            changed.append(path)
    return new, changed


def record_files(files: pd.DataFrame, kind: str, paths: Sequence[Path]) -> pd.DataFrame:
    """The manifest with `paths` recorded as read (their size and mtime now)."""
    rows = pd.DataFrame(
        [(kind, str(Path(p).resolve()), *_stamp(p)) for p in paths],
        columns=["kind", "path", "size", "mtime_ns"],
    )
    merged = pd.concat([files, rows], ignore_index=True) if len(files) else rows
    return merged.drop_duplicates(["kind", "path"], keep="last").reset_index(drop=True)


def _stamp(path: Path) -> tuple[int, int]:
    st = Path(path).stat()
    return int(st.st_size), int(st.st_mtime_ns)


# ---------------------------------------------------------------- telemetry


def merge_late(
    state: State, new: pd.DataFrame, gap_seconds: float
) -> tuple[pd.DataFrame, pd.DataFrame, int]:
    """(rows to score: carried rows, then new ones; quarantine of late rows that cannot be
    merged; how many late rows were merged). A row at or before the watermark is merged when
    it lies at or after its group's carried rows begin and more than a gap after its last
    settled active sample: it can then change only sessions cut again from carried rows.
    Rows of a group's closed sessions are gone, so a late row among them is quarantined with
    LATE_REASON."""
    carried = state.telemetry
    if state.watermark is None or new.empty:
        return _concat([carried, new]), quarantine.empty(), 0
    ts = epoch_ns(new["timestamp"])
    late = ts <= state.watermark.as_unit("ns").value
    ok = ~late
    if late.any():
        groups = state.groups.assign(job_id=state.groups["job_id"].astype("string").fillna(""))
        key = pd.MultiIndex.from_frame(
            pd.DataFrame({"tenant_id": new["tenant_id"].astype(str), "job_id": _job(new)})
        )
        table = groups.set_index(["tenant_id", "job_id"])
        default_horizon = state.watermark.as_unit("ns").value - int(gap_seconds * NS)
        settled = table["settled"].reindex(key).fillna(_NEVER)
        horizon = table["horizon"].reindex(key).fillna(default_horizon)
        gap = int(gap_seconds * NS)
        mergeable = (ts >= horizon.to_numpy(np.int64)) & (ts > settled.to_numpy(np.int64) + gap)
        ok |= late & mergeable
    rejected = new[~ok]
    report = quarantine.rejected(
        "telemetry",
        "(late rows)",
        np.flatnonzero(~ok) + 1,
        LATE_REASON,
        column="timestamp",
        raw=[
            json.dumps(
                {
                    "tenant_id": str(r.tenant_id),
                    "host": str(r.host),
                    "gpu": str(r.gpu),
                    "timestamp": str(r.timestamp),
                }
            )
            for r in rejected[["tenant_id", "host", "gpu", "timestamp"]].itertuples()
        ],
    )
    return _concat([carried, new[ok]]), report, int((late & ok).sum())


def advance(
    state: State,
    rows: pd.DataFrame,
    fresh: pd.DataFrame,
    settings: Settings,
) -> tuple[pd.DataFrame, State]:
    """(every session with its workload features, the next state's telemetry part).

    `rows` are the telemetry rows scored in this run (carried, then new), `fresh` the sessions
    cut from them with their workload features. Per (tenant, job), the last span of active
    samples (whether or not it has enough samples to be a session yet) is open while it ends
    within a gap of the new watermark: its rows, and all rows of the last gap, are carried.
    Sessions that end earlier are closed: stored with their features, their rows dropped."""
    gap = int(settings.sessions.gap_seconds * NS)
    if rows.empty:
        return _order(_concat([state.sessions, fresh])), state
    rows = rows[~rows.duplicated(subset=list(TELEMETRY.key), keep="first")]
    ts = epoch_ns(rows["timestamp"])
    mark = int(ts.max())
    if state.watermark is not None:
        mark = max(mark, state.watermark.as_unit("ns").value)
    tenant, job = rows["tenant_id"].astype(str).to_numpy(object), _job(rows)
    active = rows["gpu_util"].to_numpy(float) > settings.sessions.active_util_pct
    starts = _open_starts(tenant[active], job[active], ts[active], mark, gap)
    key = pd.MultiIndex.from_arrays([tenant, job], names=["tenant_id", "job_id"])
    horizon = np.minimum(starts.reindex(key).fillna(mark - gap).to_numpy(np.int64), mark - gap)
    keep = ts >= horizon
    dropped = pd.Series(ts, index=key)[active & ~keep]
    old = state.groups.set_index(["tenant_id", "job_id"])["settled"]
    settled = pd.concat([old, dropped]).groupby(level=[0, 1]).max().rename("settled")
    groups = pd.concat([settled, np.minimum(starts, mark - gap).rename("horizon")], axis=1)
    groups = groups.rename_axis(["tenant_id", "job_id"]).reset_index()
    groups["settled"] = groups["settled"].fillna(_NEVER).astype(np.int64)
    groups["horizon"] = groups["horizon"].astype("Int64")
    fresh_open = mark - epoch_ns(fresh["end"]) <= gap if len(fresh) else np.zeros(0, dtype=bool)
    nxt = replace(
        state,
        watermark=pd.Timestamp(mark, tz="UTC"),
        telemetry=rows[keep].reset_index(drop=True),
        sessions=_order(_concat([state.sessions, fresh[~fresh_open]])),
        groups=groups[GROUP_COLUMNS],
    )
    return _order(_concat([state.sessions, fresh])), nxt


def _open_starts(
    tenant: np.ndarray, job: np.ndarray, ts: np.ndarray, mark: int, gap: int
) -> pd.Series:
    """Per (tenant, job) with an open last span of active samples, the span's start (ns)."""
    if not len(ts):
        return pd.Series(
            dtype=np.int64, index=pd.MultiIndex.from_arrays([[], []], names=["tenant_id", "job_id"])
        )
    frame = pd.DataFrame({"tenant_id": tenant, "job_id": job, "ts": ts})
    frame = frame.sort_values(["tenant_id", "job_id", "ts"], kind="stable")
    group = frame.groupby(["tenant_id", "job_id"], sort=False)
    t = frame["ts"].to_numpy()
    new_span = (group.cumcount().to_numpy() == 0) | (np.r_[0, np.diff(t)] > gap)
    frame["span"] = np.cumsum(new_span)
    last = frame[frame["span"] == group["span"].transform("max")]
    spans = last.groupby(["tenant_id", "job_id"])["ts"].agg(["min", "max"])
    return spans.loc[mark - spans["max"] <= gap, "min"]


def _job(frame: pd.DataFrame) -> np.ndarray:
    return frame["job_id"].astype("string").fillna("").astype(str).to_numpy(object)


def _concat(frames: Sequence[pd.DataFrame]) -> pd.DataFrame:
    frames = [f for f in frames if len(f)]
    if not frames:
        return pd.DataFrame()
    return pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]


def _order(sessions: pd.DataFrame) -> pd.DataFrame:
    """Sessions in the engine's stable order: tenant, start, job, id."""
    if sessions.empty:
        return sessions
    key = sessions[["tenant_id", "start", "job_id", "session_id"]].assign(
        job_id=sessions["job_id"].astype("string").fillna("")
    )
    order = key.sort_values(list(key.columns), kind="stable").index
    return sessions.loc[order].reset_index(drop=True)


# ---------------------------------------------------------------- access


def keep_access(
    access: pd.DataFrame, until: pd.Timestamp | None, settings: Settings
) -> pd.DataFrame:
    """Raw access events still inside the origin history window that ends at `until`."""
    if access.empty or until is None:
        return access
    since = until - pd.Timedelta(days=settings.features.origin_history_days)
    return access[access["timestamp"] >= since].reset_index(drop=True)


# ---------------------------------------------------------------- alerts


def alert_ids(scores: pd.DataFrame) -> pd.Series:
    """Stable alert ids: a hash of tenant and session id."""
    return pd.Series(
        [
            hashlib.sha256(f"{t}\x1f{s}".encode()).hexdigest()[:16]
            for t, s in zip(
                scores["tenant_id"].astype(str), scores["session_id"].astype(str), strict=True
            )
        ],
        index=scores.index,
        dtype=object,
    )


def track_alerts(
    scores: pd.DataFrame, alerts: pd.DataFrame, seen: str
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(scores with alert_id, alert_status, first_seen, last_seen; the alerts table).

    A session in alert that was not (or no longer) in alert before is new, one that still is
    is ongoing; an alert whose session no longer alerts (or left the state) is resolved. Runs
    are named by `seen` (UTC, ISO 8601)."""
    ids = alert_ids(scores)
    firing = scores["alert"].fillna(False).astype(bool).to_numpy()
    before = (
        alerts.set_index("alert_id") if len(alerts) else pd.DataFrame(columns=ALERT_COLUMNS[1:])
    )
    was_open = before["status"].isin(["new", "ongoing"])
    status = np.where(ids.isin(before.index[was_open]).to_numpy(), "ongoing", "new")
    now = pd.DataFrame(
        {
            "alert_id": ids[firing],
            "session_id": scores["session_id"].astype(str)[firing],
            "tenant_id": scores["tenant_id"].astype(str)[firing],
            "entity_id": scores["entity_id"].astype(str)[firing] if "entity_id" in scores else None,
            "session_end": [t.isoformat() for t in pd.to_datetime(scores["end"], utc=True)[firing]],
            "first_seen": before["first_seen"].reindex(ids[firing]).fillna(seen).to_numpy(),
            "last_seen": seen,
            "status": status[firing],
            "risk_score": scores["risk_score"][firing].astype(float),
        }
    )
    quiet = before[~before.index.isin(ids[firing])].reset_index()
    quiet.loc[quiet["status"].isin(["new", "ongoing"]), "status"] = "resolved"
    table = pd.concat([now, quiet[ALERT_COLUMNS]], ignore_index=True) if len(quiet) else now
    by_id = table.set_index("alert_id")
    out = scores.copy()
    known = ids.isin(by_id.index).to_numpy()
    out["alert_id"] = pd.array(np.where(known, ids, None), dtype="string")
    for column in ("alert_status", "first_seen", "last_seen"):
        source = "status" if column == "alert_status" else column
        out[column] = pd.array(by_id[source].reindex(ids).to_numpy(), dtype="string")
    return out, table[ALERT_COLUMNS].reset_index(drop=True)


# ---------------------------------------------------------------- operators


def summary(state: State) -> dict[str, object]:
    """What the state holds, for `gpuwatch state show`."""
    counts = state.alerts["status"].value_counts() if len(state.alerts) else pd.Series()
    sessions = state.sessions
    return {
        "runs": state.runs,
        "watermark": state.watermark.isoformat() if state.watermark is not None else None,
        "closed_sessions": len(sessions),
        "oldest_closed_session_end": str(sessions["end"].min()) if len(sessions) else None,
        "carried_telemetry_rows": len(state.telemetry),
        "open_groups": int(state.groups["horizon"].notna().sum()) if len(state.groups) else 0,
        "access_events": len(state.access),
        "files_read": {k: int(v) for k, v in state.files["kind"].value_counts().items()},
        "alerts": {s: int(counts.get(s, 0)) for s in ALERT_STATUSES},
        "last_run_late_rows": {"merged": state.late_merged, "quarantined": state.late_reported},
    }


def prune(state: State, keep_days: float, gap_seconds: float) -> tuple[State, dict[str, int]]:
    """Drop closed sessions that ended more than `keep_days` before the watermark, resolved
    alerts of sessions that ended before then, files gone from the disk from the manifest,
    and the settled marks of groups with nothing newer (late rows of those groups are still
    judged against the watermark's horizon, more than two gaps later)."""
    if keep_days * 86400 < 2 * gap_seconds:
        raise InputError(f"keep at least two session gaps ({2 * gap_seconds:g} s) of history")
    if state.watermark is None:
        return state, {"sessions": 0, "alerts": 0, "groups": 0, "files": 0}
    cutoff = state.watermark - pd.Timedelta(days=keep_days)
    sessions = state.sessions
    old = (sessions["end"] < cutoff).to_numpy() if len(sessions) else np.zeros(0, dtype=bool)
    alerts = state.alerts
    stale = (alerts["status"] == "resolved") & (
        pd.to_datetime(alerts["session_end"], utc=True) < cutoff
    )
    groups = state.groups
    idle = groups["horizon"].isna() & (groups["settled"] < cutoff.as_unit("ns").value)
    gone = ~state.files["path"].map(lambda p: Path(p).exists()).astype(bool)
    pruned = replace(
        state,
        sessions=sessions[~old].reset_index(drop=True),
        alerts=alerts[~stale].reset_index(drop=True),
        groups=groups[~idle].reset_index(drop=True),
        files=state.files[~gone].reset_index(drop=True),
    )
    return pruned, {
        "sessions": int(old.sum()),
        "alerts": int(stale.sum()),
        "groups": int(idle.sum()),
        "files": int(gone.sum()),
    }
