"""A live Prometheus server -> telemetry: the dcgm-exporter series through `query_range`.

Each DCGM field is queried in chunks of at most `max_points` steps, for its values and as
`timestamp(...)`: the rows are the scraped samples themselves, not a resampling, as long as
`step` does not exceed the scrape interval (DESIGN-NOTES "Live Prometheus").
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import numpy as np
import pandas as pd

from .. import quarantine
from ..errors import InputError
from ..redact import public_url, redact, register
from ..schema import TELEMETRY
from ..timeutil import utc
from . import dcgm
from .batches import Source
from .canonical import Loaded, collect
from .files import InputFile
from .options import SourceOptions
from .readers import RawFile

MAX_POINTS = 11_000  # Prometheus' limit of points per series in one query_range
MAX_BODY_BYTES = 256 * 2**20  # a larger answer is refused: a shorter window or larger step
_Series = tuple[dict[str, str], list[float], list[str]]  # labels, evaluation times, values


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
    max_body_bytes: int = MAX_BODY_BYTES


def read_prometheus(
    src: PrometheusSource,
    since: pd.Timestamp,
    until: pd.Timestamp,
    *,
    options: SourceOptions | None = None,
    source: str = "telemetry",
) -> Loaded:
    """Telemetry samples with time in [since, until) from the server, validated as usual."""
    where, raw = query_prometheus(src, since, until, options=options, source=source)
    return collect(where.raw_batches(raw, 0), where)


def query_prometheus(
    src: PrometheusSource,
    since: pd.Timestamp,
    until: pd.Timestamp,
    *,
    options: SourceOptions | None = None,
    source: str = "telemetry",
) -> tuple[Source, RawFile]:
    """The server's samples with time in [since, until), as read, and the one-file Source that
    validates them (`Source.raw_batches`)."""
    options = options or SourceOptions()
    since, until = utc(since), utc(until)
    if since is None or until is None or until <= since:
        raise InputError(
            "reading from Prometheus needs --since and a later --until", path=public_url(src.url)
        )
    if src.step <= 0 or src.max_points < 2:
        raise InputError(
            "step must be positive and max_points at least 2", path=public_url(src.url)
        )
    client = _Client(src)
    start, end = since.timestamp(), until.timestamp()
    names = [n for n in client.names(start, end) if n in dcgm.FIELDS]
    parts = [client.samples(name, start, end) for name in names]
    samples = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()
    if len(samples):
        samples = samples[(samples["ts"] >= start) & (samples["ts"] < end)]
        samples = samples.sort_values(["name", "ts"], kind="stable").reset_index(drop=True)
        samples["row"] = np.arange(1, len(samples) + 1)
    file = InputFile(Path(client.where), "prometheus", False)
    raw = RawFile(file, *dcgm.assemble(samples, options), quarantine.empty())
    return Source(TELEMETRY, (file,), source, options, since, until), raw


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
    """GETs of the HTTP API: bounded bodies, checked shapes, and errors that name the server
    without its credentials and never echo a secret."""

    def __init__(self, src: PrometheusSource) -> None:
        import requests

        self.src = src
        self.where = public_url(src.url)  # registers the URL's password as a secret
        parts = urlsplit(src.url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise InputError("expected an http:// or https:// URL", path=self.where)
        self.session = requests.Session()
        if src.bearer_token_file:
            self.session.headers["Authorization"] = f"Bearer {_token(src.bearer_token_file)}"
        self.verify: bool | str = (
            False if src.insecure_skip_verify else (str(src.ca_file) if src.ca_file else True)
        )

    def _get(self, path: str, params: dict[str, Any]) -> Any:
        import requests

        url = self.src.url.rstrip("/") + path
        try:
            with self.session.get(
                url, params=params, timeout=self.src.timeout, verify=self.verify, stream=True
            ) as response:
                status, reason = response.status_code, response.reason
                data = self._read(response, path)
        except (requests.RequestException, ValueError) as exc:
            raise InputError(f"cannot query Prometheus: {self._why(exc)}", path=self.where) from exc
        if status in (401, 403):  # the body may echo the credentials: not shown
            raise InputError(
                f"Prometheus refused the credentials ({status} {reason}) for {path}; "
                "check --bearer-token-file and the URL's user",
                path=self.where,
            )
        try:
            body = json.loads(data)
        except (ValueError, RecursionError):
            body = None
        if status != 200 or not isinstance(body, dict) or body.get("status") != "success":
            error = body.get("error") if isinstance(body, dict) else None
            detail = error if isinstance(error, str) else data[:200].decode("utf-8", "replace")
            if status == 200 and body is None:
                detail = "the answer is not JSON"
            raise InputError(
                redact(f"Prometheus answered {status} to {path}: {' '.join(detail.split())}"),
                path=self.where,
            )
        if "data" not in body:
            raise InputError(f"malformed answer to {path}: no 'data'", path=self.where)
        return body["data"]

    def _read(self, response: Any, path: str) -> bytes:
        """The body, decompressed, refused once it passes max_body_bytes."""
        limit = self.src.max_body_bytes
        declared = response.headers.get("Content-Length", "")
        too_big = InputError(
            f"the answer to {path} exceeds {limit:,} bytes (PrometheusSource.max_body_bytes); "
            "query a shorter window or a larger --step",
            path=self.where,
        )
        if declared.isdigit() and int(declared) > limit:
            raise too_big
        data = bytearray()
        for chunk in response.iter_content(chunk_size=1 << 16):
            data += chunk
            if len(data) > limit:
                raise too_big
        return bytes(data)

    def _why(self, exc: Exception) -> str:
        """What went wrong, in a few words, without the URL that requests' messages repeat."""
        import requests

        if isinstance(exc, requests.Timeout):
            return f"no answer within {self.src.timeout:g} s"
        text = str(exc)
        if isinstance(exc, requests.exceptions.SSLError):
            found = re.search(r"\[SSL: [A-Z_]+\] ([^('\"]+)", text)
            return "TLS error: " + (found.group(1).strip() if found else "handshake failed")
        if isinstance(exc, requests.ConnectionError):
            found = re.search(r"\[Errno -?\d+\] ([^'\")]+)", text)
            return "connection failed: " + (found.group(1).strip() if found else type(exc).__name__)
        return redact(f"{type(exc).__name__}: {' '.join(text.split())}")[:300]

    def names(self, start: float, end: float) -> list[str]:
        path = "/api/v1/label/__name__/values"
        names = self._get(path, {"match[]": '{__name__=~"DCGM_FI_.+"}', "start": start, "end": end})
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise InputError(
                f"malformed answer to {path}: expected a list of metric names", path=self.where
            )
        return names

    def samples(self, name: str, start: float, end: float) -> pd.DataFrame:
        """Every scraped sample of one metric in the range: name, ts, value and labels."""
        frames = []
        for first, last in chunks(start, end, self.src.step, self.src.max_points):
            params = {"start": first, "end": last, "step": self.src.step}
            values = self._matrix({**params, "query": name})
            stamps = self._matrix({**params, "query": f"timestamp({name})"})
            frames.extend(_join(name, values, stamps))
        if not frames:
            return pd.DataFrame()
        out = pd.concat(frames, ignore_index=True)
        labels = [c for c in out.columns if c not in ("name", "ts", "value")]
        return out.drop_duplicates(["ts", *labels])

    def _matrix(self, params: dict[str, Any]) -> list[_Series]:
        """A query_range answer, checked: a matrix of series, each with string labels and
        [time, "value"] points."""
        path = "/api/v1/query_range"
        data = self._get(path, params)

        def bad(what: str) -> InputError:
            return InputError(
                f"malformed answer to {path} for {params['query']}: {what}", path=self.where
            )

        if not isinstance(data, dict) or not isinstance(data.get("result"), list):
            raise bad("expected data.result to be a list")
        if data.get("resultType") != "matrix":
            raise bad(f"expected resultType 'matrix', got {data.get('resultType')!r}")
        out = []
        for number, series in enumerate(data["result"], 1):
            metric = series.get("metric") if isinstance(series, dict) else None
            values = series.get("values") if isinstance(series, dict) else None
            if not isinstance(metric, dict) or not all(isinstance(v, str) for v in metric.values()):
                raise bad(f"series {number}: expected 'metric' to map labels to strings")
            if not isinstance(values, list) or not all(
                isinstance(p, list) and len(p) == 2 for p in values
            ):
                raise bad(f"series {number}: expected 'values' to be [time, value] pairs")
            times = [p[0] for p in values]
            text = [p[1] for p in values]
            if not all(type(t) in (int, float) for t in times):
                raise bad(f"series {number}: a point's time is not a number")
            if not all(isinstance(v, str) for v in text):
                raise bad(f"series {number}: a point's value is not a string")
            out.append((metric, [float(t) for t in times], text))
        return out


def _token(path: Path) -> str:
    """The bearer token in `path`: printable ASCII (an HTTP header carries nothing else)."""
    try:
        token = Path(path).read_bytes().decode("utf-8").strip()
    except OSError as exc:
        raise InputError(f"cannot read bearer token file: {exc.strerror}", path=str(path)) from exc
    except UnicodeDecodeError as exc:
        raise InputError("the bearer token file is not UTF-8 text", path=str(path)) from exc
    register(token)
    if not token:
        raise InputError("the bearer token file is empty", path=str(path))
    for position, char in enumerate(token, 1):
        if not (char.isascii() and char.isprintable()) or char.isspace():
            kind = "a non-ASCII" if not char.isascii() else "a space or control"
            raise InputError(
                f"the bearer token has {kind} character at position {position}; "
                "a token is printable ASCII without spaces",
                path=str(path),
            )
    return token


def _join(name: str, values: list[_Series], stamps: list[_Series]) -> list[pd.DataFrame]:
    """One frame per series: the value at each step with the time of the sample behind it."""

    def key(metric: dict[str, str]) -> tuple[tuple[str, str], ...]:
        return tuple(sorted((k, v) for k, v in metric.items() if k != "__name__"))

    times = {key(metric): dict(zip(steps, text, strict=True)) for metric, steps, text in stamps}
    out = []
    for metric, steps, text in values:
        at = times.get(key(metric), {})
        value = pd.to_numeric(pd.Series(text, dtype=object), errors="coerce")
        ts = pd.to_numeric(pd.Series([at.get(t) for t in steps], dtype=object), errors="coerce")
        labels = {k: v for k, v in metric.items() if k != "__name__"}
        frame = pd.DataFrame(
            {"name": name, "ts": ts.to_numpy(), "value": value.to_numpy(), **labels}
        )
        out.append(frame[frame["ts"].notna()])
    return out
