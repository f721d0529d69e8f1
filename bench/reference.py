"""The DuckDB reference: the issue's reference feature set, in SQL, on the same Parquet file.

Per session (a tenant's job): rows, distinct GPUs and hosts, duration, mean/std/p95 of
gpu_util, busy fraction >= 90, mean SM and tensor activity, max memory, energy, NVLink bytes,
and the lag-1 autocorrelation of the session's mean-over-GPUs utilisation.

    .venv/bin/python bench/reference.py bench/data/1e6/telemetry.parquet
"""

from __future__ import annotations

import argparse
import json
import time

import duckdb

SQL = """
WITH t AS (
  SELECT tenant_id, coalesce(job_id, '') AS job, host, gpu, epoch(timestamp) AS ts, gpu_util,
         sm_active, tensor_active, fb_used_mib, power_w,
         coalesce(nvlink_tx_bps, 0) + coalesce(nvlink_rx_bps, 0) AS nvlink
  FROM read_parquet(?)
),
per_session AS (
  SELECT tenant_id, job, count(*) AS n_rows, count(DISTINCT (host, gpu)) AS n_gpus,
         count(DISTINCT host) AS n_hosts, max(ts) - min(ts) AS duration_s,
         avg(gpu_util) AS util_mean, stddev_pop(gpu_util) AS util_std,
         quantile_cont(gpu_util, 0.95) AS util_p95, avg((gpu_util >= 90)::DOUBLE) AS busy_frac,
         avg(sm_active) AS sm_active_mean, avg(tensor_active) AS tensor_active_mean,
         max(fb_used_mib) AS fb_max_mib, sum(power_w) * ? AS energy_j, sum(nvlink) * ? AS nvlink_b
  FROM t GROUP BY tenant_id, job
),
series AS (
  SELECT tenant_id, job, ts, avg(gpu_util) AS m FROM t GROUP BY tenant_id, job, ts
),
lagged AS (
  SELECT tenant_id, job, m, lag(m) OVER (PARTITION BY tenant_id, job ORDER BY ts) AS prev
  FROM series
),
autocorr AS (
  SELECT tenant_id, job, corr(m, prev) AS util_autocorr FROM lagged GROUP BY tenant_id, job
)
SELECT * FROM per_session JOIN autocorr USING (tenant_id, job)
"""


def reference_features(path: str, interval_s: float = 15.0):
    """The reference feature table (a pandas DataFrame) of one Parquet file or glob."""
    con = duckdb.connect()
    return con.execute(SQL, [path, interval_s, interval_s]).df()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("path")
    parser.add_argument("--interval", type=float, default=15.0)
    args = parser.parse_args()
    t0 = time.perf_counter()
    table = reference_features(args.path, args.interval)
    print(json.dumps({"sessions": len(table), "seconds": time.perf_counter() - t0}))


if __name__ == "__main__":
    main()
