"""Suppression rules: known-good alerts silenced on purpose, with a reason, an author and an expiry.

As in cloud threat detectors (GuardDuty suppression rules, Security Command Center mute rules), a
rule names what it matches and why. A session that would alert and matches a rule is still scored
and stored, with ``alert`` false and the rule's id in ``suppressed_by``; the first matching rule
(in file order) is the one recorded. Rules past their expiry stop applying and are reported.

A rule matches when every criterion it gives holds (a list means any of its values):

- ``tenant``, ``entity``: the session's tenant or entity id;
- ``country``, ``asn``, ``as_org``: *every* country (AS number, AS organisation) the session's
  access came from is in the list, and at least one is known: a rule for a customer's Singapore
  office never silences a session that was also driven from elsewhere;
- ``conditions``: comparisons on scores columns, e.g. ``"risk_score < 80"``, ``"n_gpus <= 8"``;
  a missing (NaN) value fails the comparison.

Files are strict: an unknown key (with the nearest valid one), a bad date, a bad condition or a
rule that would match everything is a one-line ConfigError. ``add_rule`` and ``expire_rule`` edit
the file (comments kept) and append who, when and why to an append-only JSON Lines log beside it.
"""

from __future__ import annotations

import datetime as dt
import difflib
import fcntl
import hashlib
import json
import logging
import operator
import re
import tomllib
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import tomlkit

from . import columns as c
from .errors import ConfigError
from .features import NAMES as FEATURE_NAMES
from .schema import SCORE_HEAD, SCORE_TAIL

log = logging.getLogger(__name__)

MATCHERS = {  # rule key -> the scores columns it reads
    "tenant": (c.TENANT,),
    "entity": (c.ENTITY,),
    "country": (c.COUNTRIES,),
    "asn": (c.ASNS,),
    "as_org": (c.AS_ORGS,),
}
ALL_OF = ("country", "asn", "as_org")  # every value the session has must be listed
RULE_KEYS = ("id", "reason", "author", "created", "expires", *MATCHERS, "conditions")
REQUIRED_KEYS = ("id", "reason", "author")
ID_PATTERN = re.compile(r"[a-z0-9][a-z0-9_.-]{0,62}")
OPERATORS = {
    "<=": operator.le,
    ">=": operator.ge,
    "==": operator.eq,
    "!=": operator.ne,
    "<": operator.lt,
    ">": operator.gt,
}
CONDITION = re.compile(
    r"\s*([A-Za-z_][A-Za-z0-9_]*)\s*(" + "|".join(map(re.escape, OPERATORS)) + r")\s*(\S.*?)\s*"
)
# Columns a condition may name: the scores contract, the features and the evidence columns.
CONDITION_COLUMNS = tuple(
    dict.fromkeys(
        [*SCORE_HEAD, c.JOB, *FEATURE_NAMES, *SCORE_TAIL]
        + [v for k, v in vars(c).items() if k.isupper() and isinstance(v, str)]
    )
)
HEADER = (
    "# gpuwatch suppression rules: alerts matching a rule are stored with alert = false and\n"
    "# suppressed_by = the rule's id. Change them with `gpuwatch suppress add|expire`, which\n"
    "# keeps who, when and why in the audit log beside this file.\n"
)


@dataclass(frozen=True)
class Condition:
    column: str
    op: str
    value: float | str | bool
    text: str

    def holds(self, values: pd.Series) -> np.ndarray:
        if isinstance(self.value, str):
            left = values.astype("string")
        else:
            left = pd.to_numeric(values, errors="coerce")
        return OPERATORS[self.op](left, self.value).fillna(False).to_numpy(bool)


@dataclass(frozen=True)
class Rule:
    id: str
    reason: str
    author: str
    created: pd.Timestamp | None = None
    expires: pd.Timestamp | None = None
    match: Mapping[str, frozenset[str]] = field(default_factory=dict)  # matcher key -> values
    conditions: tuple[Condition, ...] = ()

    def expired(self, now: pd.Timestamp) -> bool:
        return self.expires is not None and now >= self.expires

    def columns(self) -> list[str]:
        """The scores columns this rule reads."""
        needed = [col for key in self.match for col in MATCHERS[key]]
        return list(dict.fromkeys(needed + [cond.column for cond in self.conditions]))


@dataclass(frozen=True)
class RuleSet:
    path: Path
    rules: tuple[Rule, ...]


@dataclass(frozen=True)
class Outcome:
    """What applying the rules did to one scores table."""

    scores: pd.DataFrame  # with alert cleared, suppressed_by and suppression_reason set
    suppressed: dict[str, int]  # active rule id -> alerts it silenced (0 included)
    expired: list[str]  # rules past their expiry, which no longer apply
    warnings: list[str]  # rules that read a column the scores lack, and so match nothing


def utc_now() -> pd.Timestamp:
    return pd.Timestamp.now(tz="UTC").floor("s")


def load_rules(path: Path) -> RuleSet:
    """Read and validate a rules file; a ConfigError names the file, the rule and the problem."""
    try:
        data = tomllib.loads(Path(path).read_text())
    except FileNotFoundError as exc:
        raise ConfigError(f"{path}: no such rules file") from exc
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"{path}: {exc}") from exc
    return RuleSet(Path(path), parse_rules(data, str(path)))


def parse_rules(data: Mapping[str, Any], where: str) -> tuple[Rule, ...]:
    unknown = set(data) - {"rule"}
    if unknown:
        raise ConfigError(f"{where}: unknown top-level key {_suggest(min(unknown), ['rule'])}")
    entries = data.get("rule", [])
    if not isinstance(entries, list):
        raise ConfigError(f"{where}: 'rule' must be an array of tables ([[rule]])")
    rules, seen = [], set()
    for n, entry in enumerate(entries, 1):
        rule = _parse_rule(entry, f"{where}: rule {n}")
        if rule.id in seen:
            raise ConfigError(f"{where}: rule {n}: id {rule.id!r} is used twice")
        seen.add(rule.id)
        rules.append(rule)
    return tuple(rules)


def apply_rules(scores: pd.DataFrame, rules: RuleSet, now: pd.Timestamp) -> Outcome:
    """Silence the alerts that active rules match; the input is not changed."""
    out = scores.copy()
    alert = out[c.ALERT].fillna(False).astype(bool).to_numpy()
    by = np.full(len(out), None, dtype=object)
    reason = np.full(len(out), None, dtype=object)
    suppressed, expired, warnings = {}, [], []
    for rule in rules.rules:
        if rule.expired(now):
            expired.append(rule.id)
            log.warning(
                "%s: suppression rule %r expired at %s and no longer applies",
                rules.path,
                rule.id,
                rule.expires,
            )
            continue
        missing = [col for col in rule.columns() if col not in out]
        if missing:
            warnings.append(
                f"{rules.path}: rule {rule.id!r} reads {', '.join(missing)}, which the scores "
                "lack: it matches nothing"
            )
            suppressed[rule.id] = 0
            continue
        hit = alert & (by == None) & _matches(rule, out)  # noqa: E711 (elementwise)
        by[hit], reason[hit] = rule.id, rule.reason
        suppressed[rule.id] = int(hit.sum())
    for warning in warnings:
        log.warning("%s", warning)
    out[c.ALERT] = alert & (by == None)  # noqa: E711
    out[c.SUPPRESSED_BY] = pd.array(by, dtype="string")
    out[c.SUPPRESSION_REASON] = pd.array(reason, dtype="string")
    return Outcome(out, suppressed, expired, warnings)


def describe(rule: Rule, now: pd.Timestamp) -> dict[str, Any]:
    """A rule as one flat row for listing: state, dates as text, criteria in words."""
    criteria = [f"{key} in {', '.join(sorted(values))}" for key, values in rule.match.items()]
    return {
        "id": rule.id,
        "state": "expired" if rule.expired(now) else "active",
        "created": rule.created.isoformat() if rule.created is not None else None,
        "expires": rule.expires.isoformat() if rule.expires is not None else None,
        "author": rule.author,
        "matches": "; ".join(criteria + [cond.text for cond in rule.conditions]),
        "reason": rule.reason,
    }


def values_of(cell: Any) -> list[str]:
    """The values one evidence cell holds: a scalar, a list (of values, or of mappings whose first
    field is the value), a {value: count} mapping, or the JSON text of any of these."""
    if isinstance(cell, str):
        text = cell.strip()
        if text[:1] in "[{":
            try:
                return values_of(json.loads(text))
            except ValueError:
                pass
        return [text] if text else []
    if isinstance(cell, Mapping):
        return [str(k) for k in cell]
    if isinstance(cell, Iterable):
        return [
            str(next(iter(item.values()))) if isinstance(item, Mapping) and item else str(item)
            for item in cell
        ]
    return [] if cell is None or pd.isna(cell) else [str(cell)]


def add_rule(path: Path, entry: Mapping[str, Any], author: str, now: pd.Timestamp) -> Rule:
    """Append a validated rule to the file (created when missing) and log the change."""
    entry = _plain({**entry, "author": author, "created": now})
    rule = _parse_rule(entry, f"{path}: new rule")
    with _edit(path, author, now) as change:
        if rule.id in {r.id for r in change.rules}:
            raise ConfigError(f"{path}: a rule {rule.id!r} exists already")
        table = _rule_table(rule)
        change.document.setdefault("rule", tomlkit.aot()).append(table)
        change.record = {
            "action": "add",
            "rule": rule.id,
            "reason": rule.reason,
            "body": table.unwrap(),
        }
    return rule


def expire_rule(path: Path, rule_id: str, reason: str, author: str, now: pd.Timestamp) -> Rule:
    """Set a rule's expiry to now (the rule stays in the file, as history) and log the change."""
    if not reason.strip():
        raise ConfigError("give the reason for expiring the rule")
    with _edit(path, author, now) as change:
        ids = [r.id for r in change.rules]
        if rule_id not in ids:
            raise ConfigError(f"{path}: no rule {_suggest(rule_id, ids)}")
        rule = change.rules[ids.index(rule_id)]
        if rule.expired(now):
            raise ConfigError(f"{path}: rule {rule_id!r} expired already at {rule.expires}")
        change.document["rule"][ids.index(rule_id)]["expires"] = now.to_pydatetime()
        change.record = {"action": "expire", "rule": rule_id, "reason": reason.strip()}
    return rule


def audit_path(path: Path) -> Path:
    """``rules.toml`` -> ``rules.audit.jsonl``, the append-only log of its changes."""
    return Path(path).with_suffix(".audit.jsonl")


def audit_status(path: Path) -> tuple[list[dict[str, Any]], str | None]:
    """The audit log's entries, and a problem when the log's hash chain is broken or the rules
    file changed since the last logged change (edited by hand, outside `gpuwatch suppress`)."""
    log_path = audit_path(path)
    if not log_path.exists():
        return [], None
    entries: list[dict[str, Any]] = []
    previous = ""
    for n, line in enumerate(log_path.read_text().splitlines(), 1):
        try:
            entry = json.loads(line)
        except ValueError:
            return entries, f"{log_path}: line {n} is not JSON"
        if entry.get("prev_sha256") != previous:
            return entries, f"{log_path}: line {n} does not follow line {n - 1} (log edited)"
        previous = _sha256(line.encode())
        entries.append(entry)
    if entries and Path(path).exists() and entries[-1]["rules_sha256"] != _file_sha256(path):
        last = entries[-1]
        return entries, (
            f"{path} changed after the last audited change ({last['at']} by {last['author']}): "
            "edited outside `gpuwatch suppress`"
        )
    return entries, None


def _parse_rule(entry: Any, where: str) -> Rule:
    if not isinstance(entry, Mapping):
        raise ConfigError(f"{where}: a rule is a table of keys")
    if isinstance(entry.get("id"), str):
        where = f"{where} ({entry['id']})"
    for key in entry:
        if key not in RULE_KEYS:
            raise ConfigError(f"{where}: unknown key {_suggest(key, RULE_KEYS)}")
    for key in REQUIRED_KEYS:
        if not isinstance(entry.get(key), str) or not entry[key].strip():
            raise ConfigError(f"{where}: {key!r} is required (a non-empty string)")
    rule_id = entry["id"]
    if not ID_PATTERN.fullmatch(rule_id):
        raise ConfigError(
            f"{where}: id must be lower-case letters, digits, '.', '_' or '-' (at most 63)"
        )
    match = {key: _values(entry[key], key, where) for key in MATCHERS if key in entry}
    conditions = tuple(_condition(text, where) for text in _strings(entry, "conditions", where))
    if not match and not conditions:
        raise ConfigError(
            f"{where}: matches every session; give {', '.join(MATCHERS)} or conditions"
        )
    return Rule(
        rule_id,
        entry["reason"].strip(),
        entry["author"].strip(),
        _time(entry.get("created"), "created", where),
        _time(entry.get("expires"), "expires", where),
        match,
        conditions,
    )


def _values(raw: Any, key: str, where: str) -> frozenset[str]:
    items = raw if isinstance(raw, list) else [raw]
    if not items:
        raise ConfigError(f"{where}: {key!r} is an empty list")
    values = set()
    for item in items:
        if key == "asn":
            text = str(item).upper().removeprefix("AS")
            if isinstance(item, bool) or not text.isdigit():
                raise ConfigError(f"{where}: asn {item!r} is not an AS number (e.g. 13335)")
            values.add(str(int(text)))
        elif not isinstance(item, str) or not item.strip():
            raise ConfigError(f"{where}: {key} {item!r} is not a non-empty string")
        elif key == "country":
            if not re.fullmatch(r"[A-Za-z]{2}", item.strip()):
                raise ConfigError(f"{where}: country {item!r} is not an ISO 3166-1 alpha-2 code")
            values.add(item.strip().upper())
        else:
            values.add(item.strip())
    return frozenset(values)


def _strings(entry: Mapping[str, Any], key: str, where: str) -> list[str]:
    raw = entry.get(key, [])
    items = raw if isinstance(raw, list) else [raw]
    if not all(isinstance(item, str) for item in items):
        raise ConfigError(f"{where}: {key!r} must be a list of strings")
    return items


def _condition(text: str, where: str) -> Condition:
    parsed = CONDITION.fullmatch(text)
    if not parsed:
        raise ConfigError(
            f"{where}: condition {text!r} is not 'COLUMN OP VALUE' "
            f"(OP one of {' '.join(OPERATORS)}), e.g. 'n_gpus <= 8'"
        )
    column, op, raw = parsed.groups()
    if column not in CONDITION_COLUMNS:
        raise ConfigError(
            f"{where}: condition {text!r}: unknown column {_suggest(column, CONDITION_COLUMNS)}"
        )
    value: float | str | bool
    if raw.lower() in ("true", "false"):
        value = raw.lower() == "true"
    elif raw[:1] in "'\"" and raw[-1:] == raw[:1] and len(raw) > 1:
        value = raw[1:-1]
        if op not in ("==", "!="):
            raise ConfigError(f"{where}: condition {text!r}: text compares with == or != only")
    else:
        try:
            value = float(raw)
        except ValueError:
            raise ConfigError(
                f"{where}: condition {text!r}: {raw!r} is not a number, true/false or 'quoted text'"
            ) from None
    return Condition(column, op, value, text.strip())


def _time(raw: Any, key: str, where: str) -> pd.Timestamp | None:
    """A TOML date (00:00 UTC of that day), datetime (naive = UTC) or ISO string."""
    if raw is None:
        return None
    try:
        if isinstance(raw, dt.date | dt.datetime):
            stamp = pd.Timestamp(raw)
        elif isinstance(raw, str) and raw.strip():
            stamp = pd.Timestamp(raw.strip())
        else:
            raise ValueError
        return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")
    except (ValueError, TypeError):
        raise ConfigError(
            f"{where}: {key} {raw!r} is not a date (YYYY-MM-DD) or an RFC 3339 time"
        ) from None


def _matches(rule: Rule, scores: pd.DataFrame) -> np.ndarray:
    hit = np.ones(len(scores), dtype=bool)
    for key, wanted in rule.match.items():
        for column in MATCHERS[key]:
            if key in ALL_OF:
                hit &= np.fromiter(
                    (_all_listed(key, cell, wanted) for cell in scores[column]),
                    dtype=bool,
                    count=len(scores),
                )
            else:
                hit &= scores[column].astype("string").isin(wanted).fillna(False).to_numpy(bool)
    for condition in rule.conditions:
        hit &= condition.holds(scores[condition.column])
    return hit


def _all_listed(key: str, cell: Any, wanted: frozenset[str]) -> bool:
    """True when the cell holds at least one value and every one is in `wanted`."""
    have = values_of(cell)
    if key == "country":
        have = [v.upper() for v in have]
    elif key == "asn":
        have = [v.upper().removeprefix("AS").split(".")[0] for v in have]
    return bool(have) and set(have) <= wanted


def _suggest(name: str, valid: Iterable[str]) -> str:
    close = difflib.get_close_matches(name, list(valid), n=1)
    return f"{name!r}" + (f" (did you mean {close[0]!r}?)" if close else "")


@dataclass
class _Change:
    document: tomlkit.TOMLDocument
    rules: tuple[Rule, ...]
    record: dict[str, Any] = field(default_factory=dict)  # what, which rule and why


@contextmanager
def _edit(path: Path, author: str, now: pd.Timestamp) -> Iterator[_Change]:
    """The rules file as an editable document, validated before and after, written atomically,
    then the change appended to the audit log with the file's new hash and the previous log
    line's hash (a chain). An exclusive lock on the log keeps two editors apart."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(audit_path(path), "a+") as audit:
        fcntl.flock(audit, fcntl.LOCK_EX)
        text = path.read_text() if path.exists() else HEADER
        try:
            document = tomlkit.parse(text)
        except tomlkit.exceptions.ParseError as exc:
            raise ConfigError(f"{path}: {exc}") from exc
        change = _Change(document, parse_rules(document.unwrap(), str(path)))
        yield change
        new_text = tomlkit.dumps(change.document)
        parse_rules(tomllib.loads(new_text), str(path))
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(new_text)
        tmp.replace(path)
        audit.seek(0)
        lines = audit.read().splitlines()
        record = {
            "at": now.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "author": author,
            **change.record,
            "rules_sha256": _sha256(new_text.encode()),
            "prev_sha256": _sha256(lines[-1].encode()) if lines else "",
        }
        audit.write(json.dumps(record, sort_keys=True, default=str) + "\n")


def _plain(entry: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in entry.items() if v not in (None, [], ())}


def _rule_table(rule: Rule) -> tomlkit.items.Table:
    """A rule as it is written: normalised values (upper-case countries, AS numbers as integers,
    UTC times), keys in the documented order."""
    table = tomlkit.table()
    table.update({"id": rule.id, "reason": rule.reason, "author": rule.author})
    for key in ("created", "expires"):
        if getattr(rule, key) is not None:
            table[key] = getattr(rule, key).to_pydatetime()
    for key, values in rule.match.items():
        table[key] = sorted(int(v) for v in values) if key == "asn" else sorted(values)
    if rule.conditions:
        table["conditions"] = [cond.text for cond in rule.conditions]
    table.add(tomlkit.nl())
    return table


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _file_sha256(path: Path) -> str:
    return _sha256(Path(path).read_bytes())
