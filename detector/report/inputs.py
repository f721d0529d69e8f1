"""What the report reads beside the scores: the cases' telemetry and their enriched access events.

Both go through the project's one ingest path (`ingest.read_table`), limited to the window the
cases span, then to each case's tenant (and job) and time range.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from .. import columns as c
from ..config import Settings
from ..enrich import enrich_access, open_database
from ..ingest import read_table
from ..schema import ACCESS, TELEMETRY, TENANTS

log = logging.getLogger(__name__)
SAMPLE_COLUMNS = ["timestamp", "host", "gpu", "gpu_util"]
EVENT_COLUMNS = ["timestamp", "src_ip", "event", "country", "asn", "as_org", "restricted"]


def case_samples(
    paths: Sequence[Path], cases: pd.DataFrame, fmt: str = "auto"
) -> dict[str, pd.DataFrame]:
    """Per case (session id): the telemetry samples of its tenant, job and time range."""
    table = _read(paths, TELEMETRY, cases, pd.Timedelta(0), fmt)
    return {
        case[c.SESSION_ID]: table.loc[_in_case(table, case, pd.Timedelta(0)), SAMPLE_COLUMNS]
        for _, case in cases.iterrows()
    }


def case_events(
    paths: Sequence[Path],
    cases: pd.DataFrame,
    settings: Settings,
    tenants: Path | None = None,
    geoip_db: Sequence[Path] = (),
    fmt: str = "auto",
) -> dict[str, pd.DataFrame]:
    """Per case: its tenant's access events, enriched (country, AS, restricted), from the origin
    features' look-back before the start to the end of the session."""
    lookback = pd.Timedelta(seconds=settings.sessions.access_lookback_seconds)
    table = _read(paths, ACCESS, cases, lookback, fmt)
    kyc = read_table([tenants], TENANTS).table if tenants else None
    table, _ = enrich_access(table, open_database(geoip_db), settings, kyc)
    return {
        case[c.SESSION_ID]: table.loc[_in_case(table, case, lookback), EVENT_COLUMNS]
        for _, case in cases.iterrows()
    }


def _read(
    paths: Sequence[Path], schema, cases: pd.DataFrame, lookback: pd.Timedelta, fmt: str
) -> pd.DataFrame:
    since = pd.Timestamp(cases[c.START].min()) - lookback
    until = pd.Timestamp(cases[c.END].max()) + pd.Timedelta(seconds=1)
    loaded = read_table(paths, schema, fmt=fmt, since=since, until=until)
    if loaded.counts.quarantined:
        log.warning(
            "%s: %d of %d rows rejected while reading for the report",
            schema.name,
            loaded.counts.quarantined,
            loaded.counts.read,
        )
    table = loaded.table
    return table[table["tenant_id"].isin(set(cases[c.TENANT].astype(str)))]


def _in_case(table: pd.DataFrame, case: pd.Series, lookback: pd.Timedelta) -> pd.Series:
    keep = (
        (table["tenant_id"] == case[c.TENANT])
        & (table["timestamp"] >= case[c.START] - lookback)
        & (table["timestamp"] <= case[c.END])
    )
    job = case.get(c.JOB)
    if "job_id" in table and isinstance(job, str) and job:
        keep &= table["job_id"] == job
    return keep
