"""A short run of bench/kill_trials.py (the 100-trial run is `make bench-runs`)."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))

from kill_trials import run_trials  # noqa: E402


def test_killed_runs_leave_no_torn_mismatched_or_leftover_outputs(tmp_path):
    counts = run_trials(2, seed=1, work=tmp_path)
    assert counts.trials == 2 and counts.aimed_at_write == 1 and counts.failed == 0
    assert (counts.torn, counts.mismatched, counts.leftover) == (0, 0, 0), counts.problems
    assert counts.reader_checks > 0 and counts.reader_mismatched == 0, counts.problems
