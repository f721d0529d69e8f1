"""Against a real Prometheus: backfill the samples, pull them back through gpuwatch's reader,
and get the same session features as from the Parquet they came from."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from prom_backfill import backfill, prometheus_on, write_openmetrics

from detector.config import load_settings
from detector.enrich import enrich_access, open_database
from detector.errors import InputError
from detector.features import session_features
from detector.ingest import read_table
from detector.ingest.prometheus_api import PrometheusSource, chunks, read_prometheus
from detector.schema import ACCESS, TELEMETRY
from detector.sessions import cut_sessions

ROOT = Path(__file__).resolve().parent.parent
SINCE, UNTIL = (
    pd.Timestamp("2026-10-06 00:00", tz="UTC"),
    pd.Timestamp("2026-10-06 06:00", tz="UTC"),
)
TENANTS = ["tn-fe45a1", "tn-442a3d", "tn-e1c06c", "tn-8281a3"]


def features(telemetry: pd.DataFrame) -> pd.DataFrame:
    settings = load_settings()
    sessions, samples = cut_sessions(telemetry, settings.sessions)
    access = read_table(
        [ROOT / "data/samples/access.jsonl.gz"], ACCESS, since=SINCE, until=UNTIL
    ).table
    access = access[access["tenant_id"].isin(TENANTS)].reset_index(drop=True)
    access, _ = enrich_access(access, open_database(()), settings)
    table = session_features(sessions, samples, access, settings)
    return table.sort_values("session_id").reset_index(drop=True)


def subset() -> pd.DataFrame:
    table = read_table(
        [ROOT / "data/samples/telemetry.parquet"], TELEMETRY, since=SINCE, until=UNTIL
    ).table
    return table[table["tenant_id"].isin(TENANTS)].reset_index(drop=True)


@pytest.mark.integration
def test_live_prometheus_gives_the_features_of_the_parquet(tmp_path):
    telemetry = subset()
    openmetrics = tmp_path / "dcgm.om"
    written = write_openmetrics(telemetry, openmetrics)
    assert written > len(telemetry)
    tsdb = tmp_path / "tsdb"
    backfill(openmetrics, tsdb)
    with prometheus_on(tmp_path, tsdb) as url:
        # 15 s steps: every scrape (60 s apart, jittered) is the newest at some step; 500
        # points per query forces several chunks per series
        src = PrometheusSource(url, step=15, max_points=500)
        loaded = read_prometheus(src, SINCE, UNTIL)
    assert loaded.counts.quarantined == 0
    assert loaded.counts.read == loaded.counts.accepted == len(telemetry)
    key = list(TELEMETRY.key)
    pulled = loaded.table.sort_values(key).reset_index(drop=True)
    expected = telemetry.sort_values(key).reset_index(drop=True)
    pd.testing.assert_frame_equal(pulled, expected, check_like=True)
    got, want = features(loaded.table), features(telemetry)
    assert len(want) >= 3
    pd.testing.assert_frame_equal(got, want, check_exact=False, rtol=1e-9)


@pytest.mark.integration
def test_live_prometheus_errors_are_input_errors(tmp_path):
    telemetry = subset().head(50)
    write_openmetrics(telemetry, tmp_path / "x.om")
    backfill(tmp_path / "x.om", tmp_path / "tsdb")
    with prometheus_on(tmp_path, tmp_path / "tsdb") as url:
        with pytest.raises(InputError, match="needs --since"):
            read_prometheus(PrometheusSource(url), UNTIL, SINCE)
        with pytest.raises(InputError, match="bearer token"):
            read_prometheus(
                PrometheusSource(url, bearer_token_file=tmp_path / "none"), SINCE, UNTIL
            )
        token = tmp_path / "token"
        token.write_text("s3cret\n")
        # Prometheus ignores the header; the query still works with it
        assert (
            read_prometheus(
                PrometheusSource(url, step=15, bearer_token_file=token), SINCE, UNTIL
            ).counts.accepted
            == 50
        )
        # a step too fine for the range in one query is split, never refused
        assert (
            read_prometheus(
                PrometheusSource(url, step=1, max_points=11_000),
                SINCE,
                SINCE + pd.Timedelta(hours=4),
            ).counts.read
            > 0
        )
    with pytest.raises(InputError, match="cannot query Prometheus"):
        read_prometheus(PrometheusSource(url), SINCE, UNTIL)


def test_chunks_cover_the_range_within_the_point_limit():
    for start, end, step, limit in [(0, 100, 10, 4), (0, 86_400, 1, 11_000), (5, 6, 60, 2)]:
        parts = chunks(start, end, step, limit)
        assert parts[0][0] == start and parts[-1][1] >= end
        for (a, b), nxt in zip(parts, parts[1:] + [None], strict=True):
            assert (b - a) / step + 1 <= limit
            if nxt:
                assert np.isclose(nxt[0], b + step)
