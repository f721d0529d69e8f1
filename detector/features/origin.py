"""Origin evidence: are the people driving a tenant (or a linked entity) in a country of concern?

Evidence is per tenant, over its access history: the `origin_history_days` before the end of
the scoring window, whatever the window's length, so scoring a sub-window sees the same
people as scoring the whole period. Each tell below is graded in 0-1 and weighted in log-odds;
tells that agree add up, and a single weak one (an evening login, cloud egress, a trip abroad)
stays far below the alert. Behavioural tells are shrunk while the history is short (a day of
events is not yet a pattern). `gpuwatch features` prints the table; docs/DESIGN-NOTES.md says
what each tell bought, measured.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd

from .. import columns as c
from ..config import Settings, country_zones
from ..timeutil import epoch_s
from .entities import source_prefix

PRIOR = -4.0  # log-odds of a restricted origin before looking: sigmoid(-4) = 0.018
HISTORY_HALF_DAYS = 1.0  # days of history at which the shares of direct events count half
DIRECT_EVENTS_FULL = 3  # direct events from a country of concern at which `direct` counts fully
CLOCK_FULL = 0.5  # log-likelihood ratio per event at which the clock counts fully
CONCERN_PERSON_SHARE = 0.8  # of a person's own-network events from a country of concern
# `direct` grows over this range of the concern people's share of events. A company's minority
# office abroad stays below it; a reseller's account gathers unrelated end customers (its
# admin's own logins among them), so any concern person there is a customer in a country of
# concern.
DIRECT_RAMP = (0.3, 0.7)
RESELLER_DIRECT_RAMP = (0.0, 0.02)
_DAY, _BINS = 86400, 336  # half-hours in a week
_MIN_CLOCK_GAP = 6  # half-hours between the fitted and the declared zone for the clock to count
FACTS_SHOWN = 5  # values named in each origin fact column; the rest are counted as "other"
UNKNOWN = "unknown"  # counted for events without the value (enrichment found none)
FACT_TEXT_MAX = 40  # characters kept of a value (AS organisation names run long)
COUNTED_FACTS = {  # fact column -> the enriched access column it counts
    c.COUNTRIES: "country",
    c.ASNS: "asn",
    c.AS_ORGS: "as_org",
    c.PREFIXES: "src_ip",
}
KYC_FACTS = {  # fact column -> the tenants-registry column it copies
    c.DECLARED_COUNTRY: "declared_country",
    c.BILLING_COUNTRY: "billing_country",
    c.RESELLER_NAME: "reseller",
}
FACT_COLUMNS = [*COUNTED_FACTS, *KYC_FACTS]


@dataclass(frozen=True)
class Tell:
    """One origin tell: its name, weight (log-odds at full strength) and what it measures."""

    name: str
    weight: float
    meaning: str


TELLS: tuple[Tell, ...] = (
    Tell(
        "direct",
        8.0,
        "of the events people make outside hosting networks, the share made by people who "
        "connect from a country of concern whenever they are seen (graded "
        f"{DIRECT_RAMP[0]:.0%}-{DIRECT_RAMP[1]:.0%}; on a reseller's account of unrelated end "
        f"customers any, from {RESELLER_DIRECT_RAMP[1]:.0%}): residents, "
        "and VPN users who leak; not travellers, who connect from home when at home. Counts "
        f"fully from {DIRECT_EVENTS_FULL} direct events and grows with the days of history",
    ),
    Tell("declared", 6.0, "declared or billing country is a country of concern"),
    Tell(
        "clock",
        3.5,
        "signed: the people's weekly office hours fit the zone of a country of concern (the "
        "one their direct events come from, else the best fitting) better (+) or the declared "
        f"country's better (-, only against direct events), by up to {CLOCK_FULL} nats per event; "
        "zones at least 3 h apart, weighted by events and days of history; a traveller's events "
        "abroad (direct, from a person not in a country of concern whenever seen) left out",
    ),
    Tell("hosting", 1.5, "share of events through hosting, cloud or VPN networks"),
    Tell("foreign_exit", 1.0, "share of events through hosting exits outside the declared country"),
    Tell("reseller", 1.5, "the tenant signed up through a reseller"),
    Tell(
        "kyc_mismatch",
        2.5,
        "share of events from non-hosting networks outside the declared country (not from a "
        "country of concern); grows with the days of history",
    ),
)
TELL_NAMES = [t.name for t in TELLS]
HISTORY_COLUMNS = [
    "history_events",
    "history_days",
    "restricted_share",
    "direct_events",
    "concern_people_share",
    "hosting_share",
    "foreign_exit_share",
    "kyc_mismatch_share",
    "clock_offset_h",
    "clock_excess",
    "declared_restricted",
    "reseller",
    "distinct_countries",
    "distinct_asns",
]


def tell_strengths(values: pd.DataFrame) -> pd.DataFrame:
    """Each tell's strength (0-1; the clock -1 to 1) from the history values (same index)."""
    days = values["history_days"].fillna(0.0)
    history = days / (days + HISTORY_HALF_DAYS)
    enough = (values["direct_events"].fillna(0.0) / DIRECT_EVENTS_FULL).clip(0, 1)
    people = values["concern_people_share"].fillna(0.0)
    reseller = values["reseller"].fillna(0.0).to_numpy(float) > 0
    ramp = np.where(
        reseller,
        np.interp(people, RESELLER_DIRECT_RAMP, (0.0, 1.0)),
        np.interp(people, DIRECT_RAMP, (0.0, 1.0)),
    )
    return pd.DataFrame(
        {
            "direct": ramp * enough * history,
            "declared": values["declared_restricted"].fillna(0.0),
            "clock": (values["clock_excess"].fillna(0.0) / CLOCK_FULL).clip(-1, 1),
            "hosting": values["hosting_share"].fillna(0.0),
            "foreign_exit": values["foreign_exit_share"].fillna(0.0),
            "reseller": values["reseller"].fillna(0.0),
            "kyc_mismatch": values["kyc_mismatch_share"].fillna(0.0) * history,
        },
        index=values.index,
    )


def tell_contributions(values: pd.DataFrame) -> pd.DataFrame:
    """Each tell's log-odds contribution (weight x strength), same index."""
    strengths = tell_strengths(values)
    return pd.DataFrame({t.name: t.weight * strengths[t.name] for t in TELLS}, index=values.index)


def evidence_of(values: pd.DataFrame) -> pd.Series:
    """Restricted-origin evidence in 0-1 from the history values."""
    log_odds = PRIOR + tell_contributions(values).sum(axis=1)
    return 1.0 / (1.0 + np.exp(-log_odds))


def tenant_registry(tenants: pd.DataFrame | None, settings: Settings) -> pd.DataFrame:
    """Per tenant id: declared_restricted (declared or billing country of concern) and
    reseller, as 0/1 (empty without a registry)."""
    if tenants is None or not len(tenants):
        return pd.DataFrame(columns=["declared_restricted", "reseller"], dtype=float)
    concern = settings.jurisdiction.countries_of_concern
    declared = tenants["declared_country"].isin(concern)
    if "billing_country" in tenants:
        declared |= tenants["billing_country"].isin(concern)
    reseller = tenants["reseller"].fillna("").astype(str).str.len().gt(0)
    return pd.DataFrame(
        {"declared_restricted": declared.astype(float), "reseller": reseller.astype(float)}
    ).set_axis(tenants["tenant_id"].astype(str))


def origin_facts(
    access: pd.DataFrame,
    tenants: pd.DataFrame | None,
    settings: Settings,
    as_of: pd.Timestamp,
) -> pd.DataFrame:
    """Per tenant, the facts behind its tells, as short text (FACT_COLUMNS): over the same
    history as `origin_history`, the countries, AS numbers, AS organisations and source prefixes
    of its events as JSON {value: events} (the FACTS_SHOWN most frequent, the rest as "other"),
    and from the registry its declared and billing country and reseller."""
    t = epoch_s(access["timestamp"])
    end = int(as_of.timestamp())
    events = access[(t < end) & (t >= end - settings.features.origin_history_days * _DAY)]
    tenant = events["tenant_id"].astype(str).to_numpy()
    out = {}
    for column, source in COUNTED_FACTS.items():
        values = events[source].astype("string")
        if source == "src_ip":
            distinct = values.dropna().unique()
            prefixes = dict(zip(distinct, map(source_prefix, distinct), strict=True))
            values = values.map(prefixes).replace("", pd.NA)
        counts = (
            pd.DataFrame({"t": tenant, "v": values.fillna(UNKNOWN).to_numpy()})
            .groupby(["t", "v"], sort=True)
            .size()
            .rename("n")
            .reset_index()
        )
        out[column] = _counted(counts)
    facts = pd.DataFrame(out, columns=list(COUNTED_FACTS), dtype=object)
    if tenants is not None and len(tenants):
        kyc = tenants.drop_duplicates("tenant_id").set_index(tenants["tenant_id"].astype(str))
        present = {k: v for k, v in KYC_FACTS.items() if v in kyc}
        facts = facts.join(kyc[list(present.values())].set_axis(list(present), axis=1), how="outer")
    return facts.reindex(columns=FACT_COLUMNS).astype(object)


def _counted(counts: pd.DataFrame) -> pd.Series:
    """Per tenant (column t), its values (v) and event counts (n) as JSON text {value: events},
    most frequent first, at most FACTS_SHOWN and "other"; None when no event has a value."""
    if counts.empty:
        return pd.Series(dtype=object)
    counts = counts.sort_values(["t", "n"], ascending=[True, False], kind="stable")
    rank = counts.groupby("t").cumcount().to_numpy()
    keys = pd.Series(counts["v"].unique())
    quoted = dict(zip(keys, keys.str.slice(0, FACT_TEXT_MAX).map(json.dumps), strict=True))
    pairs = counts["v"].map(quoted) + ": " + counts["n"].astype(str)
    shown = counts.assign(pair=pairs.to_numpy())[rank < FACTS_SHOWN]
    text = shown.groupby("t")["pair"].agg(", ".join)
    rest = counts[rank >= FACTS_SHOWN].groupby("t")["n"].sum()
    text.loc[rest.index] += ", " + json.dumps("other") + ": " + rest.astype(str)
    by = counts.groupby("t")["v"]
    only_unknown = (by.size() == 1) & (by.first() == UNKNOWN)
    return ("{" + text + "}").where(~only_unknown.reindex(text.index), None)


def origin_history(
    access: pd.DataFrame,
    key: pd.Series,
    settings: Settings,
    as_of: pd.Timestamp,
    registry: pd.DataFrame,
) -> pd.DataFrame:
    """Per key (a tenant, or an entity: `key` gives each access row's), the history values of
    HISTORY_COLUMNS and `origin_evidence`, over the events before `as_of`. `access` is
    enriched; `registry` (per key: declared_restricted, reseller) also brings keys without
    events."""
    t = epoch_s(access["timestamp"])
    end = int(as_of.timestamp())
    keep = (t < end) & (t >= end - settings.features.origin_history_days * _DAY)
    ev = _event_flags(access[keep])
    ev["key"] = key[keep].astype(str).to_numpy()
    ev["t"] = t[keep]
    ev["day"] = ev["t"] // _DAY
    by = ev.groupby("key", sort=True)
    values = pd.DataFrame(
        {
            "history_events": by.size().astype(float),
            "history_days": by["day"].nunique().astype(float),
            "restricted_share": by["direct"].mean(),
            "hosting_share": by["hosting"].mean(),
            "foreign_exit_share": by["foreign_exit"].mean(),
            "kyc_mismatch_share": by["kyc_mismatch"].mean(),
            "distinct_countries": by["country"].nunique().astype(float),
            "distinct_asns": by["network"].nunique().astype(float),
        }
    )
    values["direct_events"] = by["direct"].sum().astype(float)
    seen, concern = _people(ev)
    values["concern_people_share"] = _concern_people(seen, concern).reindex(values.index)
    ev["trip"] = _trip_events(ev, concern)
    values = values.join(_clock(ev, settings, as_of)).join(registry, how="outer")
    values["history_events"] = values["history_events"].fillna(0.0)
    values["history_days"] = values["history_days"].fillna(0.0)
    values["origin_evidence"] = evidence_of(values)
    return values[[*HISTORY_COLUMNS, "origin_evidence"]]


def _concern_people(seen: pd.Series, concern: pd.Series) -> pd.Series:
    """Per key: of the events its people make outside hosting networks (where they can be
    seen), the share made by people who connect from a country of concern whenever they are
    seen (CONCERN_PERSON_SHARE of their own-network events). A resident, and a VPN user who
    leaks, is one; a traveller is not: at home they connect from home. People never seen
    outside hosting (bots, careful VPN users) do not count either way (`_people`)."""
    by_key = seen.groupby(level="key").sum()
    share = seen.where(concern, 0).groupby(level="key").sum() / by_key
    return share.where(by_key > 0)


def _people(ev: pd.DataFrame) -> tuple[pd.Series, pd.Series]:
    """Per (key, principal): the events seen outside hosting networks, and whether the person
    is in a country of concern whenever seen (`_concern_people`)."""
    person = ev.groupby(["key", "principal"]).agg(
        direct=("direct", "sum"), own=("own_network", "sum")
    )
    seen = person["direct"] + person["own"]
    return seen, (person["direct"] > 0) & (person["direct"] >= CONCERN_PERSON_SHARE * seen)


def _trip_events(ev: pd.DataFrame, concern: pd.Series) -> np.ndarray:
    """Per event: a direct event of a person who is not in a country of concern whenever seen
    (a traveller abroad; `concern` per person from `_people`)."""
    resident = concern.reindex(pd.MultiIndex.from_arrays([ev["key"], ev["principal"]]))
    return ev["direct"].to_numpy(bool) & ~resident.fillna(False).to_numpy(bool)


def _event_flags(access: pd.DataFrame) -> pd.DataFrame:
    """Per event: direct (from a country of concern, whatever the network), hosting (another
    hosting exit), foreign exit (hosting outside the declared country), KYC mismatch (a direct
    event from another country than the declared one)."""
    country = access["country"].astype("string")
    declared = access["declared_country"].astype("string")
    restricted = access["restricted"].astype(bool).to_numpy()
    hosting = access["hosting"].astype(bool).to_numpy() & ~restricted
    elsewhere = (country.notna() & declared.notna() & (country != declared)).to_numpy(bool)
    principal = (
        access["principal"].astype("string").fillna("")
        if "principal" in access
        else pd.Series("", index=access.index)
    )
    return pd.DataFrame(
        {
            "direct": restricted,
            "hosting": hosting,
            "foreign_exit": hosting & elsewhere,
            "kyc_mismatch": ~hosting & ~restricted & elsewhere,
            "own_network": ~hosting & ~restricted,
            "country": country.to_numpy(),
            "network": access["asn"].astype("string").fillna(access["as_org"].astype("string")),
            "principal": principal.to_numpy(),
            "declared": declared.to_numpy(),
        },
        index=access.index,
    )


def _clock(ev: pd.DataFrame, settings: Settings, as_of: pd.Timestamp) -> pd.DataFrame:
    """Per key: the best-fitting UTC offset of its weekly activity (hours), and the clock
    evidence: the log-likelihood per event of the activity under office hours in the zone of
    a country of concern (the one its direct events come from, else the best-fitting one),
    minus under the declared country's zone (without one: the best zone at least 3 h away),
    weighted by confidence in events and days. Negative when the declared zone fits better,
    which refutes direct events (a trip) but proves nothing without them. Zero when the zones
    are within 3 h: the clock cannot tell Beijing from Singapore. A traveller's events abroad
    (`trip`, from `_trip_events`) are left out of the fit: they keep that country's hours
    because the person is there, which `direct` has already weighed; the clock reads the
    people at home."""
    offsets = _half_hour_offsets(settings, as_of)
    zone_of = settings.jurisdiction.zone_of
    concern = np.array(sorted({offsets[z] for z in _concern_zones(settings) if z in offsets}))
    keys = np.array(sorted(ev["key"].unique()), dtype=object)
    if not len(ev) or not len(concern):
        return pd.DataFrame({"clock_offset_h": np.nan, "clock_excess": 0.0}, index=keys)
    t = ev["t"].to_numpy()
    how = ((t // _DAY + 3) % 7) * 48 + (t % _DAY) // 1800  # UTC half-hour of the week
    code = np.searchsorted(keys, ev["key"].to_numpy())
    home = ~ev["trip"].to_numpy(bool)
    log_p = _log_template(settings)
    candidates = np.arange(-24, 29)  # UTC-12 to UTC+14, in half-hours
    hist = np.zeros((len(keys), _BINS))
    np.add.at(hist, (code[home], how[home]), 1.0)
    ll = hist @ np.stack([np.roll(log_p, -o) for o in candidates], axis=1)
    n = hist.sum(axis=1)

    def offset_of(country: object) -> float:
        zone = zone_of(country) if isinstance(country, str) else None
        return float(offsets.get(zone or "", np.nan))

    at_concern = ll[:, np.searchsorted(candidates, concern)]
    hypothesis = concern[at_concern.argmax(axis=1)].astype(float)
    direct = ev.loc[ev["direct"], ["key", "country"]]
    has_direct = np.isin(keys, direct["key"].unique())
    if len(direct):
        source = direct.groupby("key")["country"].agg(lambda c: c.mode().iloc[0])
        from_direct = source.map(offset_of).reindex(keys).to_numpy(float)
        hypothesis = np.where(np.isnan(from_direct), hypothesis, from_direct)
    hyp = hypothesis.astype(int)
    ll_hyp = ll[np.arange(len(keys)), np.searchsorted(candidates, hyp)]

    declared = pd.Series(ev["declared"]).map(offset_of).to_numpy(float)
    known = ~np.isnan(declared) & home
    own = log_p[(how[known] + declared[known].astype(int)) % _BINS]
    ref_declared = np.bincount(code[known], weights=own, minlength=len(keys))
    near = known.copy()
    near[known] = np.abs(declared[known] - hyp[code[known]]) < _MIN_CLOCK_GAP
    any_near = np.bincount(code, weights=near, minlength=len(keys)) > 0
    all_known = np.bincount(code, weights=known, minlength=len(keys)) == n
    away = np.abs(candidates[None, :] - hyp[:, None]) >= _MIN_CLOCK_GAP
    ref = np.where(all_known, ref_declared, np.where(away, ll, -np.inf).max(axis=1))
    days = pd.Series(ev["day"].to_numpy()[home]).groupby(code[home]).nunique()
    days = days.reindex(range(len(keys))).fillna(0).to_numpy()
    confidence = np.clip((days - 1) / 4, 0, 1) * np.clip(n / 20, 0, 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        llr = (ll_hyp - ref) / n * confidence
    llr = np.where(has_direct, llr, np.clip(llr, 0, None))
    return pd.DataFrame(
        {
            "clock_offset_h": candidates[ll.argmax(axis=1)] / 2.0,
            "clock_excess": np.nan_to_num(np.where(any_near, 0.0, llr)),
        },
        index=keys,
    )


def _concern_zones(settings: Settings) -> list[str]:
    j = settings.jurisdiction
    return [z for c in j.countries_of_concern if (z := j.zone_of(c))]


def _half_hour_offsets(settings: Settings, as_of: pd.Timestamp) -> dict[str, int]:
    """UTC offset in half-hours at `as_of` of every zone the clock may use."""
    zones = set(_concern_zones(settings)) | set(country_zones().values())
    moment = datetime.fromtimestamp(as_of.timestamp(), UTC)
    out = {}
    for zone in zones | set(settings.jurisdiction.timezones.values()):
        offset = moment.astimezone(ZoneInfo(zone)).utcoffset()
        if offset is not None:
            out[zone] = int(round(offset.total_seconds() / 1800))
    return out


def _log_template(settings: Settings) -> np.ndarray:
    """log p(local half-hour of the week) of someone keeping office hours: the working hours
    of the policy on weekdays, mornings and evenings less, nights rarely, weekends a fifth;
    mixed with a uniform share for automation and odd hours."""
    start, end = settings.jurisdiction.working_hours
    hour = np.arange(48) / 2
    day = np.select(
        [(hour >= start) & (hour < end), (hour >= start - 2) & (hour < 23.5)], [1.0, 0.35], 0.03
    )
    week = np.concatenate([day] * 5 + [0.2 * day] * 2)
    p = 0.8 * week / week.sum() + 0.2 / _BINS
    return np.log(p)


def window_events(sessions: pd.DataFrame, access: pd.DataFrame, lookback_s: float) -> np.ndarray:
    """Access events of each session's tenant from `lookback_s` before its start to its end
    (the window an analyst reads with the case)."""
    tenant_codes, _ = pd.factorize(
        pd.concat([sessions["tenant_id"], access["tenant_id"]], ignore_index=True).astype(str)
    )
    s_tenant, a_tenant = tenant_codes[: len(sessions)], tenant_codes[len(sessions) :]
    key = _key(a_tenant, epoch_s(access["timestamp"]))
    key.sort()
    lo = np.searchsorted(key, _key(s_tenant, epoch_s(sessions["start"]) - int(lookback_s)))
    hi = np.searchsorted(key, _key(s_tenant, epoch_s(sessions["end"])), side="right")
    return (hi - lo).astype(float)


def _key(tenant: np.ndarray, seconds: np.ndarray) -> np.ndarray:
    return tenant.astype(np.int64) * (1 << 36) + (seconds.astype(np.int64) + (1 << 34))
