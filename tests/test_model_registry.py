"""The model registry: ids, the promoted model, promotion that compares held-out labels,
rollback, and the `gpuwatch models` commands."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from detector.cli import main
from detector.errors import ModelError
from detector.model import store
from detector.model.forest import MODEL_FEATURES, SessionRiskModel
from detector.model.registry import Registry

REFERENCE = (0.25, 0.26)
WEAK = ("n_gpus", "duration_s")  # features that say nothing about the incidents below


def fleet(n: int = 300, seed: int = 0) -> pd.DataFrame:
    """Sessions whose incidents (5 %) stand out on the evidence features, not on WEAK ones."""
    rng = np.random.default_rng(seed)
    incident = rng.random(n) < 0.05
    table = pd.DataFrame(
        {
            "session_id": [f"s{seed}-{i:04d}" for i in range(n)],
            "restricted_compute": np.where(
                incident, rng.uniform(0.4, 1, n), rng.uniform(0, 0.1, n)
            ),
            "restricted_gpu_hours": np.where(
                incident, rng.uniform(1, 4, n), rng.uniform(0, 0.3, n)
            ),
            "n_gpus": rng.integers(1, 64, n).astype(float),
            "duration_s": rng.uniform(600, 86400, n),
        }
    )
    table["incident"] = incident
    return table


def low(rng: np.random.Generator, top: float, n: int) -> np.ndarray:
    return rng.uniform(0, top, n)


def model(features=MODEL_FEATURES, version="v", heldout_seed: int | None = 1) -> store.StoredModel:
    train = fleet(seed=0)
    forest = SessionRiskModel(
        features=features,
        reference=REFERENCE if features == MODEL_FEATURES else (32.0, 4e4),
        n_estimators=50,
    ).fit(train[~train["incident"]])
    heldout = fleet(seed=heldout_seed) if heldout_seed is not None else None
    return store.StoredModel(forest, 70.0, {"model_version": version}, heldout)


def test_the_first_model_is_promoted_later_ones_wait(tmp_path):
    models = Registry(tmp_path / "models")
    with pytest.raises(ModelError, match="no promoted model"):
        models.load()
    first = models.add(model(version="20261201-aaaa1111"))
    second = models.add(model(version="20261201-aaaa1111"))  # same id: a suffix keeps both
    assert (first, second) == ("20261201-aaaa1111", "20261201-aaaa1111-2")
    assert models.promoted() == first and models.ids() == [first, second]
    assert models.load().version == first
    assert models.resolve("20261201-AAAA1111-") == second  # unique prefix, any case
    with pytest.raises(ModelError, match="ambiguous model '2026'"):
        models.resolve("2026")
    with pytest.raises(ModelError, match="unknown model 'x'"):
        models.load("x")


def test_promote_refuses_a_worse_model_unless_forced_and_rollback_returns(tmp_path):
    models = Registry(tmp_path)
    good = models.add(model(version="good"))
    weak = models.add(model(WEAK, version="weak", heldout_seed=2))
    result = models.compare(weak, good)
    # Both scored on the union of both held-out sets: 600 sessions.
    assert result.sessions == 600 and result.worse
    assert result.current_ap > 0.9 > 0.3 > result.candidate_ap
    with pytest.raises(ModelError, match=r"held-out average precision 0\.\d+ is below"):
        models.promote(weak)
    assert models.promoted() == good
    models.promote(weak, force=True)
    assert models.promoted() == weak
    assert models.state()["history"][-1] | {"at": "", "by": ""} == {
        "action": "promote", "from": good, "to": weak, "at": "", "by": "", "forced": True,
        "note": f"held-out AP {result.candidate_ap:.3f} vs {result.current_ap:.3f} on 600 sessions",
    }  # fmt: skip
    assert models.rollback() == good and models.promoted() == good
    with pytest.raises(ModelError, match="no earlier promoted model"):
        models.rollback()
    better = models.add(model(version="better"))  # as good: promotion allowed
    assert not models.promote(better).worse and models.promoted() == better


def test_models_without_held_out_labels_promote_without_a_comparison(tmp_path):
    models = Registry(tmp_path)
    models.add(model(version="a", heldout_seed=None))
    b = models.add(model(version="b", heldout_seed=None))
    result = models.promote(b)
    assert result.sessions == 0 and result.candidate_ap is None and models.promoted() == b


def run(*args: str, code: int = 0) -> str:
    result = CliRunner().invoke(main, list(args))
    assert result.exit_code == code, result.output
    return result.output


def test_models_commands(tmp_path):
    models = Registry(tmp_path)
    good = models.add(model(version="good"))
    weak = models.add(model(WEAK, version="weak"))
    reg = ["--registry", str(tmp_path)]
    listed = json.loads(run("models", "list", *reg, "--format", "json"))
    assert [(r["model"], r["promoted"]) for r in listed] == [(good, True), (weak, False)]
    assert "# Model card: gpuwatch model `weak`" in run("models", "show", "we", *reg)
    assert json.loads(run("models", "show", *reg, "--format", "json"))["model_version"] == good
    compared = json.loads(run("models", "compare", weak, *reg, "--format", "json"))
    assert compared["worse"] and compared["current"] == good
    out = run("models", "promote", weak, *reg, code=2)
    assert len(out.strip().splitlines()) == 1 and "--force" in out
    assert "promoted weak" in run("models", "promote", weak, "--force", *reg)
    assert f"promoted {good} again" in run("models", "rollback", *reg)
    (tmp_path / good / "model.skops").write_bytes(b"damaged")
    listed = json.loads(run("models", "list", *reg, "--format", "json"))
    assert "SHA-256 does not match" in listed[0]["error"]
