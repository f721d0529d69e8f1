"""Bench data: a simulated fleet of about N telemetry rows, generated one day at a time.

Each day is one `gpuwatch simulate` run (same seed and tenants, the next start date), so the
simulator never holds more than a day; the days are then streamed into one time-sorted
`telemetry.parquet` (row groups of 1M rows), their access logs concatenated (gzip members) and
the first day's tenant registry kept. Peak memory: one simulated day.
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import tempfile
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq

from detector.simulate import simulate

INTERVAL_S = 15  # a fleet scraped every 15 s
ROWS_PER_TENANT_DAY = 22_500  # at 15 s, measured on the simulator (~5,600 at 60 s)
MAX_TENANTS = 400  # keeps one simulated day near 1e7 rows
SEED = 11


def plan(rows: float) -> tuple[int, float]:
    """(tenants, days) for about `rows` rows."""
    tenants = max(4, min(MAX_TENANTS, math.ceil(rows / ROWS_PER_TENANT_DAY)))
    return tenants, max(0.1, rows / (tenants * ROWS_PER_TENANT_DAY))


def generate(rows: float, out: Path) -> dict:
    """Write telemetry.parquet, access.jsonl.gz and tenants.csv for about `rows` rows."""
    out = Path(out)
    done = out / "manifest.json"
    if done.exists():
        return json.loads(done.read_text())
    out.mkdir(parents=True, exist_ok=True)
    tenants, days = plan(rows)
    start = pd.Timestamp("2026-10-05")
    written, writer = 0, None
    with (
        tempfile.TemporaryDirectory(prefix="gpuwatch-bench-", dir=out) as tmp,
        open(out / "access.jsonl.gz", "wb") as access,
    ):
        for day in range(math.ceil(days)):
            span = min(1.0, days - day)
            chunk = Path(tmp) / f"day{day}"
            simulate(
                chunk,
                tenants,
                max(span, 0.1),
                SEED,
                INTERVAL_S,
                start=str((start + pd.Timedelta(days=day)).date()),
            )
            table = pq.read_table(chunk / "telemetry.parquet")
            if writer is None:
                writer = pq.ParquetWriter(
                    out / "telemetry.parquet", table.schema, compression="zstd"
                )
                shutil.copy(chunk / "tenants.csv", out / "tenants.csv")
            writer.write_table(table, row_group_size=1 << 20)
            written += table.num_rows
            del table
            access.write((chunk / "access.jsonl.gz").read_bytes())
            shutil.rmtree(chunk)
        if writer is not None:
            writer.close()
    manifest = {
        "rows": written,
        "tenants": tenants,
        "days": days,
        "interval_s": INTERVAL_S,
        "seed": SEED,
    }
    done.write_text(json.dumps(manifest))
    return manifest


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("rows", type=float)
    parser.add_argument("out", type=Path)
    args = parser.parse_args()
    print(json.dumps(generate(args.rows, args.out)))


if __name__ == "__main__":
    main()
