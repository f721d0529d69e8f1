"""The run report beside a scores file (``<scores>.run.json``), for ``gpuwatch serve``."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

from ..errors import InputError
from ..runinfo import RunReport
from .textfile import atomic_write

FORMAT = 1


def sidecar_path(scores: Path) -> Path:
    """``out/scores.parquet`` -> ``out/scores.parquet.run.json``."""
    scores = Path(scores)
    return scores.with_name(scores.name + ".run.json")


def write_run_sidecar(scores: Path, report: RunReport) -> Path:
    """Write the report next to the scores file, atomically; returns the sidecar's path."""
    data = {
        "format": FORMAT,
        "run_id": report.run_id,
        "started_at": report.started_at,
        "finished_at": report.finished_at,
        "success": report.success,
        "stage_seconds": report.stage_seconds,
        "rows_read": dict(report.rows_read),
        "rows_accepted": dict(report.rows_accepted),
        "rows_quarantined": [
            {"source": source, "reason": reason, "rows": rows}
            for (source, reason), rows in sorted(report.rows_quarantined.items())
        ],
        "access_coverage": report.access_coverage,
        "ips_total": report.ips_total,
        "ips_unknown": report.ips_unknown,
        "sessions": report.sessions,
        "model_version": report.model_version,
        "model_trained_at": report.model_trained_at,
    }
    path = sidecar_path(scores)
    atomic_write(path, json.dumps(data, indent=1, sort_keys=True).encode())
    return path


def read_run_sidecar(scores: Path) -> RunReport | None:
    """The report written beside ``scores``; None when there is no sidecar."""
    path = sidecar_path(scores)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise InputError(f"cannot read run report: {exc}", path=str(path)) from exc
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise InputError(f"not a gpuwatch run report of format {FORMAT}", path=str(path))
    try:
        return RunReport(
            run_id=str(data["run_id"]),
            started_at=float(data["started_at"]),
            finished_at=None if data["finished_at"] is None else float(data["finished_at"]),
            success=bool(data["success"]),
            stage_seconds={str(k): float(v) for k, v in data["stage_seconds"].items()},
            rows_read=Counter({str(k): int(v) for k, v in data["rows_read"].items()}),
            rows_accepted=Counter({str(k): int(v) for k, v in data["rows_accepted"].items()}),
            rows_quarantined=Counter(
                {
                    (str(q["source"]), str(q["reason"])): int(q["rows"])
                    for q in data["rows_quarantined"]
                }
            ),
            access_coverage=float(data.get("access_coverage", 1.0)),
            ips_total=int(data["ips_total"]),
            ips_unknown=int(data["ips_unknown"]),
            sessions=int(data["sessions"]),
            model_version=str(data["model_version"]),
            model_trained_at=str(data["model_trained_at"]),
        )
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise InputError(f"malformed run report: {exc!r}", path=str(path)) from exc
