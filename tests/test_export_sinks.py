"""Textfile output (atomic, push-add on failure) and the run sidecar."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from export_fixtures import run_report, scores_frame
from prometheus_client.parser import text_string_to_metric_families

from detector.errors import InputError
from detector.export import (
    ExportError,
    ExportOptions,
    read_run_sidecar,
    write_run_sidecar,
)
from detector.export.publish import publish, publish_failure
from detector.export.textfile import atomic_write


def values(path: Path) -> dict[str, float]:
    """{sample name with labels: value} of a textfile."""
    return {
        s.name + str(sorted(s.labels.items())): s.value
        for family in text_string_to_metric_families(path.read_text())
        for s in family.samples
    }


def test_concurrent_reader_never_sees_a_partial_file(tmp_path):
    target = tmp_path / "gpuwatch.prom"
    versions = [(f"# {tag}\n" + "x" * 2_000_000 + "\n# end\n").encode() for tag in "ab"]
    atomic_write(target, versions[0])
    done = threading.Event()

    def writer() -> None:
        for i in range(60):
            atomic_write(target, versions[i % 2])
        done.set()

    thread = threading.Thread(target=writer)
    thread.start()
    reads = 0
    while not done.is_set() or reads == 0:
        assert target.read_bytes() in versions
        reads += 1
    thread.join()
    assert reads > 0
    assert [p.name for p in tmp_path.iterdir()] == ["gpuwatch.prom"]  # no temp files left


def test_publish_writes_textfile(tmp_path):
    target = tmp_path / "gpuwatch.prom"
    publish(scores_frame(), run_report(), ExportOptions(metrics_file=target))
    got = values(target)
    assert got["gpuwatch_last_run_success[]"] == 1.0
    assert got["gpuwatch_tenant_risk_score[('tenant', 'a')]"] == 95.0
    assert oct(target.stat().st_mode & 0o777) == "0o644"


def test_failure_keeps_last_success_and_scores(tmp_path):
    target = tmp_path / "gpuwatch.prom"
    publish(scores_frame(), run_report(), ExportOptions(metrics_file=target))
    failed = run_report(success=False)
    failed.finished_at, failed.stage_seconds = 1_717_203_600.0, {"ingest": 9.0}
    publish_failure(failed, ExportOptions(metrics_file=target))
    got = values(target)
    assert got["gpuwatch_last_run_success[]"] == 0.0
    assert got["gpuwatch_last_run_timestamp_seconds[]"] == 1_717_203_600.0
    assert got["gpuwatch_last_success_timestamp_seconds[]"] == 1_717_200_090.5
    assert got["gpuwatch_run_duration_seconds[('stage', 'ingest')]"] == 9.0
    assert "gpuwatch_run_duration_seconds[('stage', 'score')]" not in got
    assert got["gpuwatch_tenant_risk_score[('tenant', 'a')]"] == 95.0


def test_failure_without_previous_file_writes_run_metrics(tmp_path):
    target = tmp_path / "gpuwatch.prom"
    publish_failure(run_report(success=False), ExportOptions(metrics_file=target))
    assert values(target)["gpuwatch_last_run_success[]"] == 0.0


def test_unwritable_target_raises_export_error(tmp_path):
    with pytest.raises(ExportError, match="missing"):
        publish(
            scores_frame(),
            run_report(),
            ExportOptions(metrics_file=tmp_path / "missing" / "x.prom"),
        )


def test_sidecar_round_trip(tmp_path):
    scores = tmp_path / "scores.parquet"
    path = write_run_sidecar(scores, run_report())
    assert path.name == "scores.parquet.run.json"
    assert read_run_sidecar(scores) == run_report()
    assert read_run_sidecar(tmp_path / "other.parquet") is None


@pytest.mark.parametrize("content", ["{", "[]", '{"format": 1}'])
def test_malformed_sidecar_names_the_file(tmp_path, content):
    (tmp_path / "s.parquet.run.json").write_text(content)
    with pytest.raises(InputError, match="s.parquet.run.json"):
        read_run_sidecar(tmp_path / "s.parquet")
