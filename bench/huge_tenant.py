"""One huge tenant against many: peak memory of the same telemetry rows as one tenant (one
long session) and as the simulator's tenants, in one run.

The simulated fleet of about N rows (`generate.py`, cached under --data) is written again as
one tenant: every row relabelled `huge`, hosts prefixed by their tenant (GPUs stay distinct),
job ids dropped, so the fleet's activity is one session over its whole span; the access log
is relabelled the same way. The feature stage (local engine) and `gpuwatch score` then run on
both inputs, each in its own process (`run.measure`: wall time, peak RSS/PSS of the process
tree), and a Markdown table gives huge / many as ratios. Run it from the repository root:
`gpuwatch score` uses the promoted model of `models/`.

    .venv/bin/python bench/huge_tenant.py 4e6 --data bench/data/huge
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from generate import generate  # noqa: E402
from run import GIB, Run, markdown, measure  # noqa: E402

HUGE = "huge"


def one_tenant(folder: Path, out: Path) -> None:
    """The fleet in `folder` as one tenant in `out` (row groups streamed, same row order)."""
    out.mkdir(parents=True, exist_ok=True)
    if (out / "telemetry.parquet").exists():
        return
    source = pq.ParquetFile(folder / "telemetry.parquet")
    with pq.ParquetWriter(out / "tmp.parquet", source.schema_arrow, compression="zstd") as writer:
        for i in range(source.num_row_groups):
            table = source.read_row_group(i)
            tenant = table.column("tenant_id").cast(pa.string())
            host = pc.binary_join_element_wise(tenant, table.column("host").cast(pa.string()), "/")
            columns = {
                "tenant_id": pa.array([HUGE] * table.num_rows, pa.string()),
                "host": host,
                "job_id": pa.nulls(table.num_rows, pa.string()),
            }
            for name, values in columns.items():
                at = table.schema.get_field_index(name)
                table = table.set_column(
                    at, table.schema.field(at), values.cast(table.schema.field(at).type)
                )
            writer.write_table(table)
    access = pd.read_json(folder / "access.jsonl.gz", lines=True, dtype=False)
    access.assign(tenant_id=HUGE).to_json(out / "access.jsonl.gz", orient="records", lines=True)
    (out / "tmp.parquet").rename(out / "telemetry.parquet")


def prepare(rows: float, data: Path) -> dict:
    """The simulated fleet (`data`/many) and the same rows as one tenant (`data`/one)."""
    manifest = generate(rows, data / "many")
    one_tenant(data / "many", data / "one")
    return manifest


def runs(folder: Path, label: str, rows: int, python: str, gpuwatch: str) -> list[Run]:
    tel = folder / "telemetry.parquet"
    return [
        measure(
            f"feature stage, {label}", [python, str(HERE / "feature_stage.py"), str(tel)], rows
        ),
        measure(
            f"gpuwatch score, {label}",
            [
                gpuwatch,
                "-q",
                "score",
                "--telemetry",
                str(tel),
                "--access",
                str(folder / "access.jsonl.gz"),
                "--out",
                str(folder / "scores.parquet"),
                "--format",
                "json",
            ],
            rows,
        ),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("rows", type=float)
    parser.add_argument("--data", type=Path, default=HERE / "data" / "huge")
    args = parser.parse_args()
    python = sys.executable
    gpuwatch = str(Path(python).with_name("gpuwatch"))
    many = args.data / "many"
    # in a child process: a measured process inherits its parent's peak RSS (Linux keeps
    # ru_maxrss across exec), and the simulator holds a day of telemetry
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        manifest = pool.submit(prepare, args.rows, args.data).result()
    n = manifest["rows"]
    got = runs(many, f"{manifest['tenants']} tenants", n, python, gpuwatch)
    got += runs(args.data / "one", "one tenant", n, python, gpuwatch)
    table = pd.DataFrame(
        {
            "rows": f"{n:,}",
            "step": r.step,
            "seconds": round(r.seconds, 1),
            "peak RSS GiB": round(r.peak_bytes / GIB, 2),
            "sessions": json.loads(r.output)["sessions"] if "feature" in r.step else "",
            "memory / many": round(r.peak_bytes / got[i % 2].peak_bytes, 2),
            "time / many": round(r.seconds / got[i % 2].seconds, 2),
        }
        for i, r in enumerate(got)
    )
    print(markdown(table))


if __name__ == "__main__":
    main()
