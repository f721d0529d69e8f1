"""A live Prometheus server -> telemetry: the dcgm-exporter series through `query_range`.

Each DCGM field of `dcgm.FIELDS` the server holds is queried in chunks of at most
`max_points` evaluation steps (Prometheus refuses more than 11,000 points per series), once for
its values and once as `timestamp(...)`: every point then carries the time of the scrape it
came from, so a scrape seen at several steps (lookback) is one sample, and the rows are the
scraped samples themselves, not a resampling. `step` must not exceed the scrape interval or
samples are skipped.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import requests

from .. import quarantine
from ..errors import InputError
from ..schema import TELEMETRY
from . import dcgm
from .canonical import Loaded, load_raw
from .files import InputFile
from .options import SourceOptions
from .readers import RawFile

MAX_POINTS = 11_000  # Prometheus' limit of points per series in one query_range


@dataclass(frozen=True)
class PrometheusSource:
    """Where and how to query: base URL, step (seconds), auth and TLS verification."""

    url: str
    step: float = 60.0
    bearer_token_file: Path | None = None
    ca_file: Path | None = None
    insecure_skip_verify: bool = False
    timeout: float = 60.0
    max_points: int = MAX_POINTS


def read_prometheus(
    src: PrometheusSource,
    since: pd.Timestamp,
    until: pd.Timestamp,
    *,
    options: SourceOptions | None = None,
    source: str = "telemetry",
) -> Loaded:
    """Telemetry samples with time in [since, until) from the server, validated as usual."""
    options = options or SourceOptions()
    since, until = _utc(since), _utc(until)
    if since is None or until is None or until <= since:
        raise InputError("reading from Prometheus needs --since and a later --until", path=src.url)
    if src.step <= 0 or src.max_points < 2:
        raise InputError("step must be positive and max_points at least 2", path=src.url)
    client = _Client(src)
    start, end = since.timestamp(), until.timestamp()
    names = [n for n in client.names(start, end) if n in dcgm.FIELDS]
    parts = [client.samples(name, start, end) for name in names]
    samples = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()
    if len(samples):
        samples = samples[(samples["ts"] >= start) & (samples["ts"] < end)]
        samples = samples.sort_values(["name", "ts"], kind="stable").reset_index(drop=True)
        samples["row"] = np.arange(1, len(samples) + 1)
    file = InputFile(Path(src.url), "prometheus", False)
    if samples.empty:
        raw = RawFile(file, pd.DataFrame(), np.zeros(0, dtype=np.int64), quarantine.empty())
    else:
        frame, rows = dcgm.assemble(samples, options)
        raw = RawFile(file, frame, rows, quarantine.empty())
    return load_raw([raw], TELEMETRY, source=source, since=since, until=until)


def chunks(start: float, end: float, step: float, max_points: int) -> list[tuple[float, float]]:
    """[first, last] evaluation times covering [start, end] on the grid start + k*step, each
    with at most max_points points; the last chunk reaches one step past `end`."""
    span = step * (max_points - 1)
    out, first = [], start
    stop = end + step
    while first <= stop:
        last = min(first + span, stop)
        out.append((first, last))
        first = last + step
    return out


class _Client:
    def __init__(self, src: PrometheusSource) -> None:
        self.src = src
        self.session = requests.Session()
        if src.bearer_token_file:
            try:
                token = Path(src.bearer_token_file).read_text().strip()
            except OSError as exc:
                raise InputError(
                    f"cannot read bearer token file: {exc.strerror}",
                    path=str(src.bearer_token_file),
                ) from exc
            self.session.headers["Authorization"] = f"Bearer {token}"
        self.verify: bool | str = (
            False if src.insecure_skip_verify else (str(src.ca_file) if src.ca_file else True)
        )

    def _get(self, path: str, params: dict) -> object:
        url = self.src.url.rstrip("/") + path
        try:
            response = self.session.get(
                url, params=params, timeout=self.src.timeout, verify=self.verify
            )
        except requests.RequestException as exc:
            raise InputError(f"cannot query Prometheus: {exc}", path=self.src.url) from exc
        try:
            body = response.json()
        except ValueError:
            body = {}
        if response.status_code != 200 or body.get("status") != "success":
            detail = body.get("error") or response.text[:200]
            raise InputError(
                f"Prometheus answered {response.status_code} to {path}: {detail}", path=self.src.url
            )
        return body["data"]

    def names(self, start: float, end: float) -> list[str]:
        return list(
            self._get(
                "/api/v1/label/__name__/values",
                {"match[]": '{__name__=~"DCGM_FI_.+"}', "start": start, "end": end},
            )
        )

    def samples(self, name: str, start: float, end: float) -> pd.DataFrame:
        """Every scraped sample of one metric in the range: name, ts, value and labels."""
        frames = []
        for first, last in chunks(start, end, self.src.step, self.src.max_points):
            params = {"start": first, "end": last, "step": self.src.step}
            values = self._get("/api/v1/query_range", {**params, "query": name})
            stamps = self._get("/api/v1/query_range", {**params, "query": f"timestamp({name})"})
            frames.extend(_join(name, values["result"], stamps["result"]))
        if not frames:
            return pd.DataFrame()
        out = pd.concat(frames, ignore_index=True)
        labels = [c for c in out.columns if c not in ("name", "ts", "value")]
        return out.drop_duplicates(["ts", *labels])


def _join(name: str, values: list[dict], stamps: list[dict]) -> list[pd.DataFrame]:
    """One frame per series: the value at each step with the time of the sample behind it."""

    def key(metric: dict) -> tuple:
        return tuple(sorted((k, v) for k, v in metric.items() if k != "__name__"))

    times = {key(s["metric"]): dict(s["values"]) for s in stamps}
    out = []
    for series in values:
        at = times.get(key(series["metric"]), {})
        grid = np.array([p[0] for p in series["values"]], dtype=float)
        value = pd.to_numeric(pd.Series([p[1] for p in series["values"]]), errors="coerce")
        ts = pd.to_numeric(pd.Series([at.get(t) for t in grid]), errors="coerce")
        labels = {k: v for k, v in series["metric"].items() if k != "__name__"}
        frame = pd.DataFrame(
            {"name": name, "ts": ts.to_numpy(), "value": value.to_numpy(), **labels}
        )
        out.append(frame[frame["ts"].notna()])
    return out


def _utc(value: pd.Timestamp | None) -> pd.Timestamp | None:
    if value is None:
        return None
    value = pd.Timestamp(value)
    return value.tz_localize("UTC") if value.tzinfo is None else value.tz_convert("UTC")
