"""Engines and partitionings give the features of the one-table computation, exactly."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from detector.cli import main
from detector.config import load_settings
from detector.engine import Engine, extract, partition_of, partition_telemetry
from detector.engine.partition import read_partition
from detector.enrich import enrich_access, open_database
from detector.errors import ConfigError
from detector.features import session_features
from detector.features.workload import DIP_TIMES
from detector.ingest import open_source, read_table
from detector.ingest.batches import hive_keys
from detector.pipeline import Inputs, build_features
from detector.runinfo import RunReport
from detector.schema import ACCESS, TELEMETRY, TENANTS
from detector.sessions import cut_sessions
from detector.simulate import simulate


@pytest.fixture(scope="module")
def fleet(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("fleet")
    simulate(out, 8, 1.5, seed=3, interval_s=120)
    return out


def _one_table(fleet: Path, telemetry: list[Path]) -> pd.DataFrame:
    """Features computed the plain way: everything in one table, in memory."""
    settings = load_settings()
    tel = read_table(telemetry, TELEMETRY).table
    acc = read_table([fleet / "access.jsonl.gz"], ACCESS).table
    ten = read_table([fleet / "tenants.csv"], TENANTS).table
    acc, _ = enrich_access(acc, open_database([]), settings, ten)
    return _by_id(session_features(*cut_sessions(tel, settings.sessions), acc, settings, ten))


@pytest.fixture(scope="module")
def one_table(fleet) -> pd.DataFrame:
    return _one_table(fleet, [fleet / "telemetry.parquet"])


def _by_id(table: pd.DataFrame) -> pd.DataFrame:
    return table.sort_values("session_id").reset_index(drop=True)


def _features(fleet: Path, telemetry: list[Path], engine: Engine) -> pd.DataFrame:
    inputs = Inputs(telemetry, [fleet / "access.jsonl.gz"], fleet / "tenants.csv")
    return build_features(inputs, load_settings(), engine=engine).sessions


def _same(a: pd.DataFrame, b: pd.DataFrame) -> None:
    assert len(a) > 10
    pd.testing.assert_frame_equal(_by_id(a), b, check_exact=True, check_dtype=False)


def _split_by_time(fleet: Path, folder: Path, pieces: int) -> Path:
    table = pq.read_table(fleet / "telemetry.parquet")
    folder.mkdir()
    bounds = np.linspace(0, table.num_rows, pieces + 1).astype(int)
    for i, (lo, hi) in enumerate(zip(bounds[:-1], bounds[1:], strict=True)):
        pq.write_table(table.slice(lo, hi - lo), folder / f"part-{i:03d}.parquet")
    return folder


@pytest.mark.parametrize("partitions", [1, 3, 7])
def test_partition_counts_give_the_one_table_features(fleet, one_table, partitions):
    _same(_features(fleet, [fleet / "telemetry.parquet"], Engine(partitions=partitions)), one_table)


@pytest.mark.parametrize("pieces", [2, 5, 13])
def test_files_split_inside_sessions_give_the_one_table_features(
    fleet, one_table, tmp_path, pieces
):
    folder = _split_by_time(fleet, tmp_path / "split", pieces)
    _same(_features(fleet, [folder], Engine(partitions=4)), one_table)


def test_hive_partitions_by_day_and_tenant_give_the_one_table_features(fleet, one_table, tmp_path):
    frame = pq.read_table(fleet / "telemetry.parquet").to_pandas()
    frame["day"] = frame["timestamp"].dt.strftime("%Y-%m-%d")
    root = tmp_path / "hive"
    for (day, tenant), part in frame.groupby(["day", "tenant_id"], sort=True):
        folder = root / f"day={day}" / f"tenant_id={tenant}"
        folder.mkdir(parents=True)
        part.drop(columns=["day", "tenant_id"]).to_parquet(folder / "data.parquet", index=False)
    assert hive_keys(folder / "data.parquet", TELEMETRY) == {"tenant_id": tenant}
    _same(_features(fleet, [root], Engine(partitions=3)), one_table)


def test_csv_telemetry_is_read_whole_then_partitioned(fleet, tmp_path):
    csv = tmp_path / "telemetry.csv"
    pq.read_table(fleet / "telemetry.parquet").to_pandas().to_csv(csv, index=False)
    _same(_features(fleet, [csv], Engine(partitions=3)), _one_table(fleet, [csv]))


def test_rows_are_accepted_or_quarantined_with_file_and_row(fleet, tmp_path):
    table = pq.read_table(fleet / "telemetry.parquet").to_pandas()
    folder = tmp_path / "bad"
    folder.mkdir()
    first, second = table.iloc[:1000].copy(), table.iloc[1000:2000].copy()
    first.loc[first.index[5], "gpu_util"] = 250.0  # out of range
    second = pd.concat([second, first.iloc[[7, 8]]])  # duplicates of earlier rows
    first.to_parquet(folder / "a.parquet", index=False)
    second.to_parquet(folder / "b.parquet", index=False)
    source = open_source([folder], TELEMETRY)
    _, rejected, counts = extract(source, load_settings(), RunReport(), engine=Engine(partitions=2))
    assert counts.read == 2002 and counts.accepted == 1999
    assert counts.quarantined == len(rejected) == 3
    dup = rejected[rejected["reason"] == "duplicate"].sort_values("row")
    assert dup["file"].str.endswith("b.parquet").all() and dup["row"].tolist() == [1001, 1002]
    bad = rejected[rejected["reason"] != "duplicate"]
    assert bad["file"].iloc[0].endswith("a.parquet") and bad["row"].iloc[0] == 6
    assert "gpu_util" in bad["reason"].iloc[0]


def test_window_and_partition_bookkeeping(fleet, tmp_path):
    since = pd.Timestamp("2026-10-05 12:00", tz="UTC")
    source = open_source([fleet / "telemetry.parquet"], TELEMETRY, since=since)
    parts = partition_telemetry(source, tmp_path, 4)
    total = pq.ParquetFile(fleet / "telemetry.parquet").metadata.num_rows
    counts = parts.counts.check()
    assert counts.read == total and counts.out_of_window > 0
    assert counts.quarantined == len(parts.quarantine)
    seen = {}
    for i, path in enumerate(parts.paths):
        frame, dups = read_partition(path, parts.files)
        assert dups.empty and (frame["timestamp"] >= since).all()
        for tenant in frame["tenant_id"].unique():
            assert seen.setdefault(tenant, i) == i  # a tenant lives in one partition
    assert sum(len(read_partition(p, parts.files)[0]) for p in parts.paths) == counts.accepted


def test_partition_of_is_stable_and_in_range():
    tenants = np.array([f"t{i:03d}" for i in range(50)] * 2, dtype=object)
    got = partition_of(tenants, 7)
    assert got.min() >= 0 and got.max() < 7 and len(set(got)) > 3
    assert (got[:50] == got[50:]).all()
    assert (partition_of(np.array(["t001", "t002"], dtype=object), 7) == got[[1, 2]]).all()


def test_engine_options_are_checked():
    with pytest.raises(ConfigError, match="unknown engine"):
        Engine("spark")
    with pytest.raises(ConfigError, match="needs --engine dask"):
        Engine("local", scheduler="tcp://127.0.0.1:8786")
    with pytest.raises(ConfigError, match="at least 1"):
        Engine(partitions=0)
    with pytest.raises(ConfigError, match="slice_rows must be at least 1"):
        Engine(slice_rows=0)


def test_cli_partitions_and_quiet_scores_match(fleet, tmp_path):
    model = tmp_path / "model"
    base = [
        "--telemetry",
        str(fleet / "telemetry.parquet"),
        "--access",
        str(fleet / "access.jsonl.gz"),
        "--tenants",
        str(fleet / "tenants.csv"),
    ]
    runner = CliRunner()
    assert runner.invoke(main, ["-q", "train", *base, "--model-dir", str(model)]).exit_code == 0
    outs = []
    for parts in ("1", "5"):
        out = tmp_path / f"scores-{parts}.parquet"
        result = runner.invoke(
            main,
            [
                "-q",
                "score",
                *base,
                "--model-dir",
                str(model),
                "--out",
                str(out),
                "--partitions",
                parts,
            ],
        )
        assert result.exit_code == 0, result.output
        assert result.output == ""  # quiet: nothing printed
        outs.append(pd.read_parquet(out).drop(columns="run_id"))
    pd.testing.assert_frame_equal(outs[0], outs[1])
    bad = runner.invoke(
        main,
        [
            "score",
            *base,
            "--model-dir",
            str(model),
            "--out",
            str(tmp_path / "x.parquet"),
            "--scheduler",
            "tcp://127.0.0.1:1",
        ],
    )
    assert bad.exit_code != 0 and "needs --engine dask" in bad.output


def test_stage_seconds_are_reported(fleet, tmp_path):
    report = RunReport()
    build_features(
        Inputs([fleet / "telemetry.parquet"], [fleet / "access.jsonl.gz"]),
        load_settings(),
        report,
        Engine(partitions=2),
    )
    for stage in (
        "ingest",
        "enrich",
        "partition",
        "extract",
        "extract_sessions",
        "extract_workload",
        "features",
    ):
        assert report.stage_seconds[stage] >= 0.0
    assert json.dumps(report.stage_seconds)


def test_empty_partition_input_gives_no_sessions(tmp_path):
    empty = pa.table({c.name: pa.array([], pa.string()) for c in TELEMETRY.columns if c.required})
    pq.write_table(empty, tmp_path / "t.parquet")
    source = open_source([tmp_path / "t.parquet"], TELEMETRY)
    sessions, rejected, counts = extract(source, load_settings(), RunReport())
    assert counts.read == 0
    assert sessions.empty and rejected.empty


def test_parallel_partition_pass_keeps_input_order(fleet, one_table, tmp_path, monkeypatch):
    import detector.engine.partition as partition

    monkeypatch.setattr(partition, "MIN_ROWS_PARALLEL", 0)
    table = pq.read_table(fleet / "telemetry.parquet")
    pq.write_table(table, tmp_path / "t.parquet", row_group_size=3000)
    source = open_source([tmp_path / "t.parquet"], TELEMETRY)
    parts = partition_telemetry(source, tmp_path / "parts", 3, workers=2)
    assert {len(files) for files in parts.paths} == {8}  # every partition: all spans
    assert parts.counts.read == table.num_rows
    _same(_features(fleet, [tmp_path / "t.parquet"], Engine(partitions=3, workers=2)), one_table)


@pytest.fixture(scope="module")
def minute_fleet(tmp_path_factory) -> Path:
    """Sampled every minute, so lock-step (60 s grid) and dips are defined; one long job."""
    out = tmp_path_factory.mktemp("minute")
    simulate(out, 6, 1.0, seed=4, interval_s=60)
    return out


def _close(a: pd.DataFrame, b: pd.DataFrame) -> None:
    """The same sessions (ids, text, times) with features equal up to float addition order."""
    a, b = _by_id(a), _by_id(b)
    assert len(a) > 3 and list(a.columns) == list(b.columns)
    assert a["session_id"].tolist() == b["session_id"].tolist()
    for column in a.columns:
        if a[column].dtype.kind == "f":
            assert np.allclose(a[column], b[column], rtol=1e-9, atol=0, equal_nan=True), column
        elif column == DIP_TIMES:
            assert all(map(np.array_equal, a[column], b[column])), column
        else:
            pd.testing.assert_series_equal(a[column], b[column], check_dtype=False)


@pytest.mark.parametrize("name", ["fleet", "minute_fleet"])
def test_time_slices_give_the_unsliced_features(name, request):
    fleet = request.getfixturevalue(name)
    got = [
        _features(fleet, [fleet / "telemetry.parquet"], Engine(partitions=1, slice_rows=rows))
        for rows in (10**9, 3000)
    ]
    assert (got[1]["samples_per_gpu"] * got[1]["n_gpus"] > 6000).any()  # cut more than once
    assert got[1]["lockstep"].notna().sum() >= (name == "minute_fleet") * 3
    _close(got[1], got[0])


def test_time_slices_quarantine_the_same_duplicates(minute_fleet, tmp_path):
    table = pq.read_table(minute_fleet / "telemetry.parquet").to_pandas()
    dup = table.sample(50, random_state=1).assign(gpu_util=100.0)  # later copies: rejected
    pd.concat([table, dup]).to_parquet(tmp_path / "t.parquet", index=False)
    got = []
    for rows in (10**9, 3000):
        source = open_source([tmp_path / "t.parquet"], TELEMETRY)
        sessions, rejected, counts = extract(
            source, load_settings(), RunReport(), engine=Engine(partitions=2, slice_rows=rows)
        )
        got.append((sessions, rejected.sort_values("row").reset_index(drop=True), counts))
    (whole, rejected, counts), (sliced, sliced_rejected, sliced_counts) = got
    assert counts.quarantined == 50 and sliced_counts == counts
    pd.testing.assert_frame_equal(sliced_rejected, rejected)
    _close(sliced, whole)
