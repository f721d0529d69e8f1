"""The partition pass checks typed Parquet columns in Arrow (`validate_arrow`) and sends only
the failing rows through pandas `validate`: it must accept, type and quarantine exactly as
`read_table` does."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from detector.engine.partition import partition_telemetry, read_partition
from detector.ingest import open_source, read_table
from detector.ingest.validate import validate_arrow
from detector.schema import TELEMETRY


def _messy(n: int, unit: str, tz: str | None) -> pa.Table:
    rng = np.random.default_rng(7)
    scale = {"s": 1, "ms": 10**3, "us": 10**6, "ns": 10**9}[unit]
    ts = (np.int64(1_790_000_000) + np.arange(n) * 15) * scale
    if unit != "ns":
        ts[3] = 10**11 * scale  # the year 5138: beyond datetime64[ns]
    util = rng.uniform(0, 100, n).astype(np.float32)
    util[[5, 6, 7]] = [np.nan, np.inf, 250.0]
    fb = rng.uniform(0, 1e4, n)
    fb[[8, 9, 10]] = [-1.0, -np.inf, np.nan]
    tenants = np.array(["t1", " t2 ", "t3\t", "", "  "], dtype=object)[rng.integers(0, 5, n)]
    jobs = np.array(["j1", None, " ", "j2 "], dtype=object)[rng.integers(0, 4, n)]
    return pa.table(
        {
            "timestamp": pa.array(
                np.where(np.arange(n) == 11, 0, ts),
                pa.timestamp(unit, tz=tz),
                mask=np.arange(n) == 12,
            ),
            "tenant_id": pa.array(tenants, pa.string()),
            "host": pa.array([f"h{i % 3}" for i in range(n)], pa.large_string()),
            "gpu": pa.array([str(i % 4) for i in range(n)], pa.string()),
            "gpu_util": pa.array(util, mask=np.arange(n) == 13),
            "fb_used_mib": pa.array(fb),
            "power_w": pa.array(np.where(np.arange(n) == 14, 6000.0, 300.0)),
            "nvlink_tx_bps": pa.array(np.where(np.arange(n) == 15, np.inf, 1e9)),
            "job_id": pa.array(jobs, pa.string()),
        }
    )


@pytest.mark.parametrize(
    ("unit", "tz"), [("us", "UTC"), ("s", None), ("ns", "Europe/Berlin"), ("ms", None)]
)
def test_pass_accepts_types_and_quarantines_as_read_table(tmp_path: Path, unit, tz):
    path = tmp_path / "t.parquet"
    pq.write_table(_messy(400, unit, tz), path, row_group_size=150)
    parts = partition_telemetry(open_source([path], TELEMETRY), tmp_path / "parts", 3)
    got = pd.concat([read_partition(p, parts.files)[0] for p in parts.paths])
    want = read_table([path], TELEMETRY)
    assert len(parts.quarantine) == want.counts.quarantined > 10
    assert parts.counts.accepted == want.counts.accepted
    got = got.astype({c: want.table[c].dtype for c in got.columns})  # text: categoricals
    key = ["timestamp", "tenant_id", "host", "gpu"]
    pd.testing.assert_frame_equal(
        got.sort_values(key).reset_index(drop=True),
        want.table.sort_values(key).reset_index(drop=True)[got.columns],
        check_dtype=False,
    )
    columns = ["file", "row", "column", "reason", "raw"]
    pd.testing.assert_frame_equal(
        parts.quarantine.sort_values("row")[columns].reset_index(drop=True),
        want.quarantine.sort_values("row")[columns].reset_index(drop=True),
    )


def test_other_types_take_the_general_path():
    table = pa.table(
        {
            "timestamp": pa.array(["2026-01-01T00:00:00Z"]),
            "tenant_id": ["t"],
            "host": ["h"],
            "gpu": ["0"],
            "gpu_util": pa.array([50], pa.int64()),
        }
    )
    assert validate_arrow(table, TELEMETRY) is None
    typed, ok = validate_arrow(
        table.set_column(
            0, "timestamp", pa.array([pd.Timestamp("2026-01-01", tz="UTC")])
        ).set_column(4, "gpu_util", pa.array([50.0])),
        TELEMETRY,
    )
    assert ok.tolist() == [True] and typed.schema.field("timestamp").type.unit == "ns"
