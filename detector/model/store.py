"""The model registry: a model folder holds `model.skops` (no pickle) and `metadata.json`."""

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

import skops.io as sio

from ..errors import ModelError
from .forest import SessionRiskModel

log = logging.getLogger(__name__)

MODEL_FILE, METADATA_FILE = "model.skops", "metadata.json"
FORMAT_VERSION = 2
_PACKAGES = ("gpuwatch", "scikit-learn", "numpy", "pandas", "skops")


@dataclass
class StoredModel:
    """A fitted model with what is needed to use and audit it."""

    model: SessionRiskModel
    alert_risk: float
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def version(self) -> str:
        return self.metadata.get("model_version", "")


def package_versions() -> dict[str, str]:
    found = {"python": platform.python_version()}
    for name in _PACKAGES:
        try:
            found[name] = version(name)
        except Exception:  # noqa: BLE001 - a missing distribution is reported as unknown
            found[name] = "unknown"
    return found


def save(stored: StoredModel, model_dir: str | os.PathLike) -> Path:
    """Write the model and its metadata into `model_dir` (created if needed)."""
    folder = Path(model_dir)
    folder.mkdir(parents=True, exist_ok=True)
    m = stored.model
    sio.dump(m, folder / MODEL_FILE, compression=zipfile.ZIP_DEFLATED, compresslevel=9)
    meta = {
        **stored.metadata,
        "format_version": FORMAT_VERSION,
        "alert_risk": stored.alert_risk,
        "features": list(m.features),
        "params": _jsonable(m.get_params()),
        "normalisation": {
            "score_median": m.score_median_,
            "score_reference": m.score_reference_,
            "score_top": m.score_top_,
            "reference": list(m.reference),
            "reference_risk": m.reference_risk,
        },
        "versions": package_versions(),
    }
    (folder / METADATA_FILE).write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
    return folder


def load(model_dir: str | os.PathLike) -> StoredModel:
    """Read a model folder, refusing files that hold types we do not trust."""
    folder = Path(model_dir)
    model_file, meta_file = folder / MODEL_FILE, folder / METADATA_FILE
    for path in (model_file, meta_file):
        if not path.is_file():
            raise ModelError(
                f"{path}: no such file; train a model with `gpuwatch train "
                f"--model-dir {folder}` first"
            )
    try:
        meta = json.loads(meta_file.read_text())
        untrusted = sio.get_untrusted_types(file=model_file)
    except (ValueError, OSError, zipfile.BadZipFile) as exc:
        raise ModelError(f"{folder}: unreadable model files ({exc})") from exc
    unexpected = [t for t in untrusted if t not in _TRUSTED]
    if unexpected:
        raise ModelError(f"{model_file}: refuses to load untrusted types {unexpected}")
    if meta.get("format_version") != FORMAT_VERSION:
        raise ModelError(
            f"{meta_file}: format_version {meta.get('format_version')!r}, "
            f"this gpuwatch reads {FORMAT_VERSION}"
        )
    model = sio.load(model_file, trusted=_TRUSTED)
    if not isinstance(model, SessionRiskModel):
        raise ModelError(f"{model_file}: holds a {type(model).__name__}, not a gpuwatch model")
    _warn_on_drift(meta.get("versions", {}), folder)
    return StoredModel(model, float(meta["alert_risk"]), meta)


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
