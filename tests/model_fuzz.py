"""Fuzz the model loader: random byte flips, truncations and metadata mutations of a real model.

Each trial damages a copy of a model folder and loads it. Outcomes:
- refused: a ModelError (one line, exit 2 on the command line);
- harmless: it loaded and the damage changed no meaning (e.g. a flipped JSON whitespace byte
  that still parses to the same content);
- silent: it loaded although the model or its metadata means something else (a failure);
- traceback: any other exception (a failure).

`python tests/model_fuzz.py MODEL_DIR --trials N` prints the counts as JSON (`make fuzz`);
tests/test_model_integrity.py runs a few hundred trials.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import random
import shutil
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from detector.errors import ModelError
from detector.model import store

Damage = Callable[[Path, random.Random], None]


def flip(name: str) -> Damage:
    def damage(folder: Path, rng: random.Random) -> None:
        data = bytearray((folder / name).read_bytes())
        at = rng.randrange(len(data))
        data[at] ^= 1 << rng.randrange(8)
        (folder / name).write_bytes(bytes(data))

    return damage


def truncate(name: str) -> Damage:
    def damage(folder: Path, rng: random.Random) -> None:
        data = (folder / name).read_bytes()
        (folder / name).write_bytes(data[: rng.randrange(len(data))])

    return damage


def delete(folder: Path, rng: random.Random) -> None:
    meta = json.loads((folder / metadata_file()).read_text())
    (folder / rng.choice(sorted(meta["files"]))).unlink()


# Edits a person or a tool might make to metadata.json, all invalid.
MUTATIONS: dict[str, Callable[[dict[str, Any]], None]] = {
    "alert_risk=-1": lambda m: m.update(alert_risk=-1),
    "alert_risk=0": lambda m: m.update(alert_risk=0),
    "alert_risk=101": lambda m: m.update(alert_risk=101.0),
    "alert_risk=NaN": lambda m: m.update(alert_risk=math.nan),
    "alert_risk=inf": lambda m: m.update(alert_risk=math.inf),
    "alert_risk='70'": lambda m: m.update(alert_risk="70"),
    "features unknown": lambda m: m.update(features=["restricted_compute", "no_such_feature"]),
    "features dropped": lambda m: m.update(features=m["features"][:1]),
    "features repeated": lambda m: m.update(features=m["features"][:1] * 2),
    "features empty": lambda m: m.update(features=[]),
    "format_version=2": lambda m: m.update(format_version=2),
    "format_version missing": lambda m: m.pop("format_version"),
    "model_version empty": lambda m: m.update(model_version=""),
    "model_version path": lambda m: m.update(model_version="../../etc"),
    "reference short": lambda m: m["normalisation"].update(reference=[0.1]),
    "reference negative": lambda m: m["normalisation"].update(reference=[-1.0, 0.1]),
    "reference_risk=0": lambda m: m["normalisation"].update(reference_risk=0.0),
    "score_median=null": lambda m: m["normalisation"].update(score_median=None),
    "files empty": lambda m: m.update(files={}),
    "files bad hash": lambda m: m["files"].update({"model.skops": "0" * 63}),
    "files outside": lambda m: m["files"].update({"../x": "0" * 64}),
    "unknown key": lambda m: m.update(alert_risk_override=10),
    "training sessions<0": lambda m: m["training"].update(sessions=-1),
    "not an object": lambda m: m.clear(),
}


def mutate(name: str, reseal: bool) -> Damage:
    def damage(folder: Path, rng: random.Random) -> None:
        path = folder / metadata_file()
        meta = json.loads(path.read_text())
        MUTATIONS[name](meta)
        if reseal:  # a deliberate editor who recomputes the hash: the schema must still refuse
            body = {k: v for k, v in meta.items() if k != "integrity"}
            text = json.dumps(body, sort_keys=True, separators=(",", ":"))
            meta["integrity"] = hashlib.sha256(text.encode()).hexdigest()
        path.write_text(json.dumps(meta if meta else [], indent=2))

    return damage


# Byte damage (flips, truncations, deletions) four times as often as metadata edits.
WEIGHTS = {"flip": 5, "truncate": 2, "delete": 1, "mutate": 2}


def metadata_file() -> str:
    return store.METADATA_FILE


def damages(folder: Path) -> dict[str, Damage]:
    files = sorted(json.loads((folder / metadata_file()).read_text())["files"])
    out: dict[str, Damage] = {}
    for name in [*files, metadata_file()]:
        out[f"flip {name}"] = flip(name)
        out[f"truncate {name}"] = truncate(name)
    out["delete a file"] = delete
    for name in MUTATIONS:
        out[f"mutate {name}"] = mutate(name, reseal=False)
        out[f"mutate {name} (resealed)"] = mutate(name, reseal=True)
    return out


def meaning(folder: Path) -> tuple[str, dict[str, bytes]]:
    """What a model folder means: its metadata's content and the bytes of its files."""
    meta = json.loads((folder / metadata_file()).read_text())
    return json.dumps(meta, sort_keys=True), {n: (folder / n).read_bytes() for n in meta["files"]}


def run(
    model_dir: Path, work: Path, trials: int, seed: int = 0, deadline: float = math.inf
) -> dict[str, Any]:
    """Damage and load `trials` copies of `model_dir` (fewer if time.time() passes
    `deadline`); counts per outcome and per damage."""
    rng = random.Random(seed)
    original = meaning(model_dir)
    kinds = damages(model_dir)
    names = sorted(kinds)
    families = {f: [n for n in names if n.startswith(f)] for f in WEIGHTS}
    outcomes: Counter[str] = Counter()
    by_kind: dict[str, Counter[str]] = {}
    failures: list[str] = []
    messages: dict[str, str] = {}
    done = 0
    for trial in range(trials):
        if time.time() > deadline:
            break
        done += 1
        # Every damage once, then at random: a family by its weight, a damage in it.
        family = rng.choices(list(WEIGHTS), weights=list(WEIGHTS.values()))[0]
        name = names[trial] if trial < len(names) else rng.choice(families[family])
        folder = work / f"trial-{trial}"
        shutil.copytree(model_dir, folder)
        kinds[name](folder, rng)
        last = ""
        try:
            store.load(folder)
        except ModelError as exc:
            last = str(exc).replace(str(folder), "MODEL")
            outcome = "refused" if "\n" not in last else "traceback"
        except Exception as exc:  # noqa: BLE001 - counting them is the point
            outcome = "traceback"
            failures.append(f"{name}: {type(exc).__name__}: {exc}")
        else:
            try:
                same = meaning(folder) == original
            except (ValueError, OSError):
                same = False
            outcome = "harmless" if same else "silent"
            if not same:
                failures.append(f"{name}: loaded")
        outcomes[outcome] += 1
        kind = next(f for f in WEIGHTS if name.startswith(f))
        by_kind.setdefault(kind, Counter())[outcome] += 1
        messages[kind] = messages.get(kind) or last
        shutil.rmtree(folder)
    return {
        "trials": done,
        "outcomes": dict(outcomes),
        "by_kind": {k: dict(v) for k, v in sorted(by_kind.items())},
        "failures": failures[:20],
        "a message per kind": messages,
    }


if __name__ == "__main__":
    import tempfile

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model_dir", type=Path)
    parser.add_argument("--trials", type=int, default=3000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="gpuwatch-fuzz-") as tmp:
        result = run(args.model_dir, Path(tmp), args.trials, args.seed)
    print(json.dumps(result, indent=2))
    sys.exit(1 if result["outcomes"].get("silent") or result["outcomes"].get("traceback") else 0)
