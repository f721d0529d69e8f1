"""Prometheus exposition of scores and run health: textfile, Pushgateway and `gpuwatch serve`.

The names below are imported on first use (PEP 562), so that importing `detector.export.options`
(the command line does, to start fast) does not import prometheus_client and pandas.
`publish` is not among them: its module has the same name, so import it from
`detector.export.publish`.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

_WHERE = {
    "ExportError": ".errors",
    "ExportOptions": ".options",
    "origin_of": ".metrics",
    "publish_failure": ".publish",
    "read_run_sidecar": ".sidecar",
    "run_families": ".metrics",
    "score_families": ".metrics",
    "sidecar_path": ".sidecar",
    "snapshot_families": ".publish",
    "success_families": ".metrics",
    "write_run_sidecar": ".sidecar",
}
__all__ = sorted(_WHERE)


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(_WHERE[name], __name__), name)
