"""Origin features: where a session is driven from, from the tenant's enriched access events.

Each session looks at its tenant's events from `access_lookback_seconds` before its start to
its end; shares over fewer than MIN_WINDOW_EVENTS events fall back to the tenant's whole
history. Window counts use per-tenant cumulative sums and binary search: no loop per session.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..config import Settings
from ..timeutil import epoch_s

MIN_WINDOW_EVENTS = 3
# Connecting only through hosting exits abroad hides the origin: evidence, weaker than a
# direct connection from a country of concern.
OBSCURED_WEIGHT = 0.6
_SHARES = ("restricted", "hosting", "unknown", "kyc_mismatch", "concern_hours", "declared_hours")


def origin_features(
    sessions: pd.DataFrame,
    access: pd.DataFrame,
    settings: Settings,
    tenants: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """One row per session (same index) of origin features. `access` is enriched."""
    events = _event_indicators(access, settings)
    tenant_codes, tenant_names = pd.factorize(
        pd.concat([sessions["tenant_id"], events["tenant_id"]], ignore_index=True).astype(str)
    )
    sess_tenant = tenant_codes[: len(sessions)]
    ev_tenant = tenant_codes[len(sessions) :]

    order = np.lexsort((events["t"].to_numpy(), ev_tenant))
    ev_key = _key(ev_tenant[order], events["t"].to_numpy()[order])
    lookback = int(settings.sessions.access_lookback_seconds)
    start = epoch_s(sessions["start"]) - lookback
    end = epoch_s(sessions["end"])
    lo = np.searchsorted(ev_key, _key(sess_tenant, start), side="left")
    hi = np.searchsorted(ev_key, _key(sess_tenant, end), side="right")
    t_lo = np.searchsorted(ev_key, _key(sess_tenant, np.zeros_like(start)), side="left")
    t_hi = np.searchsorted(ev_key, _key(sess_tenant + 1, np.zeros_like(start)), side="left")

    out = pd.DataFrame(index=sessions.index)
    window = hi - lo
    use_window = window >= MIN_WINDOW_EVENTS
    a = np.where(use_window, lo, t_lo)
    b = np.where(use_window, hi, t_hi)
    out["access_events"] = window
    for name in _SHARES:
        values = events[name].to_numpy(float)[order]
        valid = ~np.isnan(values)
        cum = np.r_[0.0, np.cumsum(np.where(valid, values, 0.0))]
        cnt = np.r_[0.0, np.cumsum(valid)]
        with np.errstate(invalid="ignore", divide="ignore"):
            out[name + "_share"] = (cum[b] - cum[a]) / (cnt[b] - cnt[a])
    out = out.rename(
        columns={
            "concern_hours_share": "concern_hours_fit",
            "declared_hours_share": "declared_hours_fit",
        }
    )

    per_tenant = _tenant_summary(events, tenants, settings).reindex(tenant_names[sess_tenant])
    for col in per_tenant:
        out[col] = per_tenant[col].to_numpy()
    out["origin_evidence"] = origin_evidence(out)
    return out


def origin_evidence(f: pd.DataFrame) -> pd.Series:
    """Restricted-origin evidence in 0-1 that survives VPNs: the strongest of its parts."""
    tz_excess = (f["concern_hours_fit"] - f["declared_hours_fit"]).clip(lower=0)
    parts = pd.DataFrame(
        {
            "direct": f["restricted_share"],
            "declared": f["declared_restricted"],
            "vpn_clock": f["hosting_share"] * tz_excess,
            "vpn_leak": f["restricted_leak"] * f["hosting_share"],
            "reseller": f["reseller"] * f["kyc_mismatch_share"],
            "hidden": OBSCURED_WEIGHT * f["hosting_share"] * f["kyc_mismatch_share"],
        }
    )
    return parts.max(axis=1, skipna=True).fillna(0.0).clip(0, 1)


def _key(tenant: np.ndarray, seconds: np.ndarray) -> np.ndarray:
    return tenant.astype(np.int64) * (1 << 36) + (seconds.astype(np.int64) - _EPOCH_OFFSET)


_EPOCH_OFFSET = -(1 << 34)  # keeps keys positive for any time after 1425 AD


def _event_indicators(access: pd.DataFrame, settings: Settings) -> pd.DataFrame:
    """Per event: time in seconds and 0/1 indicators (NaN where unknowable)."""
    ts = access["timestamp"]
    known = access["country"].notna()
    declared = (
        access["declared_country"]
        if "declared_country" in access
        else pd.Series(pd.NA, index=access.index)
    )
    return pd.DataFrame(
        {
            "tenant_id": access["tenant_id"].astype(str),
            "t": epoch_s(ts),
            "restricted": access["restricted"].astype(float),
            "hosting": access["hosting"].astype(float),
            "unknown": (~known).astype(float),
            "kyc_mismatch": access["kyc_mismatch"].astype(float).where(known & declared.notna()),
            "concern_hours": _best_working_hours(ts, access["tenant_id"], settings),
            "declared_hours": _working_hours_in(
                ts,
                declared.map(
                    {c: settings.jurisdiction.zone_of(c) for c in declared.dropna().unique()}
                ),
                settings,
            ),
            "country": access["country"],
            "network": access["asn"].astype("string").fillna(access["as_org"].astype("string")),
        },
        index=access.index,
    )


def _in_working_hours(local: pd.Series, hours: tuple[int, int]) -> np.ndarray:
    return (
        (local.dt.hour >= hours[0]) & (local.dt.hour < hours[1]) & (local.dt.day_of_week < 5)
    ).to_numpy(float)


def _working_hours_in(ts: pd.Series, zones: pd.Series, settings: Settings) -> np.ndarray:
    """1 where the event falls in working hours of its own zone; NaN where the zone is unknown."""
    out = np.full(len(ts), np.nan)
    for zone, idx in zones.groupby(zones, dropna=True).groups.items():
        pos = ts.index.get_indexer(idx)
        local = ts.iloc[pos].dt.tz_convert(zone)
        out[pos] = _in_working_hours(local, settings.jurisdiction.working_hours)
    return out


def _best_working_hours(ts: pd.Series, tenant: pd.Series, settings: Settings) -> np.ndarray:
    """Per event: in working hours of the concern zone that fits its tenant best."""
    jurisdiction = settings.jurisdiction
    zones = sorted({jurisdiction.zone_of(c) for c in jurisdiction.countries_of_concern})
    if not zones or ts.empty:
        return np.full(len(ts), np.nan)
    fits = np.column_stack(
        [
            _in_working_hours(ts.dt.tz_convert(zone), settings.jurisdiction.working_hours)
            for zone in zones
        ]
    )
    per_tenant = pd.DataFrame(fits).groupby(tenant.to_numpy()).mean()
    best = per_tenant.to_numpy().argmax(axis=1)
    best_of_event = pd.Series(best, index=per_tenant.index).reindex(tenant.to_numpy()).to_numpy()
    return fits[np.arange(len(ts)), best_of_event]


def _tenant_summary(
    events: pd.DataFrame, tenants: pd.DataFrame | None, settings: Settings
) -> pd.DataFrame:
    by = events.groupby("tenant_id")
    summary = pd.DataFrame(
        {
            "restricted_leak": by["restricted"].max(),
            "tenant_restricted_share": by["restricted"].mean(),
            "distinct_countries": by["country"].nunique(),
            "distinct_asns": by["network"].nunique(),
        }
    )
    if tenants is not None and len(tenants):
        concern = settings.jurisdiction.countries_of_concern
        t = tenants.drop_duplicates("tenant_id")
        t = t.set_index(t["tenant_id"].astype(str))
        declared = t["declared_country"].isin(concern) | t["billing_country"].isin(concern)
        reseller = t["reseller"].fillna("").astype(str).str.len().gt(0)
        info = pd.DataFrame(
            {"declared_restricted": declared.astype(float), "reseller": reseller.astype(float)}
        )
        summary = summary.join(info, how="outer")
    else:
        summary["declared_restricted"] = np.nan
        summary["reseller"] = np.nan
    return summary
