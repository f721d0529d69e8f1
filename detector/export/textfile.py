"""Atomic textfile output for node_exporter's textfile collector."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable
from pathlib import Path

from prometheus_client import generate_latest
from prometheus_client.core import Metric
from prometheus_client.parser import text_string_to_metric_families

from .collector import registry_of
from .errors import ExportError


def atomic_write(path: Path, data: bytes) -> None:
    """Write ``data`` to a temp file in the same folder, fsync it, then rename it over ``path``.

    A reader sees the old file or the new one, never a part. The temp name does not end in
    ``.prom``, so node_exporter ignores it.
    """
    path = Path(path)
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as exc:
        raise ExportError(f"{path}: cannot create a file in {path.parent}: {exc}") from exc
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        raise ExportError(f"{path}: cannot write metrics: {exc}") from exc


def write_textfile(path: Path, families: Iterable[Metric]) -> None:
    """Replace ``path`` with the exposition of ``families``."""
    metrics = list(families)
    atomic_write(path, generate_latest(registry_of(lambda: metrics)))


def merge_textfile(path: Path, families: Iterable[Metric]) -> None:
    """Push-add for a file: replace the families of the same name, keep all the others."""
    new = list(families)
    names = {family.name for family in new}
    kept = [family for family in read_textfile(path) if family.name not in names]
    write_textfile(path, kept + new)


def read_textfile(path: Path) -> list[Metric]:
    """The families in an exposition file; none when it does not exist."""
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise ExportError(f"{path}: cannot read metrics: {exc}") from exc
    try:
        return list(text_string_to_metric_families(text))
    except ValueError as exc:
        raise ExportError(f"{path}: not a Prometheus text exposition: {exc}") from exc
