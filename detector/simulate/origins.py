"""Origin families: who drives a tenant, from where, and the access events they leave.

People keep their own working hours (their local zone) whatever address they come from; VPN
users go out through hosting exits in a third country and leak a few events from home.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
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
# Benign look-alikes: US staff working evenings behind cloud egress; multinationals with an
# office in a country of concern; Japanese and Korean tenants egressing through cloud regions.
EVENING, MULTINATIONAL, APAC_CLOUD = "domestic_evening", "multinational", "apac_cloud"
# One restricted crew behind 3-4 accounts (each a tenant) that run one job in step.
SPLIT = "restricted_split"
ORIGINS = (DOMESTIC, ALLIED, EVENING, MULTINATIONAL, APAC_CLOUD, R_DIRECT, R_VPN, RESELLER, SPLIT)
RESTRICTED_ORIGINS = frozenset({R_DIRECT, R_VPN, RESELLER, SPLIT})

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
    """One principal: home addresses, exits they tunnel through and how often, tools, and how
    often they also work in the evening (local 19-24 h)."""

    principal: str
    zone: str
    home_ips: tuple[str, ...]
    exit_ips: tuple[str, ...] = ()
    exit_share: float = 0.0
    user_agents: tuple[str, ...] = ()
    evening: float = 0.0
    activity: float = 1.0  # scales how many events they leave


@dataclass(frozen=True)
class Trip:
    """Person 0 works `days` days from abroad (local hours there, local addresses)."""

    first_day: int
    days: int
    zone: str
    ips: tuple[str, ...]


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
    trip: Trip | None = None
    billing_id: str = ""


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
    pool,
    rng,
    zone: str,
    country: str,
    exits: tuple[str, ...] = (),
    exit_share: float = 0.0,
    evening: float = 0.0,
) -> Person:
    tools = tuple(str(rng.choice(v)) for v in _UA.values())
    return Person(
        f"user-{rng.integers(16**6):06x}",
        zone,
        _ips(pool, rng, RESIDENTIAL, country, int(rng.integers(1, 3))),
        exits,
        exit_share,
        tools,
        evening,
    )


def billing_id(rng: np.random.Generator) -> str:
    """A payment-method fingerprint, as a billing system would keep it."""
    return f"pm-{rng.integers(16**10):010x}"


def make_origin(
    family: str,
    pool: pd.DataFrame,
    rng: np.random.Generator,
    traveller: bool = False,
    crew: Origin | None = None,
) -> Origin:
    """Draw the people and registry answers of one tenant of an origin family. A tenant of a
    split crew (`family` SPLIT) shares the crew's people, exits and sometimes its billing."""
    zones = country_zones()
    n_people = int(rng.integers(1, 4))
    reseller, trip = "", None
    bots: tuple[str, ...] = ()
    if family in (DOMESTIC, EVENING):
        zone = str(rng.choice(US_ZONES))
        evening = family == EVENING
        corp = (
            _ips(pool, rng, HOSTING, "US", 2, one_asn=True) if evening or rng.random() < 0.4 else ()
        )
        share = rng.uniform(0.5, 0.9) if evening else 0.7 if corp else 0.0
        people = [
            _person(pool, rng, zone, "US", corp, share, rng.uniform(0.4, 0.8) if evening else 0.0)
            for _ in range(n_people)
        ]
        if rng.random() < 0.5:
            bots = _ips(pool, rng, HOSTING, "US", 2, one_asn=True)
        declared = billing = "US"
    elif family in (ALLIED, APAC_CLOUD):
        country = str(rng.choice(ALLIED_COUNTRIES if family == ALLIED else ("JP", "KR")))
        zone = zones[country]
        exits: tuple[str, ...] = ()
        if family == APAC_CLOUD:
            exits = _ips(pool, rng, HOSTING, str(rng.choice(["SG", "JP"])), 3)
        people = [
            _person(pool, rng, zone, country, exits, rng.uniform(0.6, 0.95) if exits else 0.0)
            for _ in range(n_people)
        ]
        declared = billing = country
    elif family == MULTINATIONAL:
        declared = billing = str(rng.choice(["US", "DE", "JP", "GB"]))
        zone = str(rng.choice(US_ZONES)) if declared == "US" else zones[declared]
        home = int(rng.integers(2, 6))
        people = [_person(pool, rng, zone, declared) for _ in range(home)]
        office = str(rng.choice(["CN", "HK"]))  # a minority of the principals
        people += [
            replace(_person(pool, rng, zones[office], office), activity=0.5)
            for _ in range(int(rng.integers(1, max(2, (home + 1) // 2))))
        ]
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
    elif family == SPLIT:
        if crew is None:  # the crew itself: VPN users in a country of concern
            country = str(rng.choice(["CN", "RU"], p=[0.7, 0.3]))
            zone = zones[country]
            exits = _ips(pool, rng, HOSTING, str(rng.choice(VPN_EXIT_COUNTRIES)), 4)
            leak = rng.uniform(0.02, 0.06)
            people = [_person(pool, rng, zone, country, exits, 1 - leak) for _ in range(3)]
            declared = billing = "US"
        else:  # one account: some of the crew, its own registry answers
            zone = crew.zone
            k = int(rng.integers(1, len(crew.people) + 1))
            people = list(rng.choice(np.array(crew.people, dtype=object), k, replace=False))
            declared = billing = str(rng.choice(["US", "SG", "NL", "GB", "DE"]))
            shared = rng.random() < 0.5 and crew.billing_id
            return Origin(
                family,
                zone,
                declared,
                billing,
                "",
                tuple(people),
                billing_id=crew.billing_id if shared else billing_id(rng),
            )
    else:
        raise ValueError(f"unknown origin family {family!r}")
    if traveller:
        dest = str(rng.choice(["HK", "CN"]))
        days = int(rng.integers(1, 4))
        trip = Trip(
            int(rng.integers(0, 3)), days, zones[dest], _ips(pool, rng, RESIDENTIAL, dest, 2)
        )
    return Origin(
        family,
        zone,
        declared,
        billing,
        reseller,
        tuple(people),
        bots,
        trip,
        billing_id(rng),
    )


def _sessions(
    zone: str,
    evening: float,
    first_day: float,
    last_day: float,
    rng: np.random.Generator,
    activity: float = 1.0,
) -> np.ndarray:
    """Event times of one person working in `zone` on the local days from `first_day` to
    `last_day` (epoch seconds): working-day sessions, and evening ones with p = `evening`."""
    tz = ZoneInfo(zone)
    first = datetime.fromtimestamp(first_day, UTC).astimezone(tz).date()
    rate = activity * rng.uniform(1, 4)
    times = []
    for d in range(-1, int(np.ceil((last_day - first_day) / DAY)) + 1):
        day = first + timedelta(days=d)
        midnight = datetime.combine(day, datetime.min.time(), tz).timestamp()
        weekday = day.weekday() < 5
        if rng.random() <= (0.85 if weekday else 0.15):
            start = midnight + np.clip(rng.normal(9.5, 1.2), 6, 13) * HOUR
            length = rng.uniform(4, 10) * HOUR
            times.append(start + np.sort(rng.uniform(0, length, rng.poisson(rate * length / HOUR))))
        if weekday and rng.random() < evening:
            start = midnight + rng.uniform(19.5, 21.5) * HOUR
            length = rng.uniform(1, 3) * HOUR
            times.append(start + np.sort(rng.uniform(0, length, rng.poisson(rate * length / HOUR))))
    return np.concatenate(times) if times else np.empty(0)


def _frame(
    person: Person,
    t: np.ndarray,
    events: np.ndarray,
    window: Window,
    rng: np.random.Generator,
    ips: tuple[str, ...] = (),
) -> pd.DataFrame:
    """Pick source address, user agent and byte counts for one person's events (`ips`, when
    given, replaces their usual addresses: a trip)."""
    n = len(t)
    if ips:
        ip = rng.choice(np.array(ips), n)
    else:
        via_exit = rng.random(n) < person.exit_share if person.exit_ips else np.zeros(n, bool)
        ip = np.where(
            via_exit,
            rng.choice(np.array(person.exit_ips or ("",)), n),
            rng.choice(np.array(person.home_ips), n),
        )
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


def _person_events(
    person: Person, trip: Trip | None, window: Window, rng: np.random.Generator
) -> pd.DataFrame:
    """A person's own events over the window, the days of a trip worked from abroad."""
    t = _sessions(person.zone, person.evening, window.t0, window.t1, rng, person.activity)
    no_ips: tuple[str, ...] = ()
    parts = [(t, no_ips)]
    if trip is not None:
        lo = window.t0 + trip.first_day * DAY
        hi = lo + trip.days * DAY
        away = _sessions(trip.zone, 0.0, lo, hi, rng)
        parts = [(t[(t < lo) | (t >= hi)], no_ips), (away[(away >= lo) & (away < hi)], trip.ips)]
    frames = []
    for times, ips in parts:
        times = np.sort(times)
        events = rng.choice(EVENTS, len(times), p=_EVENT_P)
        if len(times):
            events[0] = "login"
            events[1:][np.diff(times) > 2 * HOUR] = "login"
        frames.append(_frame(person, times, events, window, rng, ips))
    return pd.concat(frames, ignore_index=True)


def access_events(
    tenant_id: str, origin: Origin, jobs: list[Job], window: Window, rng: np.random.Generator
) -> pd.DataFrame:
    """All access events of one tenant inside the window (timestamps in epoch seconds)."""
    parts = [
        _person_events(p, origin.trip if i == 0 else None, window, rng)
        for i, p in enumerate(origin.people)
    ]
    drivers = [p for p in origin.people if p.zone == origin.zone] or list(origin.people)
    for job in jobs:  # launches, data uploads before training, checkpoint downloads after
        person = drivers[int(rng.integers(len(drivers)))]
        t = [job.start - rng.uniform(30, 600)]
        ev = ["api" if job.job_id else "ssh"]
        if job.workload in TRAINING:
            t += [job.start - rng.uniform(0.5, 6) * HOUR, job.end + rng.uniform(0.1, 3) * HOUR]
            ev += ["transfer", "transfer"]
        frame = _frame(person, np.array(t), np.array(ev), window, rng)
        if job.workload in TRAINING:
            frame.loc[1, ["bytes_in", "bytes_out"]] = [rng.uniform(5e10, 2e12), 1e6]
            frame.loc[2, ["bytes_in", "bytes_out"]] = [1e6, rng.uniform(1e10, 5e11)]
        parts.append(frame)
    if origin.bots:
        n = rng.poisson(rng.uniform(0.5, 3) * window.days * 24)
        parts.append(
            pd.DataFrame(
                {
                    "timestamp": np.sort(rng.uniform(window.t0, window.t1, n)),
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
