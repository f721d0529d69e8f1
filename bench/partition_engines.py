"""The partition pass, three ways, on one Parquet file (one process each, same machine):

- `gpuwatch`: ingest's validated batches written by `engine.partition` (Arrow IPC per tenant
  hash, text dictionary-encoded);
- `validate only`: the same batches, not written (what ingest alone costs);
- `duckdb`: the same validated batches handed to DuckDB, written with `COPY ... PARTITION_BY`
  on the tenant hash (Parquet, uncompressed), and DuckDB reading and partitioning the raw file
  without any validation (a floor).

Usage: python bench/partition_engines.py FILE.parquet [PARTITIONS]
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

import duckdb
import pyarrow as pa

from detector.engine.partition import partition_telemetry
from detector.ingest import open_source
from detector.ingest.validate import arrow_schema
from detector.schema import TELEMETRY


def _timed(run) -> float:
    t0 = time.perf_counter()
    run()
    return round(time.perf_counter() - t0, 2)


def main() -> None:
    path, n = Path(sys.argv[1]), int(sys.argv[2]) if len(sys.argv) > 2 else 16
    source = open_source([path], TELEMETRY)
    out: dict[str, float | int] = {"rows": sum(u.rows for u in source.units()), "partitions": n}

    def batches() -> list[pa.Table]:
        return [b.table for u in source.units() for b in source.read(u)]

    with tempfile.TemporaryDirectory() as tmp:
        out["gpuwatch"] = _timed(lambda: partition_telemetry(source, Path(tmp) / "g", n))
        out["validate_only"] = _timed(batches)

        def duck_validated() -> None:
            schema = arrow_schema(TELEMETRY)
            reader = pa.RecordBatchReader.from_batches(
                schema,
                (
                    rb
                    for t in batches()
                    for rb in t.cast(pa.schema([schema.field(c) for c in t.column_names]))
                    .select(schema.names)
                    .to_batches()
                ),
            )
            con = duckdb.connect()
            con.register("batches", reader)
            con.execute(
                f"COPY (SELECT *, hash(tenant_id) % {n} AS part FROM batches) TO '{tmp}/d' "
                "(FORMAT parquet, COMPRESSION uncompressed, PARTITION_BY (part))"
            )

        out["duckdb_on_validated"] = _timed(duck_validated)
        out["duckdb_raw_unvalidated"] = _timed(
            lambda: duckdb.connect().execute(
                f"COPY (SELECT *, hash(tenant_id) % {n} AS part FROM read_parquet('{path}')) "
                f"TO '{tmp}/r' (FORMAT parquet, COMPRESSION uncompressed, PARTITION_BY (part))"
            )
        )
    print(json.dumps(out))


if __name__ == "__main__":
    main()
