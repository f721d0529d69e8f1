"""Settings: the bundled default TOML, then a user TOML, then GPUWATCH_* variables, then flags.

The result is one frozen, validated object passed explicitly to every stage. The jurisdiction
policy is part of it: countries of concern, hosting ASNs, working hours.
"""

from __future__ import annotations

import csv
import difflib
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from .errors import ConfigError

ENV_PREFIX = "GPUWATCH_"
CONFIG_ENV = ENV_PREFIX + "CONFIG"  # the settings file, like --config
SALT_ENV = ENV_PREFIX + "PSEUDONYM_SALT"  # secret salt of --pseudonymize-tenants
LOG_DIR_ENV = ENV_PREFIX + "LOG_DIR"  # where an internal error's traceback is written
# Every GPUWATCH_* variable that is not a setting (GPUWATCH_<SECTION>_<KEY>); any other
# GPUWATCH_* name is a mistake and is refused with the nearest valid name.
ENV_NAMES = frozenset({CONFIG_ENV, SALT_ENV, LOG_DIR_ENV})
MAX_INPUT_MIB = 2048  # default of --max-input-mib: one input file, after decompression


@dataclass(frozen=True)
class Jurisdiction:
    countries_of_concern: frozenset[str]
    timezones: Mapping[str, str]
    working_hours: tuple[int, int]

    def zone_of(self, country: str) -> str | None:
        """IANA zone for a country: the policy's choice, else the tz database's."""
        return self.timezones.get(country) or country_zones().get(country)


@dataclass(frozen=True)
class Hosting:
    asns: frozenset[int]
    org_keywords: tuple[str, ...]


@dataclass(frozen=True)
class Sessions:
    gap_seconds: float
    active_util_pct: float
    min_active_samples: int
    grid_seconds: int
    access_lookback_seconds: float


@dataclass(frozen=True)
class Features:
    origin_history_days: float
    link_max_tenants: int
    in_step_seconds: float


@dataclass(frozen=True)
class Scoring:
    alert_risk: float
    alert_origin_evidence: float
    alert_training_evidence: float
    alert_flop: float
    alert_gpu_hours: float


@dataclass(frozen=True)
class Accounting:
    window_days: float
    thresholds_flop: tuple[float, ...]


@dataclass(frozen=True)
class Settings:
    jurisdiction: Jurisdiction
    hosting: Hosting
    sessions: Sessions
    features: Features
    scoring: Scoring
    accounting: Accounting
    source: tuple[str, ...] = field(default=(), compare=False)

    def override(self, section: str, **values: Any) -> Settings:
        """A copy with some keys of one section replaced (used for command-line flags)."""
        values = {k: v for k, v in values.items() if v is not None}
        if not values:
            return self
        current = getattr(self, section)
        return replace(self, **{section: replace(current, **values)})


@cache
def country_zones() -> dict[str, str]:
    """One representative IANA zone per ISO country (bundled, from the tz database)."""
    text = resources.files("detector.data").joinpath("country_timezones.csv").read_text()
    rows = csv.reader(line for line in text.splitlines() if not line.startswith("#"))
    next(rows)
    return {country: zone for country, zone in rows}


def default_config_path() -> Path:
    return Path(str(resources.files("detector.data").joinpath("policy.toml")))


def load_settings(
    path: str | os.PathLike | None = None, env: Mapping[str, str] | None = None
) -> Settings:
    """Read the default TOML, merge the user's file and environment, validate."""
    env = os.environ if env is None else env
    path = path or env.get(CONFIG_ENV)
    raw = _read_toml(default_config_path())
    sources = ["default"]
    if path:
        _merge(raw, _read_toml(Path(path)), str(path))
        sources.append(str(path))
    _merge_env(raw, env)
    return _build(raw, tuple(sources))


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with open(path, "rb") as fh:
            return tomllib.load(fh)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read settings file ({exc.strerror})") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML ({exc})") from exc


def _merge(base: dict[str, Any], extra: dict[str, Any], origin: str) -> None:
    for section, values in extra.items():
        if section not in base:
            raise ConfigError(f"{origin}: unknown section [{section}]{_nearest(section, base)}")
        if not isinstance(values, dict):
            raise ConfigError(f"{origin}: [{section}] must be a table of settings")
        for key in values:
            if key not in base[section]:
                raise ConfigError(
                    f"{origin}: unknown key {key!r} in [{section}]{_nearest(key, base[section])}"
                )
        base[section].update(values)


def _nearest(name: str, valid: Any) -> str:
    """'; did you mean X?' with the closest valid name, else the list of valid names."""
    names = sorted(valid)
    close = difflib.get_close_matches(name, names, n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else f"; expected one of {', '.join(names)}"


def _merge_env(raw: dict[str, Any], env: Mapping[str, str]) -> None:
    """GPUWATCH_SECTION_KEY=value overrides a scalar setting, e.g. GPUWATCH_SESSIONS_GAP_SECONDS;
    any other GPUWATCH_* name than these and ENV_NAMES is refused with the nearest valid one."""
    settings = {f"{ENV_PREFIX}{section}_{key}".upper() for section in raw for key in raw[section]}
    for name in sorted(env):
        if name.upper().startswith(ENV_PREFIX) and name not in settings | ENV_NAMES:
            raise ConfigError(
                f"unknown environment variable {name}{_nearest(name, settings | ENV_NAMES)}"
            )
    for section, values in raw.items():
        for key, current in values.items():
            name = f"{ENV_PREFIX}{section}_{key}".upper()
            if name not in env:
                continue
            text = env[name]
            try:
                if isinstance(current, list):
                    values[key] = [
                        type(current[0])(v.strip()) if current else v.strip()
                        for v in text.split(",")
                        if v.strip()
                    ]
                else:
                    values[key] = type(current)(text)
            except ValueError as exc:
                raise ConfigError(f"{name}={text!r}: expected {type(current).__name__}") from exc


def _build(raw: dict[str, Any], sources: tuple[str, ...]) -> Settings:
    try:
        j, h = raw["jurisdiction"], raw["hosting"]
        countries = frozenset(c.upper() for c in j["countries_of_concern"])
        bad = [c for c in countries if len(c) != 2 or not c.isalpha()]
        if bad:
            raise ConfigError(f"countries_of_concern: {bad} are not ISO 3166-1 alpha-2 codes")
        start, end = (int(x) for x in j["working_hours"])
        if not 0 <= start < end <= 24:
            raise ConfigError(
                f"working_hours: expected [start, end) within 0-24, got {[start, end]}"
            )
        settings = Settings(
            jurisdiction=Jurisdiction(countries, dict(j["timezones"]), (start, end)),
            hosting=Hosting(
                frozenset(int(a) for a in h["asns"]), tuple(k.lower() for k in h["org_keywords"])
            ),
            sessions=Sessions(
                **{f.name: _cast(f.type, raw["sessions"][f.name]) for f in fields(Sessions)}
            ),
            features=Features(
                **{f.name: _cast(f.type, raw["features"][f.name]) for f in fields(Features)}
            ),
            scoring=Scoring(
                **{f.name: _cast(f.type, raw["scoring"][f.name]) for f in fields(Scoring)}
            ),
            accounting=Accounting(
                float(raw["accounting"]["window_days"]),
                tuple(sorted(float(x) for x in raw["accounting"]["thresholds_flop"])),
            ),
            source=sources,
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise ConfigError(
            f"settings from {', '.join(sources)}: invalid or missing value ({exc})"
        ) from exc
    for country in settings.jurisdiction.countries_of_concern:
        zone = settings.jurisdiction.zone_of(country)
        try:
            ZoneInfo(zone or "")
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ConfigError(f"timezones: no valid zone for {country} ({zone!r})") from exc
    if settings.sessions.gap_seconds <= 0 or settings.sessions.grid_seconds <= 0:
        raise ConfigError("sessions: gap_seconds and grid_seconds must be positive")
    scoring = settings.scoring
    if not 0 <= scoring.alert_risk <= 100:
        raise ConfigError("scoring.alert_risk must be within 0-100")
    if not (0 < scoring.alert_origin_evidence < 1 and 0 < scoring.alert_training_evidence < 1):
        raise ConfigError(
            "scoring: alert_origin_evidence and alert_training_evidence within (0, 1)"
        )
    if not min(scoring.alert_flop, scoring.alert_gpu_hours) > 0:
        raise ConfigError("scoring: alert_flop and alert_gpu_hours must be positive")
    if not settings.features.origin_history_days > 0:
        raise ConfigError("features.origin_history_days must be positive")
    return settings


def _cast(kind: Any, value: Any) -> Any:
    return {"float": float, "int": int}.get(str(kind), lambda v: v)(value)
