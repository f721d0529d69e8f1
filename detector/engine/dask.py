"""The Dask engine: one task per partition on a `distributed` cluster.

With a scheduler address the client connects to an existing cluster (for example one that
dask-kubernetes or the Dask Helm chart started); without one it starts a `LocalCluster` of
worker processes on this machine. Workers read the partition files themselves, so the work
folder must be visible to them at the same path (a shared volume on a real cluster).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from ..config import Settings
from ..errors import GpuwatchError
from .local import PartResult, partition_features

if TYPE_CHECKING:
    from . import Engine

CONNECT_TIMEOUT = "10s"  # to reach a --scheduler


def run_dask(
    paths: Sequence[Sequence[Path]],
    files: Sequence[str],
    settings: Settings,
    engine: Engine,
    progress: Callable[[int], None] | None = None,
) -> list[PartResult]:
    """Every partition as a task on the cluster of `engine`; results in partition order."""
    try:
        from distributed import Client, LocalCluster, as_completed
    except ImportError as exc:  # pragma: no cover - dask is an optional extra
        raise GpuwatchError(
            "--engine dask needs the dask extra: pip install 'gpuwatch[dask]'"
        ) from exc
    cluster = None
    if engine.scheduler is None:
        cluster = LocalCluster(
            n_workers=engine.workers or os.cpu_count() or 1,
            threads_per_worker=1,
            processes=True,
            dashboard_address=None,
        )
    try:
        client = Client(
            cluster if cluster is not None else engine.scheduler, timeout=CONNECT_TIMEOUT
        )
    except OSError as exc:
        raise GpuwatchError(f"cannot reach the Dask scheduler {engine.scheduler}: {exc}") from exc
    try:
        run = uuid.uuid4().hex[:8]
        settings_f = client.scatter(settings, broadcast=True)
        futures = [
            client.submit(
                partition_features,
                path,
                list(files),
                settings_f,
                engine.slice_rows,
                pure=False,
                key=f"gpuwatch-part-{run}-{i}",
            )
            for i, path in enumerate(paths)
        ]
        for _ in as_completed(futures):
            if progress:
                progress(1)
        return client.gather(futures)
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
