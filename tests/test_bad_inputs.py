"""Issue 10's bad inputs through `gpuwatch score`: each gives exit 2 and one line naming the
file (and row or column where there is one), or a normal run when the rows are only
quarantined; never a traceback, a crash or a silent all-clear."""

from __future__ import annotations

import gzip
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from detector.cli import main

ROOT = Path(__file__).resolve().parents[1]
TS = pd.date_range("2026-10-06", periods=60, freq="1min", tz="UTC")
ISO = TS.strftime("%Y-%m-%dT%H:%M:%SZ")


def _telemetry(**columns: object) -> pa.Table:
    base = {"timestamp": pa.array(TS), "tenant_id": ["t1"] * 60, "host": ["h1"] * 60}
    return pa.table({**base, "gpu": ["0"] * 60, "gpu_util": [90.0] * 60, **columns})


def _parquet(table: pa.Table) -> Callable[[Path], None]:
    return lambda path: pq.write_table(table, path)


def _bytes(data: bytes) -> Callable[[Path], None]:
    return lambda path: path.write_bytes(data)


def _bomb(path: Path) -> None:
    with gzip.open(path, "wb") as fh:
        for _ in range(3):
            fh.write(b"\0" * (1 << 20))


def _truncated(path: Path) -> None:
    pq.write_table(_telemetry(), path)
    path.write_bytes(path.read_bytes()[:300])


VPC_TWICE = (
    b"version account-id interface-id srcaddr dstaddr srcport dstport protocol packets bytes"
    b" start end action log-status version\n"
)
# (case, which input, file name, how to write it, extra flags, exit code, text of the one line)
CASES = [
    ("jsonl first line null", "access", "a.jsonl", _bytes(b"null\n"), [], 2, "row 1: no line"),
    (
        "jsonl line nested 20000 deep",
        "access",
        "a.jsonl",
        _bytes(b'{"a":' + b"[" * 20000 + b"]" * 20000 + b"}\n"),
        [],
        2,
        "row 1: no line is a valid JSON object",
    ),
    (
        "jsonl array nested 5000 deep",
        "access",
        "a.jsonl",
        _bytes(b"[" * 5000 + b"]" * 5000),
        [],
        2,
        "row 1: no line is a valid JSON object",
    ),
    ("empty parquet", "telemetry", "t.parquet", _bytes(b""), [], 2, "cannot read Parquet"),
    ("corrupt parquet", "telemetry", "t.parquet", _bytes(b"PAR1xxPAR1"), [], 2, "cannot read"),
    ("truncated parquet", "telemetry", "t.parquet", _truncated, [], 2, "cannot read Parquet"),
    (
        "non-UTF-8 parquet values",
        "telemetry",
        "t.parquet",
        _parquet(_telemetry(tenant_id=pa.array([b"t\xff"] * 60, pa.binary()))),
        [],
        2,
        "row 1: tenant_id: not UTF-8",
    ),
    (
        "VPC flow log header naming fields twice",
        "access",
        "flow.log",
        _bytes(VPC_TWICE),
        [],
        2,
        "row 1: VPC Flow Log header names field(s) ['version'] twice",
    ),
    ("gzip bomb", "access", "a.jsonl.gz", _bomb, ["--max-input-mib", "2"], 2, "more than 2 MiB"),
    ("empty access file", "access", "a.jsonl", _bytes(b""), [], 2, "access events cover 0%"),
    ("empty access, allowed", "access", "a.jsonl", _bytes(b""), ["--allow-missing-access"], 0, ""),
    (
        "integer (ms) timestamps",
        "telemetry",
        "t.parquet",
        _parquet(_telemetry(timestamp=pa.array(TS.as_unit("ms").asi8))),
        [],
        2,
        "row 1: timestamp: timestamp out of range",
    ),
    (
        "tenant_id stored as a list",
        "telemetry",
        "t.parquet",
        _parquet(_telemetry(tenant_id=pa.array([["t1", "t2"]] * 60))),
        [],
        2,
        "row 1: tenant_id: a list or object where a single value belongs",
    ),
]


@pytest.fixture(scope="module")
def good(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("good")
    pq.write_table(_telemetry(), folder / "t.parquet")
    access = pd.DataFrame(
        {"timestamp": ISO[::10], "tenant_id": "t1", "src_ip": "8.8.8.8", "event": "login"}
    )
    access.to_json(folder / "a.jsonl", orient="records", lines=True)
    return {"telemetry": folder / "t.parquet", "access": folder / "a.jsonl"}


def _score(inputs: dict[str, Path], out: Path, *flags: str) -> tuple[int, list[str]]:
    args = ["score", "--telemetry", str(inputs["telemetry"]), "--access", str(inputs["access"])]
    args += ["--registry", str(ROOT / "models"), "--out", str(out), *flags]
    result = CliRunner().invoke(main, args)
    return result.exit_code, result.output.strip().splitlines()


@pytest.mark.parametrize(
    ("which", "name", "write", "flags", "code", "text"),
    [case[1:] for case in CASES],
    ids=[case[0] for case in CASES],
)
def test_bad_input_gives_its_exit_code_and_one_line(
    tmp_path, good, which, name, write, flags, code, text
):
    path = tmp_path / name
    write(path)
    got, lines = _score({**good, which: path}, tmp_path / "s.parquet", *flags)
    assert got == code, lines
    if code == 2:
        assert len(lines) == 1 and lines[0].startswith("Error: "), lines
        assert str(path) in lines[0] and text in lines[0], lines[0]


def test_non_utf8_and_deep_jsonl_lines_are_quarantined_beside_good_ones(tmp_path, good):
    lines = good["access"].read_bytes().splitlines()
    bad = [b'{"timestamp":"2026-10-06T00:00:00Z","tenant_id":"t\xff"}', b"null", b"[" * 3000]
    path = tmp_path / "a.jsonl"
    path.write_bytes(b"\n".join([*lines, *bad]) + b"\n")
    quarantine = tmp_path / "q.csv"
    code, out = _score(
        {**good, "access": path}, tmp_path / "s.parquet", "--quarantine", str(quarantine)
    )
    assert code == 0, out
    rejected = pd.read_csv(quarantine)
    assert rejected["reason"].tolist() == [
        "not UTF-8",
        "not a JSON object",
        "nested deeper than 64",
    ]
    assert rejected["row"].tolist() == [len(lines) + 1, len(lines) + 2, len(lines) + 3]


def test_an_unknown_column_is_reported_with_the_nearest_name(tmp_path, good, caplog):
    table = _telemetry(powr_w=[300.0] * 60)
    pq.write_table(table, tmp_path / "t.parquet")
    code, _ = _score({**good, "telemetry": tmp_path / "t.parquet"}, tmp_path / "s.parquet")
    assert code == 0
    assert "'powr_w' (did you mean 'power_w'?)" in caplog.text
