"""Smoke run of the benchmark (`make bench` on ~1e5 rows): every step runs and is reported."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench" / "run.py"


@pytest.mark.integration
def test_bench_runs_end_to_end_on_a_small_fleet(tmp_path):
    out = tmp_path / "results.md"
    subprocess.run(
        [sys.executable, str(BENCH), "1e5", "--data", str(tmp_path / "data"), "--out", str(out)],
        check=True,
        capture_output=True,
        text=True,
        timeout=600,
    )
    text = out.read_text()
    lines = [line for line in text.splitlines() if line.startswith("| ")]
    assert lines[0].startswith("| rows | step | seconds | rows/s | peak RSS GiB | time / DuckDB")
    steps = [line.split(" | ")[1] for line in lines[1:]]
    assert steps == ["duckdb reference", "feature stage", "feature stage, dask", "gpuwatch score"]
    for line in lines[1:]:
        cells = line.strip("| ").split(" | ")
        assert float(cells[2]) > 0 and float(cells[4]) > 0.05  # seconds, peak RSS
    assert '"sessions"' in text  # each step's own output
