"""Origin families: who drives a tenant, from where, and the access events they leave.

People keep their own working hours (their local zone) whatever address they come from; VPN
users go out through hosting exits in a third country and leak a few events from home.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd

from ..config import country_zones
from .ips import HOSTING, RESIDENTIAL
from .jobs import DAY, HOUR, Window
from .workloads import TRAINING, Job

DOMESTIC, ALLIED, R_DIRECT, R_VPN, RESELLER = (
    "domestic",
    "allied_foreign",
    "restricted_direct",
    "restricted_vpn",
    "reseller",
)
ORIGINS = (DOMESTIC, ALLIED, R_DIRECT, R_VPN, RESELLER)
RESTRICTED_ORIGINS = frozenset({R_DIRECT, R_VPN, RESELLER})

ALLIED_COUNTRIES = ("DE", "JP", "KR", "GB", "IN", "SG", "FR", "NL")
US_ZONES = ("America/New_York", "America/Chicago", "America/Los_Angeles")
VPN_EXIT_COUNTRIES = ("NL", "DE", "SG", "US", "JP")
RESELLERS = {
    "SG": ("Lion Gate Compute Pte. Ltd.", "Harbourline Cloud Pte. Ltd."),
    "AE": ("Desert Peak Digital FZE", "Gulfstream Compute FZ-LLC"),
}

EVENTS = ("login", "ssh", "api", "console", "transfer")
_EVENT_P = (0.0, 0.4, 0.35, 0.15, 0.10)
_UA = {
    "ssh": (
        "OpenSSH_9.6p1 Ubuntu-3ubuntu13.5",
        "OpenSSH_8.9p1 Ubuntu-3ubuntu0.10",
        "OpenSSH_for_Windows_9.5",
        "OpenSSH_9.8",
    ),
    "browser": (
        "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 "
        "(KHTML, like Gecko) Chrome/129.0.0.0 Safari/537.36",
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 "
        "(KHTML, like Gecko) Chrome/129.0.0.0 Safari/537.36 Edg/129.0.0.0",
        "Mozilla/5.0 (X11; Linux x86_64; rv:131.0) Gecko/20100101 Firefox/131.0",
    ),
    "api": (
        "gpucloud-cli/2.4.1 Python/3.11.9 Linux/6.8.0",
        "kubectl/v1.30.4 (linux/amd64)",
        "python-requests/2.32.3",
        "gpucloud-cli/2.3.0 Python/3.10.12 Darwin/23.6.0",
    ),
    "transfer": ("rclone/v1.68.1", "aws-cli/2.17.56 Python/3.12.6", "s5cmd/v2.2.2"),
}
_BOT_UA = (
    "Terraform/1.9.5 terraform-provider-gpucloud/1.3.0",
    "python-requests/2.32.3",
    "argocd/v2.12.4",
)


@dataclass(frozen=True)
class Person:
    """One principal: home addresses, exits they tunnel through and how often, tools."""

    principal: str
    zone: str
    home_ips: tuple[str, ...]
    exit_ips: tuple[str, ...] = ()
    exit_share: float = 0.0
    user_agents: tuple[str, ...] = ()


@dataclass(frozen=True)
class Origin:
    """Where a tenant's drivers are, what the tenant declared, and its automation."""

    family: str
    zone: str
    declared_country: str
    billing_country: str
    reseller: str
    people: tuple[Person, ...]
    bots: tuple[str, ...] = ()
    travel: tuple[int, str] | None = None  # (day index, address used that day by person 0)


def _ips(
    pool: pd.DataFrame,
    rng: np.random.Generator,
    kind: str,
    country: str,
    n: int,
    one_asn: bool = False,
) -> tuple[str, ...]:
    rows = pool[(pool["kind"] == kind) & (pool["country"] == country)]
    if rows.empty:
        raise LookupError(f"IP pool has no {kind} address in {country}")
    if one_asn:
        rows = rows[rows["asn"] == rng.choice(np.unique(rows["asn"]))]
    return tuple(rng.choice(rows["ip"].to_numpy(), size=min(n, len(rows)), replace=False))


def _person(
    pool, rng, zone: str, country: str, exits: tuple[str, ...] = (), exit_share: float = 0.0
) -> Person:
    tools = tuple(str(rng.choice(v)) for v in _UA.values())
    return Person(
        f"user-{rng.integers(16**6):06x}",
        zone,
        _ips(pool, rng, RESIDENTIAL, country, int(rng.integers(1, 3))),
        exits,
        exit_share,
        tools,
    )


def make_origin(
    family: str, pool: pd.DataFrame, rng: np.random.Generator, traveller: bool = False
) -> Origin:
    """Draw the people and registry answers of one tenant of an origin family."""
    zones = country_zones()
    n_people = int(rng.integers(1, 4))
    reseller, bots, travel = "", (), None
    if family == DOMESTIC:
        zone = str(rng.choice(US_ZONES))
        corp = _ips(pool, rng, HOSTING, "US", 2, one_asn=True) if rng.random() < 0.4 else ()
        people = [
            _person(pool, rng, zone, "US", corp, 0.7 if corp else 0.0) for _ in range(n_people)
        ]
        if rng.random() < 0.5:
            bots = _ips(pool, rng, HOSTING, "US", 2, one_asn=True)
        declared = billing = "US"
    elif family == ALLIED:
        country = str(rng.choice(ALLIED_COUNTRIES))
        zone = zones[country]
        people = [_person(pool, rng, zone, country) for _ in range(n_people)]
        declared = billing = country
        if traveller:
            travel = (int(rng.integers(0, 2)), _ips(pool, rng, RESIDENTIAL, "HK", 1)[0])
    elif family in (R_DIRECT, R_VPN):
        country = str(
            rng.choice(
                ["CN", "RU", "IR"] if family == R_DIRECT else ["CN", "RU"],
                p=[0.6, 0.3, 0.1] if family == R_DIRECT else [0.6, 0.4],
            )
        )
        zone = zones[country]
        if family == R_DIRECT:
            people = [_person(pool, rng, zone, country) for _ in range(n_people)]
            declared = str(rng.choice([country, "HK", "SG", "US"], p=[0.4, 0.2, 0.2, 0.2]))
        else:
            exit_country = str(rng.choice(VPN_EXIT_COUNTRIES))
            exits = _ips(pool, rng, HOSTING, exit_country, int(rng.integers(2, 5)))
            leak = rng.uniform(0.02, 0.06)
            people = [_person(pool, rng, zone, country, exits, 1 - leak) for _ in range(n_people)]
            declared = str(rng.choice([exit_country, "US", "SG"]))
        billing = declared
    elif family == RESELLER:
        declared = str(rng.choice(list(RESELLERS)))
        reseller = str(rng.choice(RESELLERS[declared]))
        zone = zones["CN"]
        exits = _ips(pool, rng, HOSTING, str(rng.choice(["SG", "JP"])), 3)
        people = [_person(pool, rng, zones[declared], declared)]
        people += [
            _person(pool, rng, zone, "CN", exits, float(rng.choice([0.0, 0.95])))
            for _ in range(n_people + 1)
        ]
        billing = declared
    else:
        raise ValueError(f"unknown origin family {family!r}")
    return Origin(family, zone, declared, billing, reseller, tuple(people), bots, travel)


def _sessions(person: Person, window: Window, rng: np.random.Generator) -> np.ndarray:
    """Event times of one person: working-day sessions in their own zone."""
    tz = ZoneInfo(person.zone)
    first = datetime.fromtimestamp(window.t0, UTC).astimezone(tz).date()
    rate = rng.uniform(1, 4)
    times = []
    for d in range(-1, int(np.ceil(window.days)) + 1):
        day = first + timedelta(days=d)
        if rng.random() > (0.85 if day.weekday() < 5 else 0.15):
            continue
        start = (
            datetime.combine(day, datetime.min.time(), tz).timestamp()
            + np.clip(rng.normal(9.5, 1.2), 6, 13) * HOUR
        )
        length = rng.uniform(4, 10) * HOUR
        times.append(start + np.sort(rng.uniform(0, length, rng.poisson(rate * length / HOUR))))
    return np.concatenate(times) if times else np.empty(0)


def _frame(
    person: Person,
    t: np.ndarray,
    events: np.ndarray,
    origin: Origin,
    window: Window,
    rng: np.random.Generator,
) -> pd.DataFrame:
    """Pick source address, user agent and byte counts for one person's events."""
    n = len(t)
    via_exit = rng.random(n) < person.exit_share if person.exit_ips else np.zeros(n, bool)
    ip = np.where(
        via_exit,
        rng.choice(np.array(person.exit_ips or ("",)), n),
        rng.choice(np.array(person.home_ips), n),
    )
    if origin.travel and person is origin.people[0]:
        day0 = window.t0 + origin.travel[0] * DAY
        ip = np.where((t >= day0) & (t < day0 + DAY), origin.travel[1], ip)
    ua_kind = np.select(
        [events == "ssh", (events == "console") | (events == "login"), events == "api"],
        [0, 1, 2],
        3,
    )
    ua = np.array(person.user_agents)[ua_kind]
    scale = np.select(
        [events == "transfer", events == "api", events == "ssh"], [1e9, 3e3, 3e4], 2e5
    )
    bytes_in = np.round(scale * rng.lognormal(0, 1, n))
    bytes_out = np.round(scale * rng.lognormal(1, 1, n))
    return pd.DataFrame(
        {
            "timestamp": t,
            "src_ip": ip,
            "event": events,
            "principal": person.principal,
            "user_agent": ua,
            "bytes_in": bytes_in,
            "bytes_out": bytes_out,
        }
    )


def access_events(
    tenant_id: str, origin: Origin, jobs: list[Job], window: Window, rng: np.random.Generator
) -> pd.DataFrame:
    """All access events of one tenant inside the window (timestamps in epoch seconds)."""
    parts = []
    for person in origin.people:
        t = _sessions(person, window, rng)
        events = rng.choice(EVENTS, len(t), p=_EVENT_P)
        if len(t):
            events[0] = "login"
            events[1:][np.diff(t) > 2 * HOUR] = "login"
        parts.append(_frame(person, t, events, origin, window, rng))
    drivers = [p for p in origin.people if p.zone == origin.zone] or list(origin.people)
    for job in jobs:  # launches, data uploads before training, checkpoint downloads after
        person = drivers[int(rng.integers(len(drivers)))]
        t = [job.start - rng.uniform(30, 600)]
        ev = ["api" if job.job_id else "ssh"]
        if job.workload in TRAINING:
            t += [job.start - rng.uniform(0.5, 6) * HOUR, job.end + rng.uniform(0.1, 3) * HOUR]
            ev += ["transfer", "transfer"]
        frame = _frame(person, np.array(t), np.array(ev), origin, window, rng)
        if job.workload in TRAINING:
            frame.loc[1, ["bytes_in", "bytes_out"]] = [rng.uniform(5e10, 2e12), 1e6]
            frame.loc[2, ["bytes_in", "bytes_out"]] = [1e6, rng.uniform(1e10, 5e11)]
        parts.append(frame)
    if origin.bots:
        n = rng.poisson(rng.uniform(0.5, 3) * window.days * 24)
        t = np.sort(rng.uniform(window.t0, window.t1, n))
        parts.append(
            pd.DataFrame(
                {
                    "timestamp": t,
                    "src_ip": rng.choice(np.array(origin.bots), n),
                    "event": "api",
                    "principal": "svc-deploy",
                    "user_agent": str(rng.choice(_BOT_UA)),
                    "bytes_in": np.round(2e3 * rng.lognormal(0, 0.5, n)),
                    "bytes_out": np.round(8e3 * rng.lognormal(0, 0.5, n)),
                }
            )
        )
    out = pd.concat(parts, ignore_index=True)
    out = out[(out["timestamp"] >= window.t0) & (out["timestamp"] < window.t1)]
    out.insert(1, "tenant_id", tenant_id)
    return out
