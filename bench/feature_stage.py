"""The feature stage alone: telemetry -> sessions with workload features, through the engine.

Streams the file into tenant partitions and runs sessions and workload features per partition
(the per-sample work); prints rows, sessions and stage seconds as JSON.

    .venv/bin/python bench/feature_stage.py bench/data/1e6/telemetry.parquet [--engine dask]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from detector.config import load_settings
from detector.engine import Engine, extract
from detector.ingest import open_source
from detector.runinfo import RunReport
from detector.schema import TELEMETRY


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("path", type=Path)
    parser.add_argument("--engine", default="local")
    parser.add_argument("--partitions", type=int)
    args = parser.parse_args()
    report = RunReport()
    t0 = time.perf_counter()
    engine = Engine(args.engine, partitions=args.partitions)
    table, _, counts = extract(
        open_source([args.path], TELEMETRY), load_settings(), report, engine=engine
    )
    print(
        json.dumps(
            {
                "rows": counts.read,
                "sessions": len(table),
                "seconds": time.perf_counter() - t0,
                "stages": {k: round(v, 2) for k, v in report.stage_seconds.items()},
            }
        )
    )


if __name__ == "__main__":
    main()
