"""A real Prometheus serving a TSDB backfilled from canonical telemetry, for reader tests.

`write_openmetrics` renders telemetry the way dcgm-exporter labels it (one gauge family per
DCGM field of `detector.ingest.dcgm.FIELDS`); `promtool tsdb create-blocks-from openmetrics`
turns it into blocks, and `prometheus_on` starts a server on them on a free loopback port.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pandas as pd
from prom_servers import free_port, get, need, process, wait_until

from detector.ingest.dcgm import FIELDS

GAUGES = {f.column: name for name, f in FIELDS.items() if not f.counter}
LABELS = {
    "gpu": "gpu",
    "modelName": "model_name",
    "Hostname": "host",
    "namespace": "tenant_id",
    "pod": "job_id",
}


def _escape(values: pd.Series) -> pd.Series:
    return (
        values.astype("str")
        .str.replace("\\", "\\\\", regex=False)
        .str.replace('"', '\\"', regex=False)
        .str.replace("\n", "\\n", regex=False)
    )


def write_openmetrics(telemetry: pd.DataFrame, path: Path) -> int:
    """Write telemetry as an OpenMetrics file (time in seconds); returns the sample count."""
    frame = telemetry.sort_values(["tenant_id", "host", "gpu", "timestamp"], kind="stable")
    labels = pd.Series("", index=frame.index, dtype=object)
    for label, column in LABELS.items():
        present = frame[column].notna().to_numpy()
        part = (label + '="' + _escape(frame[column]) + '"').where(present, "")
        labels = labels + np.where(present & (labels != ""), ",", "") + part
    seconds = frame["timestamp"].astype("int64") // 10**6 / 1000.0
    stamp = seconds.map(repr)
    lines, count = [], 0
    for column, name in GAUGES.items():
        values = frame[column]
        have = values.notna().to_numpy()
        if not have.any():
            continue
        body = name + "{" + labels[have] + "} " + values[have].map(repr) + " " + stamp[have]
        lines.append(f"# TYPE {name} gauge")
        lines.extend(body.tolist())
        count += int(have.sum())
    lines.append("# EOF")
    path.write_text("\n".join(lines) + "\n")
    return count


def backfill(openmetrics: Path, tsdb: Path) -> None:
    promtool = need("promtool")
    result = subprocess.run(
        [promtool, "tsdb", "create-blocks-from", "openmetrics", str(openmetrics), str(tsdb)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr or result.stdout


@contextmanager
def prometheus_on(tmp: Path, tsdb: Path) -> Iterator[str]:
    """Prometheus with its storage on `tsdb` (no scrape targets); yields its base URL."""
    binary = need("prometheus")
    port = free_port()
    config = tmp / "prometheus-tsdb.yml"
    config.write_text('{"global": {"scrape_interval": "1m"}, "scrape_configs": []}\n')
    url = f"http://127.0.0.1:{port}"
    log = tmp / "prometheus-tsdb.log"
    with process(
        [
            binary,
            f"--config.file={config}",
            f"--storage.tsdb.path={tsdb}",
            "--storage.tsdb.retention.time=100y",
            f"--web.listen-address=127.0.0.1:{port}",
            "--log.level=warn",
        ],
        log,
    ) as proc:
        wait_until(
            lambda: proc.poll() is None and get(url + "/-/ready")[0] == 200,
            f"prometheus on {url} (log: {log})",
        )
        yield url
