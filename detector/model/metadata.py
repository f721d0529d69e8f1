"""The schema of a model folder's `metadata.json`, and the hashes that seal the folder.

`metadata.json` names every other file of the folder with its SHA-256 (`files`), and carries
the SHA-256 of its own canonical content (`integrity`: the JSON without that field, keys
sorted, no whitespace). A model loads only when the schema holds, its own hash matches and
every file's hash matches: a changed byte anywhere is refused, not scored.
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    FiniteFloat,
    NonNegativeInt,
    ValidationError,
    field_validator,
    model_validator,
)

from ..errors import ModelError
from ..features.registry import NAMES

FORMAT_VERSION = 3
SHA256 = Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]
Risk = Annotated[FiniteFloat, Field(gt=0.0, le=100.0)]
Share = Annotated[FiniteFloat, Field(ge=0.0, le=1.0)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)


class Normalisation(_Strict):
    score_median: FiniteFloat
    score_reference: FiniteFloat
    score_top: FiniteFloat
    reference: list[Annotated[FiniteFloat, Field(ge=0.0)]]
    reference_risk: Risk


class Training(_Strict):
    sessions: NonNegativeInt
    fit_sessions: NonNegativeInt
    labelled_incident: NonNegativeInt = 0
    labelled_benign: NonNegativeInt = 0
    data_sha256: SHA256
    period: list[str] = Field(default_factory=list, max_length=2)


class Metrics(_Strict):
    """Ranking and alert quality on held-out labelled sessions."""

    sessions: NonNegativeInt
    incident: NonNegativeInt
    average_precision: Share | None
    roc_auc: Share | None
    precision_at_alert: Share | None
    recall_at_alert: Share | None
    recall_at_1pct_fpr: Share | None
    test_from: str


class Supervised(_Strict):
    """The supervised layer blended with the forest (model/supervised.py)."""

    file: str
    features: list[str]
    weight: Share
    incident: NonNegativeInt
    benign: NonNegativeInt
    calibration: Literal["sigmoid", "isotonic"]


class DriftFeature(_Strict):
    """A feature's training distribution: bin edges (inner) and the share in each bin."""

    edges: list[FiniteFloat]
    shares: list[Share]
    missing: Share

    @model_validator(mode="after")
    def _bins(self) -> DriftFeature:
        if len(self.shares) != len(self.edges) + 1:
            raise ValueError(f"{len(self.edges)} edges need {len(self.edges) + 1} shares")
        if not math.isclose(sum(self.shares) + self.missing, 1.0, abs_tol=1e-6):
            raise ValueError("the shares do not sum to 1")
        return self


class ModelMetadata(_Strict):
    """Everything besides the fitted estimators that a model folder holds."""

    format_version: Literal[3]
    model_version: Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")]
    trained_at: str = ""
    alert_risk: Risk
    features: list[str] = Field(min_length=1)
    params: dict[str, Any]
    normalisation: Normalisation
    training: Training | None = None
    threshold_source: Literal["policy", "labels", "target-precision", "alert-budget"] = "policy"
    calibration: dict[str, float | int] | None = None
    heldout: Metrics | None = None
    supervised: Supervised | None = None
    drift: dict[str, DriftFeature] = Field(default_factory=dict)
    settings_source: list[str] = Field(default_factory=list)
    versions: dict[str, str]
    files: dict[str, SHA256] = Field(min_length=1)
    integrity: SHA256 | None = None

    @field_validator("features")
    @classmethod
    def _known_features(cls, features: list[str]) -> list[str]:
        unknown = [f for f in features if f not in NAMES]
        if unknown:
            raise ValueError(f"not in the feature registry: {unknown}")
        if len(set(features)) != len(features):
            raise ValueError("repeats a feature")
        return features

    @field_validator("drift")
    @classmethod
    def _known_drift(cls, drift: dict[str, DriftFeature]) -> dict[str, DriftFeature]:
        if unknown := [f for f in drift if f not in NAMES]:
            raise ValueError(f"not in the feature registry: {unknown}")
        return drift

    @field_validator("files")
    @classmethod
    def _plain_names(cls, files: dict[str, str]) -> dict[str, str]:
        bad = [n for n in files if Path(n).name != n or n.startswith(".")]
        if bad:
            raise ValueError(f"file names must be plain names in the folder: {bad}")
        return files

    @model_validator(mode="after")
    def _consistent(self) -> ModelMetadata:
        if len(self.normalisation.reference) != len(self.features):
            raise ValueError(
                f"normalisation.reference has {len(self.normalisation.reference)} values for "
                f"{len(self.features)} features"
            )
        if list(self.params.get("features", ())) != self.features:
            raise ValueError("params.features differs from features")
        if self.supervised and self.supervised.file not in self.files:
            raise ValueError(f"supervised.file {self.supervised.file!r} is not in files")
        if self.supervised and (unknown := set(self.supervised.features) - set(NAMES)):
            raise ValueError(f"supervised.features not in the feature registry: {sorted(unknown)}")
        return self


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def canonical_sha256(meta: dict[str, Any]) -> str:
    """SHA-256 of the metadata without its `integrity` field, keys sorted, compact."""
    body = {k: v for k, v in meta.items() if k != "integrity"}
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), allow_nan=False)
    return hashlib.sha256(text.encode()).hexdigest()


def seal(meta: dict[str, Any]) -> dict[str, Any]:
    """The metadata, validated, with its `integrity` hash set."""
    checked = validate(meta, "metadata")
    return {**checked, "integrity": canonical_sha256(checked)}


def validate(meta: Any, where: str) -> dict[str, Any]:
    """Validate against the schema; every failure is a one-line ModelError."""
    if not isinstance(meta, dict):
        raise ModelError(f"{where}: expected a JSON object, got {type(meta).__name__}")
    if meta.get("format_version") != FORMAT_VERSION:
        raise ModelError(
            f"{where}: format_version {meta.get('format_version')!r}, this gpuwatch reads "
            f"{FORMAT_VERSION}; retrain the model with `gpuwatch train`"
        )
    try:
        checked = ModelMetadata.model_validate(meta)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'metadata'}: {e['msg']}"
            for e in exc.errors()[:3]
        )
        raise ModelError(f"{where}: invalid model metadata: {problems}") from None
    return checked.model_dump(mode="json", exclude_none=False)


def read(path: Path) -> dict[str, Any]:
    """Read, validate and check the integrity of a `metadata.json` (not yet the files)."""
    try:
        raw = json.loads(path.read_bytes().decode("utf-8"), parse_constant=_no_constant)
    except (ValueError, OSError, RecursionError) as exc:
        raise ModelError(f"{path}: unreadable model metadata ({one_line(exc)})") from None
    checked = validate(raw, str(path))
    if raw.get("integrity") != canonical_sha256(raw):
        raise ModelError(
            f"{path}: the metadata's integrity hash does not match its content: the file was "
            "changed after training; retrain or restore it"
        )
    return checked


def verify_files(folder: Path, meta: dict[str, Any]) -> None:
    """Refuse the folder unless every file named in the metadata has its recorded SHA-256."""
    for name, expected in meta["files"].items():
        path = folder / name
        if not path.is_file():
            raise ModelError(f"{path}: missing (the model's metadata names it)")
        if file_sha256(path) != expected:
            raise ModelError(
                f"{path}: SHA-256 does not match the model's metadata: the file was changed "
                "or corrupted after training; retrain or restore it"
            )


def one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:200]


def _no_constant(name: str) -> float:
    raise ValueError(f"{name} is not a number JSON allows")
