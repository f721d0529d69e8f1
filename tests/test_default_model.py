"""The shipped default model (the registry's promoted one) loads, fits today's features and
ranks the samples."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from detector.config import load_settings
from detector.features import NAMES
from detector.model.calibrate import average_precision
from detector.model.labels import match_truth
from detector.model.registry import Registry
from detector.pipeline import Inputs, build_features, score

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "data" / "samples"


def test_default_model_loads_and_ranks_the_samples():
    models = Registry(ROOT / "models")
    stored = models.load()  # the promoted model
    assert set(stored.model.features) <= set(NAMES)
    assert (models.path() / "MODEL_CARD.md").exists()
    table = build_features(
        Inputs(
            (SAMPLES / "telemetry.parquet",),
            (SAMPLES / "access.jsonl.gz",),
            SAMPLES / "tenants.csv",
        ),
        load_settings(),
    )
    scores = score(table.sessions, stored, table.report)
    truth = match_truth(scores, pd.read_csv(SAMPLES / "truth.csv"))["restricted_training"]
    assert average_precision(scores["risk_score"], truth) >= 0.9
