"""The model registry: one folder per model under a root (`models/` by default), and
`registry.json` naming the promoted model with the history of promotions and rollbacks.

A model's id is its `model_version`: the training date and a short hash of its training data
(`20261202-c227d74b`), with a suffix when that id is taken. Promotion compares the candidate
with the promoted model on the same held-out labelled sessions (the union of both models'
`heldout.parquet`): a candidate with a lower average precision is refused unless forced.
"""

from __future__ import annotations

import getpass
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..errors import ModelError
from . import store
from .calibrate import average_precision

REGISTRY_FILE = "registry.json"


@dataclass(frozen=True)
class Comparison:
    """Two models scored on the same held-out labelled sessions."""

    candidate: str
    current: str | None
    sessions: int
    incident: int
    candidate_ap: float | None
    current_ap: float | None

    @property
    def worse(self) -> bool:
        if self.candidate_ap is None or self.current_ap is None:
            return False
        return self.candidate_ap < self.current_ap


class Registry:
    """A folder of model folders and the record of which one is promoted."""

    def __init__(self, root: str | os.PathLike) -> None:
        self.root = Path(root)

    # --- reading -------------------------------------------------------------------------

    def ids(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir() if (p / store.METADATA_FILE).is_file())

    def state(self) -> dict[str, Any]:
        path = self.root / REGISTRY_FILE
        if not path.is_file():
            return {"promoted": None, "history": []}
        try:
            state = json.loads(path.read_text())
        except (ValueError, OSError) as exc:
            raise ModelError(f"{path}: unreadable registry ({exc})") from None
        if not isinstance(state, dict) or not isinstance(state.get("history"), list):
            raise ModelError(f"{path}: not a gpuwatch registry (promoted, history)")
        return state

    def promoted(self) -> str:
        current = self.state().get("promoted")
        if not current:
            raise ModelError(
                f"{self.root}: no promoted model; train one (`gpuwatch train --registry "
                f"{self.root}`) or promote one (`gpuwatch models promote ID`)"
            )
        return self.resolve(current)

    def resolve(self, prefix: str) -> str:
        """The id that `prefix` starts uniquely (case-insensitive)."""
        ids = self.ids()
        if prefix in ids:
            return prefix
        hits = [i for i in ids if i.lower().startswith(prefix.lower())]
        if len(hits) != 1:
            known = ", ".join(ids) or "none"
            what = "ambiguous" if hits else "unknown"
            raise ModelError(f"{self.root}: {what} model {prefix!r} (models: {known})")
        return hits[0]

    def path(self, model_id: str | None = None) -> Path:
        """The folder of `model_id` (an id or a unique prefix), else of the promoted model."""
        return self.root / (self.resolve(model_id) if model_id else self.promoted())

    def load(self, model_id: str | None = None) -> store.StoredModel:
        return store.load(self.path(model_id))

    # --- writing -------------------------------------------------------------------------

    def add(self, stored: store.StoredModel) -> str:
        """Save a new model under a fresh id; the first model of a registry is promoted."""
        self.root.mkdir(parents=True, exist_ok=True)
        base = stored.version or "model"
        model_id, n = base, 1
        while (self.root / model_id).exists():
            n += 1
            model_id = f"{base}-{n}"
        stored.metadata["model_version"] = model_id
        store.save(stored, self.root / model_id)
        if not self.state().get("promoted"):
            self._record(model_id, "promote", forced=False, note="first model of the registry")
        return model_id

    def compare(self, candidate: str, current: str | None) -> Comparison:
        """Score both models on the union of their held-out labelled sessions."""
        cand = self.load(candidate)
        cur = self.load(current) if current else None
        sets = [s.heldout for s in (cand, cur) if s is not None and s.heldout is not None]
        cand_id = self.resolve(candidate)
        if not sets:
            return Comparison(cand_id, current, 0, 0, None, None)
        table = pd.concat(sets, ignore_index=True).drop_duplicates("session_id")
        incident = table["incident"].to_numpy(bool)
        if incident.all() or not incident.any():
            return Comparison(cand_id, current, len(table), int(incident.sum()), None, None)

        def ap(model: store.StoredModel | None) -> float | None:
            if model is None:
                return None
            missing = set(model.needs) - set(table.columns)
            if missing:  # an older held-out set lacks a feature this model reads
                return None
            return average_precision(model.risk_score(table), incident)

        return Comparison(cand_id, current, len(table), int(incident.sum()), ap(cand), ap(cur))

    def promote(self, model_id: str, force: bool = False) -> Comparison:
        """Make `model_id` the default; refused when it ranks the held-out labels worse."""
        candidate = self.resolve(model_id)
        current = self.state().get("promoted")
        current = current if current in self.ids() else None
        result = self.compare(candidate, current)
        if result.worse and not force:
            raise ModelError(
                f"{candidate}: held-out average precision {result.candidate_ap:.3f} is below "
                f"the promoted {current}'s {result.current_ap:.3f} on {result.sessions} labelled "
                "sessions; keep the current model, or pass --force"
            )
        note = (
            f"held-out AP {_fmt(result.candidate_ap)} vs {_fmt(result.current_ap)} "
            f"on {result.sessions} sessions"
        )
        self._record(candidate, "promote", forced=force and result.worse, note=note)
        return result

    def rollback(self) -> str:
        """Return to the model that was promoted before the current one."""
        state = self.state()
        current = state.get("promoted")
        came_from = [
            h.get("from")
            for h in state["history"]
            if h.get("action") == "promote" and h.get("to") == current
        ]
        previous = came_from[-1] if came_from else None
        if not previous or previous not in self.ids():
            raise ModelError(f"{self.root}: no earlier promoted model to roll back to")
        self._record(previous, "rollback", forced=False, note=f"from {current}")
        return previous

    def _record(self, model_id: str, action: str, forced: bool, note: str) -> None:
        state = self.state()
        state["history"].append(
            {
                "action": action,
                "from": state.get("promoted"),
                "to": model_id,
                "at": pd.Timestamp.now(tz="UTC").strftime("%Y-%m-%dT%H:%M:%SZ"),
                "by": _user(),
                "forced": forced,
                "note": note,
            }
        )
        state["promoted"] = model_id
        _write_json(self.root / REGISTRY_FILE, state)


def summary(stored: store.StoredModel) -> dict[str, Any]:
    """The facts `models list|show` print about a model."""
    meta = stored.metadata
    held = meta.get("heldout") or {}
    training = meta.get("training") or {}
    return {
        "model": meta["model_version"],
        "trained_at": meta.get("trained_at", ""),
        "sessions": training.get("sessions"),
        "labels": (training.get("labelled_incident", 0), training.get("labelled_benign", 0)),
        "supervised": bool(meta.get("supervised")),
        "alert_risk": meta["alert_risk"],
        "threshold_source": meta.get("threshold_source"),
        "heldout_ap": held.get("average_precision"),
        "heldout_sessions": held.get("sessions", 0),
    }


def _fmt(value: float | None) -> str:
    return "n/a" if value is None or np.isnan(value) else f"{value:.3f}"


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


def _write_json(path: Path, data: dict[str, Any]) -> None:
    """Write atomically: a unique temp file in the folder, fsync, rename."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(json.dumps(data, indent=2) + "\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
