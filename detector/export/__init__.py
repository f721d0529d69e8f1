"""Prometheus exposition of scores and run health: textfile, Pushgateway and `gpuwatch serve`."""

from __future__ import annotations

from .errors import ExportError
from .metrics import origin_of, run_families, score_families, success_families
from .options import ExportOptions, export_options, series_options
from .publish import publish, publish_failure, snapshot_families
from .serve import serve_command
from .sidecar import read_run_sidecar, sidecar_path, write_run_sidecar

__all__ = [
    "ExportError",
    "ExportOptions",
    "export_options",
    "origin_of",
    "publish",
    "publish_failure",
    "read_run_sidecar",
    "run_families",
    "score_families",
    "serve_command",
    "series_options",
    "sidecar_path",
    "snapshot_families",
    "success_families",
    "write_run_sidecar",
]
