"""Model integrity: every file's SHA-256 and the metadata's schema are checked on load; a fuzz of
the loader finds no silent load of a damaged model and no traceback (more trials: `make fuzz`)."""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner
from model_fuzz import MUTATIONS, flip, mutate, run

from detector.cli import main
from detector.errors import ModelError
from detector.model import metadata, store
from detector.model.registry import Registry

ROOT = Path(__file__).resolve().parents[1]
MODEL = Registry(ROOT / "models").path()  # the promoted model
SAMPLES = ROOT / "data" / "samples"


def test_the_shipped_model_is_sealed_and_names_every_file():
    meta = json.loads((MODEL / "metadata.json").read_text())
    assert meta["integrity"] == metadata.canonical_sha256(meta)
    on_disk = {p.name for p in MODEL.iterdir()} - {"metadata.json"}
    assert set(meta["files"]) == on_disk
    for name, digest in meta["files"].items():
        assert metadata.file_sha256(MODEL / name) == digest


def test_fuzzed_models_are_refused_never_loaded_silently_nor_with_a_traceback(tmp_path):
    result = run(MODEL, tmp_path, trials=300, seed=11)
    outcomes = result["outcomes"]
    assert outcomes.get("silent", 0) == 0 and outcomes.get("traceback", 0) == 0, result["failures"]
    assert outcomes["refused"] >= 290  # the rest: damage with no change of meaning
    assert set(result["by_kind"]) == {"flip", "truncate", "delete", "mutate"}


@pytest.mark.parametrize("name", sorted(MUTATIONS))
def test_every_invalid_edit_is_refused_by_the_schema_even_with_a_fresh_hash(tmp_path, name):
    folder = tmp_path / "m"
    shutil.copytree(MODEL, folder)
    mutate(name, reseal=True)(folder, random.Random(0))
    with pytest.raises(ModelError) as caught:
        store.load(folder)
    assert "integrity" not in str(caught.value)  # the schema, not the hash, said no
    assert "\n" not in str(caught.value)


def test_a_hand_edited_threshold_is_refused_by_the_integrity_hash(tmp_path):
    folder = tmp_path / "m"
    shutil.copytree(MODEL, folder)
    meta = json.loads((folder / "metadata.json").read_text())
    meta["alert_risk"] = 40.0  # valid, but not what was trained
    (folder / "metadata.json").write_text(json.dumps(meta))
    with pytest.raises(ModelError, match="integrity hash does not match"):
        store.load(folder)


def test_score_with_a_damaged_model_exits_2_with_one_line(tmp_path):
    folder = tmp_path / "m"
    shutil.copytree(MODEL, folder)
    flip("model.skops")(folder, random.Random(3))
    result = CliRunner().invoke(
        main,
        [
            "score",
            "--telemetry",
            str(SAMPLES / "telemetry.parquet"),
            "--access",
            str(SAMPLES / "access.jsonl.gz"),
            "--model-dir",
            str(folder),
            "--out",
            str(tmp_path / "scores.parquet"),
        ],
    )
    lines = result.output.strip().splitlines()
    assert result.exit_code == 2 and len(lines) == 1, lines
    assert "model.skops: SHA-256 does not match" in lines[0]
    assert not (tmp_path / "scores.parquet").exists()
