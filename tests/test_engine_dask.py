"""The Dask engine on a real distributed.LocalCluster gives the local engine's features."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from detector.cli import main
from detector.config import load_settings
from detector.engine import Engine
from detector.pipeline import Inputs, build_features
from detector.simulate import simulate

distributed = pytest.importorskip("distributed")
pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def fleet(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("fleet")
    simulate(out, 8, 1.5, seed=5, interval_s=120)
    return out


@pytest.fixture(scope="module")
def model(fleet, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("model")
    result = CliRunner().invoke(main, ["-q", "train", *_args(fleet), "--model-dir", str(out)])
    assert result.exit_code == 0, result.output
    return out


def _args(fleet: Path) -> list[str]:
    return [
        "--telemetry",
        str(fleet / "telemetry.parquet"),
        "--access",
        str(fleet / "access.jsonl.gz"),
        "--tenants",
        str(fleet / "tenants.csv"),
    ]


def _inputs(fleet: Path) -> Inputs:
    return Inputs([fleet / "telemetry.parquet"], [fleet / "access.jsonl.gz"], fleet / "tenants.csv")


def test_dask_local_cluster_gives_the_local_features(fleet):
    settings = load_settings()
    local = build_features(_inputs(fleet), settings, engine=Engine("local", partitions=5))
    dask = build_features(_inputs(fleet), settings, engine=Engine("dask", partitions=5, workers=2))
    assert len(local.sessions) > 5
    pd.testing.assert_frame_equal(local.sessions, dask.sessions, check_exact=True)
    assert local.report.rows_accepted == dask.report.rows_accepted


def test_dask_time_slices_give_the_unsliced_features(tmp_path_factory):
    fleet = tmp_path_factory.mktemp("minute")
    simulate(fleet, 6, 1.0, seed=4, interval_s=60)  # lock-step and dips defined
    settings = load_settings()
    whole = build_features(_inputs(fleet), settings, engine=Engine("local", partitions=1))
    sliced = build_features(
        _inputs(fleet), settings, engine=Engine("dask", partitions=1, workers=2, slice_rows=3000)
    )
    a, b = (r.sessions.sort_values("session_id").reset_index(drop=True) for r in (whole, sliced))
    assert len(a) > 3 and (b["samples_per_gpu"] * b["n_gpus"] > 6000).any()
    assert a["session_id"].tolist() == b["session_id"].tolist()
    for column in a.columns:
        if a[column].dtype.kind == "f":
            assert np.allclose(a[column], b[column], rtol=1e-9, atol=0, equal_nan=True), column
        else:
            pd.testing.assert_series_equal(a[column], b[column], check_dtype=False)
    assert whole.report.rows_accepted == sliced.report.rows_accepted


def test_cli_scores_on_a_running_scheduler(fleet, model, tmp_path):
    base, runner = _args(fleet), CliRunner()
    with distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, host="127.0.0.1", dashboard_address=None
    ) as cluster:
        outs = []
        for engine in (
            ["--engine", "local"],
            ["--engine", "dask", "--scheduler", cluster.scheduler_address],
        ):
            out = tmp_path / f"{engine[1]}.parquet"
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
                    "3",
                    *engine,
                ],
            )
            assert result.exit_code == 0, result.output
            outs.append(pd.read_parquet(out).drop(columns="run_id"))
    pd.testing.assert_frame_equal(outs[0], outs[1])


def test_unreachable_scheduler_is_one_clean_error(fleet, model, tmp_path):
    result = CliRunner().invoke(
        main,
        [
            "score",
            *_args(fleet),
            "--model-dir",
            str(model),
            "--out",
            str(tmp_path / "s.parquet"),
            "--engine",
            "dask",
            "--scheduler",
            "tcp://127.0.0.1:9",
        ],
    )
    assert result.exit_code != 0
    assert "cannot reach the Dask scheduler tcp://127.0.0.1:9" in result.output
    assert "Traceback" not in result.output
