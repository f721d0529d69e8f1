"""A model folder: `model.skops` (no pickle), `MODEL_CARD.md` and the sealed `metadata.json`."""

from __future__ import annotations

import json
import logging
import os
import platform
import zipfile
from dataclasses import dataclass, field
from importlib.metadata import version
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import skops.io as sio

from ..errors import ModelError
from . import card, metadata
from .forest import SessionRiskModel
from .metadata import FORMAT_VERSION, file_sha256
from .supervised import FOREST, WEIGHT, SupervisedLayer, blend

log = logging.getLogger(__name__)

MODEL_FILE, METADATA_FILE, CARD_FILE = "model.skops", "metadata.json", "MODEL_CARD.md"
HELDOUT_FILE, SUPERVISED_FILE = "heldout.parquet", "supervised.skops"
_PACKAGES = ("gpuwatch", "scikit-learn", "numpy", "pandas", "skops")


@dataclass
class StoredModel:
    """A fitted model with what is needed to use and audit it: the held-out labelled sessions
    (features and `incident`) that its metrics and promotion are measured on, if any."""

    model: SessionRiskModel
    alert_risk: float
    metadata: dict[str, Any] = field(default_factory=dict)
    heldout: pd.DataFrame | None = None
    supervised: SupervisedLayer | None = None

    @property
    def version(self) -> str:
        return self.metadata.get("model_version", "")

    @property
    def needs(self) -> list[str]:
        """The columns scoring reads."""
        extra = list(self.supervised.features) if self.supervised else []
        return [*self.model.features, *(name for name, _ in self.model.gates), *extra]

    def risk_score(self, table: pd.DataFrame) -> np.ndarray:
        """Risk 0-100 of each session: the forest's, blended with the supervised layer's."""
        forest = self.model.risk_score(table)
        if self.supervised is None:
            return forest
        p = self.supervised.probability(table.assign(**{FOREST: forest}))
        return blend(forest, p)


def package_versions() -> dict[str, str]:
    found = {"python": platform.python_version()}
    for name in _PACKAGES:
        try:
            found[name] = version(name)
        except Exception:  # noqa: BLE001 - a missing distribution is reported as unknown
            found[name] = "unknown"
    return found


def save(stored: StoredModel, model_dir: str | os.PathLike) -> Path:
    """Write the model, its card and its sealed metadata into `model_dir` (created if needed)."""
    folder = Path(model_dir)
    folder.mkdir(parents=True, exist_ok=True)
    m = stored.model
    sio.dump(m, folder / MODEL_FILE, compression=zipfile.ZIP_DEFLATED, compresslevel=9)
    meta = {
        "model_version": "unversioned",
        **stored.metadata,
        "format_version": FORMAT_VERSION,
        "alert_risk": float(stored.alert_risk),
        "features": list(m.features),
        "params": _jsonable(m.get_params()),
        "normalisation": {
            "score_median": m.score_median_,
            "score_reference": m.score_reference_,
            "score_top": m.score_top_,
            "reference": [float(v) for v in m.reference],
            "reference_risk": float(m.reference_risk),
        },
        "versions": package_versions(),
        "files": {MODEL_FILE: file_sha256(folder / MODEL_FILE)},
    }
    if stored.supervised is not None:
        sup = stored.supervised
        sio.dump(sup, folder / SUPERVISED_FILE, compression=zipfile.ZIP_DEFLATED)
        meta["files"][SUPERVISED_FILE] = file_sha256(folder / SUPERVISED_FILE)
        meta["supervised"] = {
            "file": SUPERVISED_FILE,
            "features": list(sup.features),
            "weight": WEIGHT,
            "incident": sup.n_incident_,
            "benign": sup.n_benign_,
            "calibration": "sigmoid",
        }
    if stored.heldout is not None:
        stored.heldout.to_parquet(folder / HELDOUT_FILE, index=False)
        meta["files"][HELDOUT_FILE] = file_sha256(folder / HELDOUT_FILE)
    (folder / CARD_FILE).write_text(card.render(metadata.validate(meta, str(folder))))
    meta["files"][CARD_FILE] = file_sha256(folder / CARD_FILE)
    sealed = metadata.seal(meta)
    (folder / METADATA_FILE).write_text(json.dumps(sealed, indent=2, sort_keys=True) + "\n")
    return folder


def load(model_dir: str | os.PathLike) -> StoredModel:
    """Read a model folder: the metadata must fit the schema and its own hash, every file its
    recorded SHA-256, and the model file only types we trust. Any failure is a ModelError."""
    folder = Path(model_dir)
    model_file, meta_file = folder / MODEL_FILE, folder / METADATA_FILE
    for path in (meta_file, model_file):
        if not path.is_file():
            raise ModelError(f"{path}: no such file; train a model with `gpuwatch train` first")
    meta = metadata.read(meta_file)
    metadata.verify_files(folder, meta)
    model = _load_skops(model_file, _TRUSTED)
    if not isinstance(model, SessionRiskModel):
        raise ModelError(f"{model_file}: holds a {type(model).__name__}, not a gpuwatch model")
    if list(model.features) != meta["features"] or not hasattr(model, "envelope_"):
        raise ModelError(f"{model_file}: the model does not match its metadata's features")
    heldout = _read_heldout(folder / HELDOUT_FILE) if HELDOUT_FILE in meta["files"] else None
    supervised = None
    if meta.get("supervised"):
        supervised = _load_skops(folder / meta["supervised"]["file"], _TRUSTED_SUPERVISED)
        if not isinstance(supervised, SupervisedLayer) or list(supervised.features) != list(
            meta["supervised"]["features"]
        ):
            raise ModelError(f"{folder}: the supervised layer does not match its metadata")
    _warn_on_drift(meta.get("versions", {}), folder)
    return StoredModel(model, float(meta["alert_risk"]), meta, heldout, supervised)


def _read_heldout(path: Path) -> pd.DataFrame:
    try:
        table = pd.read_parquet(path)
    except Exception as exc:  # noqa: BLE001 - pyarrow raises many types on a damaged file
        raise ModelError(f"{path}: unreadable held-out set ({metadata.one_line(exc)})") from None
    if not {"session_id", "incident"} <= set(table.columns):
        raise ModelError(f"{path}: the held-out set lacks session_id or incident")
    return table


def _load_skops(path: Path, trusted: list[str]) -> Any:
    try:
        untrusted = sio.get_untrusted_types(file=path)
    except Exception as exc:  # noqa: BLE001 - skops raises many types on a damaged archive
        raise ModelError(f"{path}: unreadable model file ({metadata.one_line(exc)})") from None
    unexpected = [t for t in untrusted if t not in trusted]
    if unexpected:
        raise ModelError(f"{path}: refuses to load untrusted types {unexpected}")
    try:
        return sio.load(path, trusted=trusted)
    except Exception as exc:  # noqa: BLE001 - as above: one line, never a traceback
        raise ModelError(f"{path}: unreadable model file ({metadata.one_line(exc)})") from None


def _warn_on_drift(saved: dict[str, str], folder: Path) -> None:
    now = package_versions()
    for name in ("scikit-learn", "numpy"):
        if saved.get(name) and saved[name] != now.get(name):
            log.warning(
                "%s was trained with %s %s, running %s: retrain if scores drift",
                folder,
                name,
                saved[name],
                now.get(name),
            )


def _jsonable(params: dict[str, Any]) -> dict[str, Any]:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in params.items()}


# Types that a gpuwatch model file holds beyond skops' default trusted set.
_TRUSTED: list[str] = [
    "numpy.dtype",
    "sklearn.tree._tree.Tree",
    "detector.model.forest.SessionRiskModel",
]
_TRUSTED_SUPERVISED: list[str] = [
    "detector.model.supervised.SupervisedLayer",
    "sklearn.calibration._CalibratedClassifier",
    "sklearn.calibration._SigmoidCalibration",
    "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
    "sklearn.model_selection._split.StratifiedKFold",
]
