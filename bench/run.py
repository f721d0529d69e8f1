"""`make bench`: DuckDB reference, gpuwatch feature stage and `gpuwatch score` at several sizes.

For each size the simulator writes a fleet of about that many telemetry rows (cached under
the data folder), then three measured runs follow on the same file, each in its own process
(wall time, and peak RSS from `wait4`): the DuckDB reference (`reference.py`), the feature
stage alone (`feature_stage.py`) and `gpuwatch score` end to end with a model trained on the
smallest size. Writes a Markdown table with rows/s, peak RSS and ratios to DuckDB.

    .venv/bin/python bench/run.py 1e6 1e7 3e7 --out bench/results.md
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import psutil

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from generate import INTERVAL_S, generate  # noqa: E402

GIB = 1 << 30


@dataclass
class Run:
    step: str
    rows: int
    seconds: float
    peak_bytes: int
    output: str


def measure(step: str, cmd: list[str], rows: int) -> Run:
    """Run `cmd`; its wall time and peak memory: the larger of wait4's RSS (the largest single
    process) and the sampled PSS summed over the process and its children (worker processes;
    pages shared after fork counted once)."""
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        t0 = time.perf_counter()
        pid = os.posix_spawn(
            cmd[0],
            cmd,
            os.environ,
            file_actions=[
                (os.POSIX_SPAWN_DUP2, out.fileno(), 1),
                (os.POSIX_SPAWN_DUP2, err.fileno(), 2),
            ],
        )
        tree = _TreeRss(pid)
        tree.start()
        _, status, usage = os.wait4(pid, 0)
        seconds = time.perf_counter() - t0
        tree.done.set()
        tree.join()
        out.seek(0)
        err.seek(0)
        if os.waitstatus_to_exitcode(status):
            raise SystemExit(f"{step} failed: {' '.join(cmd)}\n{err.read()[-3000:]}")
        peak = max(usage.ru_maxrss * 1024, tree.peak)
        return Run(step, rows, seconds, peak, out.read().strip())


class _TreeRss(threading.Thread):
    """Samples the summed PSS of a process and its descendants every 50 ms."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid, self.peak, self.done = pid, 0, threading.Event()

    def run(self) -> None:
        while not self.done.wait(0.05):
            try:
                root = psutil.Process(self.pid)
                procs = [root, *root.children(recursive=True)]
                total = 0
                for proc in procs:
                    with contextlib.suppress(psutil.Error):
                        total += proc.memory_full_info().pss  # shared pages counted once
                self.peak = max(self.peak, total)
            except psutil.Error:
                return


def bench_size(rows: float, data: Path, model: Path, python: str, gpuwatch: str) -> list[Run]:
    folder = data / f"{rows:.0e}".replace("+0", "").replace("+", "")
    manifest = generate(rows, folder)
    tel, acc, ten = folder / "telemetry.parquet", folder / "access.jsonl.gz", folder / "tenants.csv"
    n = manifest["rows"]
    return [
        measure(
            "duckdb reference",
            [python, str(HERE / "reference.py"), str(tel), "--interval", str(INTERVAL_S)],
            n,
        ),
        measure("feature stage", [python, str(HERE / "feature_stage.py"), str(tel)], n),
        measure(
            "feature stage, dask",
            [python, str(HERE / "feature_stage.py"), str(tel), "--engine", "dask"],
            n,
        ),
        measure(
            "gpuwatch score",
            [
                gpuwatch,
                "-q",
                "score",
                "--telemetry",
                str(tel),
                "--access",
                str(acc),
                "--tenants",
                str(ten),
                "--model-dir",
                str(model),
                "--format",
                "json",
                "--out",
                str(folder / "scores.parquet"),
            ],
            n,
        ),
    ]


def train_model(data: Path, rows: float, model: Path, gpuwatch: str) -> None:
    if (model / "model.json").exists() or any(model.glob("*")):
        return
    folder = data / "train"
    generate(rows, folder)
    subprocess.run(
        [
            gpuwatch,
            "-q",
            "train",
            "--telemetry",
            str(folder / "telemetry.parquet"),
            "--access",
            str(folder / "access.jsonl.gz"),
            "--tenants",
            str(folder / "tenants.csv"),
            "--model-dir",
            str(model),
        ],
        check=True,
    )


def table(runs: list[Run]) -> pd.DataFrame:
    rows = []
    for run in runs:
        ref = next(r for r in runs if r.rows == run.rows and r.step == "duckdb reference")
        rows.append(
            {
                "rows": f"{run.rows:,}",
                "step": run.step,
                "seconds": round(run.seconds, 1),
                "rows/s": f"{run.rows / run.seconds:,.0f}",
                "peak RSS GiB": round(run.peak_bytes / GIB, 2),
                "time / DuckDB": round(run.seconds / ref.seconds, 1),
                "memory / DuckDB": round(run.peak_bytes / ref.peak_bytes, 1),
            }
        )
    return pd.DataFrame(rows)


def markdown(frame: pd.DataFrame) -> str:
    lines = [
        "| " + " | ".join(frame.columns) + " |",
        "|" + "|".join("---:" if c != "step" else "---" for c in frame.columns) + "|",
    ]
    lines += ["| " + " | ".join(map(str, row)) + " |" for row in frame.itertuples(index=False)]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("sizes", nargs="+", type=float)
    parser.add_argument("--data", type=Path, default=HERE / "data")
    parser.add_argument("--out", type=Path, default=HERE / "results.md")
    parser.add_argument("--train-rows", type=float, default=1e6)
    args = parser.parse_args()
    python = sys.executable
    gpuwatch = str(Path(python).with_name("gpuwatch"))
    model = args.data / "model"
    train_model(args.data, min(args.train_rows, min(args.sizes)), model, gpuwatch)
    runs = []
    for size in args.sizes:
        runs += bench_size(size, args.data, model, python, gpuwatch)
        print(
            f"{size:.0e}: "
            + ", ".join(
                f"{r.step} {r.seconds:.1f}s {r.peak_bytes / GIB:.2f}GiB" for r in runs[-4:]
            ),
            flush=True,
        )
    result = table(runs)
    details = "\n".join(
        f"- {r.rows:,} rows, {r.step}: `{' '.join(r.output.split())[:600]}`"
        for r in runs
        if r.output
    )
    args.out.write_text(
        "# gpuwatch benchmark\n\n"
        f"Machine: {os.cpu_count()} cores, {platform.platform()}, Python "
        f"{platform.python_version()}. Telemetry from the simulator ({INTERVAL_S} s samples), "
        "one time-sorted Parquet file per size; each step in its own process; peak RSS from "
        "wait4 (largest single process) or, when larger, the PSS summed over the process and its "
        "worker processes, sampled every 50 ms. "
        "Feature stage: "
        "partition pass (one process per core for inputs over 4M rows), then sessions and "
        "workload features per partition (local engine: one forked worker process per core; "
        "dask: a LocalCluster of one worker per core). Generated by `make bench` "
        "(bench/run.py).\n\n" + markdown(result) + "\n\n" + details + "\n"
    )
    print(result.to_string(index=False))


if __name__ == "__main__":
    main()
