"""Linked accounts become entities; jobs run in step across accounts become one group.

This is the global pass of DESIGN "Scale": it reads only small per-session and per-tenant
summaries (session times and dip times, access principals and source prefixes, billing
attributes), so it runs once after the per-partition work, the same for every engine.

Links between tenants:
- strong: a shared billing id; sessions run in step (started within `in_step_seconds` of each
  other and checkpointing together, or checkpointing together often);
- half: a shared principal name (one alone is a coincidence in a large fleet: `sato.a`);
- weak: a shared non-hosting source prefix (IPv4 /24, IPv6 /48); it takes 1 / PREFIX_WEIGHT
  of them to make a link (home prefixes are shared by strangers too: carrier-grade NAT).
A principal, prefix or billing id shared by more than `link_max_tenants` tenants is common
infrastructure (a cloud NAT, a VPN exit, "root", a reseller's card), not a link; so is every
principal or prefix of a tenant that shares them with more than `link_max_tenants` others (a
rotating proxy pool, a hub). Tenants
connected by links form an entity (connected components); sessions run in step form a group
whose compute is counted together: a job split across four accounts is the one big job it is.
"""

from __future__ import annotations

import hashlib
import ipaddress

import numpy as np
import pandas as pd
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from ..config import Settings
from ..timeutil import epoch_s
from .training import DIPS_PER_HOUR_MAX
from .workload import DIP_TIMES

GENERIC_PRINCIPALS = frozenset(
    {"", "root", "admin", "administrator", "ubuntu", "ec2-user", "centos", "debian", "user",
     "guest", "test", "jenkins", "deploy", "git"}
)  # fmt: skip
DIP_MATCH_SECONDS = 120  # two dips this close are the same checkpoint
DIP_MATCH_SHARE = 0.6  # of the fewer dips: by chance, frequent dips (requests) match too
DIP_ONLY_SHARE = 0.9  # ... for jobs that did not start together, in step by their dips alone
MIN_DIP_REGULARITY = 0.5
DIP_CHANCE = 1e-6  # dips matched more often than chance would give once in a million
LINK_WEIGHT = 1.0  # a pair of tenants is linked at this summed weight
PRINCIPAL_WEIGHT = 0.5  # what one shared principal adds: names repeat in a large fleet
PREFIX_WEIGHT = 0.25  # what one shared source prefix adds
MAX_LINKED_SHOWN = 8  # linked tenants named in a session's `linked_tenants`
PLURALS = {"principal": "principals", "prefix": "prefixes", "billing id": "billing ids"}
INDIRECT = "through other linked tenants"  # a member with no link of its own to the tenant


def entity_features(
    sessions: pd.DataFrame,
    access: pd.DataFrame,
    tenants: pd.DataFrame | None,
    settings: Settings,
) -> tuple[pd.DataFrame, pd.Series]:
    """Per session (same index): entity_id, linked_tenants, link_reasons (what each linked tenant
    shares with this one), entity_tenants, group_sessions,
    group_flop, group_gpu_hours; and the entity of every tenant seen (sessions, access or
    registry). `sessions` holds tenant_id, start, end, est_flop, gpu_hours and DIP_TIMES."""
    groups = in_step_groups(sessions, settings)
    tenant_ids = sorted(
        set(sessions["tenant_id"].astype(str))
        | set(access["tenant_id"].astype(str))
        | (set(tenants["tenant_id"].astype(str)) if tenants is not None else set())
    )
    index = {t: i for i, t in enumerate(tenant_ids)}
    pairs = [
        _shared(
            access["tenant_id"],
            access.get("principal"),
            settings,
            PRINCIPAL_WEIGHT,
            "principal",
            exclude=GENERIC_PRINCIPALS,
        ),
        _shared_prefixes(access, settings),
    ]
    if tenants is not None and "billing_id" in tenants:
        pairs.append(
            _shared(
                tenants["tenant_id"], tenants["billing_id"], settings, LINK_WEIGHT, "billing id"
            )
        )
    pairs.append(_group_pairs(sessions["tenant_id"].astype(str), groups))
    links = pd.concat(pairs, ignore_index=True)
    entity = _entities(tenant_ids, index, links)
    members = pd.Series(tenant_ids).groupby(entity).agg(list)
    session_entity = (
        sessions["tenant_id"].astype(str).map(dict(zip(tenant_ids, entity, strict=True)))
    )
    names = {e: entity_name(m) for e, m in members.items()}
    flop = sessions["est_flop"].to_numpy(float)
    group_flop = np.bincount(groups, weights=np.nan_to_num(flop))[groups]
    hours = sessions["gpu_hours"].to_numpy(float)
    group_gpu_hours = np.bincount(groups, weights=np.nan_to_num(hours))[groups]
    of_tenant = pd.Series([names[e] for e in entity], index=tenant_ids, dtype=object)
    shown = [
        [m for m in members[e] if m != t][:MAX_LINKED_SHOWN]
        for e, t in zip(session_entity, sessions["tenant_id"].astype(str), strict=True)
    ]
    why = _reasons(links)
    features = pd.DataFrame(
        {
            "entity_id": session_entity.map(names).to_numpy(),
            "linked_tenants": [",".join(linked) for linked in shown],
            "link_reasons": [
                "; ".join(f"{m}: {why.get((t, m), INDIRECT)}" for m in linked)
                for t, linked in zip(sessions["tenant_id"].astype(str), shown, strict=True)
            ],
            "entity_tenants": session_entity.map(members.map(len)).to_numpy(float),
            "group_sessions": np.bincount(groups)[groups].astype(float),
            "group_flop": group_flop,
            "group_gpu_hours": group_gpu_hours,
        },
        index=sessions.index,
    )
    return features, of_tenant


def entity_name(members: list[str]) -> str:
    """Stable id of an entity: a hash of its sorted member tenants."""
    digest = hashlib.sha256("\n".join(sorted(members)).encode()).hexdigest()
    return f"en-{digest[:10]}"


def in_step_groups(sessions: pd.DataFrame, settings: Settings) -> np.ndarray:
    """A group code per session (row order): sessions of different tenants run in step share
    one. In step: checkpointing together, and either started and ended within
    `in_step_seconds` of each other (DIP_MATCH_SHARE of the dips of the session with fewer
    match) or not (DIP_ONLY_SHARE, beyond chance: DIP_CHANCE). Without checkpoints nothing
    says two sessions are one job: jobs launched at nine and stopped at six are many, and
    services run from the start of the data to its end. A start or end at the edge of the
    data is unknown: two sessions running since before the data began start together if they
    end together, and two still running end together if they started together; one bound
    must be seen."""
    n = len(sessions)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    tol = settings.features.in_step_seconds
    start, end = epoch_s(sessions["start"]), epoch_s(sessions["end"])
    edge = settings.sessions.grid_seconds
    real_start = start > start.min() + edge
    real_end = end < end.max() - edge
    tenant = pd.factorize(sessions["tenant_id"].astype(str))[0]
    checkpointing = _checkpointing(sessions).to_numpy()
    dips = _dip_pairs(sessions[DIP_TIMES].where(checkpointing, None), tenant)
    dips["agree"] = dips["matched"] >= DIP_MATCH_SHARE * dips["fewer"]
    regularity = sessions["dip_regularity"].fillna(0.0).to_numpy(float)
    dips["unlikely"] = _chance(dips, start, end, regularity) < DIP_CHANCE
    pairs = pd.concat(
        [_close(start, real_start, tenant, tol), _close(end, real_end, tenant, tol)],
        ignore_index=True,
    ).drop_duplicates()
    together = pairs.merge(dips, on=["a", "b"], how="left")
    a, b = together["a"].to_numpy(), together["b"].to_numpy()
    starts, ends = _same(start, real_start, a, b, tol), _same(end, real_end, a, b, tol)
    agree = together["agree"].astype("boolean").fillna(False).to_numpy(bool)
    ok = together[starts & ends & checkpointing[a] & checkpointing[b] & agree]
    often = dips[(dips["matched"] >= DIP_ONLY_SHARE * dips["fewer"]) & dips["unlikely"]]
    links = pd.concat([ok[["a", "b"]], often[["a", "b"]]], ignore_index=True)
    graph = coo_matrix((np.ones(len(links)), (links["a"], links["b"])), shape=(n, n))
    return connected_components(graph, directed=False)[1].astype(np.int64)


def _close(times: np.ndarray, real: np.ndarray, tenant: np.ndarray, tol: float) -> pd.DataFrame:
    """Pairs (a < b) of sessions of different tenants whose real `times` are within `tol`."""
    rows = []
    order = np.flatnonzero(real)
    order = order[np.argsort(times[order], kind="stable")]
    hi = np.searchsorted(times[order], times[order] + tol, side="right")
    for i, last in enumerate(hi):  # sessions that start (end) together are few
        for j in range(i + 1, last):
            a, b = sorted((order[i], order[j]))
            if tenant[a] != tenant[b]:
                rows.append((a, b))
    return pd.DataFrame(rows, columns=["a", "b"], dtype=np.int64)


def _same(
    times: np.ndarray, real: np.ndarray, a: np.ndarray, b: np.ndarray, tol: float
) -> np.ndarray:
    """Whether sessions a and b share a bound: both seen and within `tol`, or both at the edge
    of the data (unknown alike); one seen and one unknown do not."""
    both = real[a] & real[b]
    return np.where(both, np.abs(times[a] - times[b]) <= tol, ~real[a] & ~real[b])


def _chance(
    dips: pd.DataFrame, start: np.ndarray, end: np.ndarray, regularity: np.ndarray
) -> np.ndarray:
    """Probability of matching as many dips by chance: each dip of the session with fewer
    falls within the match window of one of the other's, spread over their overlap. Regular
    dips are not independent trials (a period and a phase place them all, and two jobs
    checkpointing every 40 minutes line up by chance one time in twenty): the dips count as
    independent in the share (1 - regularity) / (1 - MIN_DIP_REGULARITY), regularity of the
    more irregular session."""
    from scipy.stats import binom

    a, b = dips["a"].to_numpy(np.int64), dips["b"].to_numpy(np.int64)
    overlap = np.maximum(np.minimum(end[a], end[b]) - np.maximum(start[a], start[b]), 1)
    more = dips["more"].to_numpy(float)
    hit = np.clip(more * 4 * DIP_MATCH_SECONDS / overlap, 0, 1)  # window: +-2 slots
    irregular = 1.0 - np.minimum(regularity[a], regularity[b])
    independent = np.clip(irregular / (1.0 - MIN_DIP_REGULARITY), 0.0, 1.0)
    trials = np.maximum(np.round(dips["fewer"].to_numpy() * independent), 1)
    matched = np.round(dips["matched"].to_numpy() / dips["fewer"].to_numpy() * trials)
    return binom.sf(matched - 1, trials, hit)


def _checkpointing(sessions: pd.DataFrame) -> pd.Series:
    """Sessions whose dips look like checkpoints: a few, regular, not every few minutes (a
    serving load's troughs and a notebook's pauses are neither)."""
    return (
        (sessions[DIP_TIMES].map(len) >= 3)
        & (sessions["dip_regularity"] >= MIN_DIP_REGULARITY)
        & (sessions["dip_rate_per_h"] <= DIPS_PER_HOUR_MAX)
    )


def _dip_pairs(dip_times: pd.Series, tenant: np.ndarray) -> pd.DataFrame:
    """Pairs of sessions (a < b, different tenants) and how many of their dips coincide."""
    lengths = dip_times.map(lambda d: 0 if d is None else len(d)).to_numpy()
    dip_times = dip_times[lengths > 0]
    if not lengths.sum():
        return pd.DataFrame(
            {"a": [], "b": [], "matched": [], "fewer": [], "more": []}, dtype=np.int64
        )
    session = np.repeat(np.flatnonzero(lengths), lengths[lengths > 0])
    times = np.concatenate([np.asarray(d, dtype=np.int64) for d in dip_times])
    slot = times // DIP_MATCH_SECONDS
    table = pd.DataFrame({"s": session, "slot": slot})
    near = pd.concat([table.assign(slot=slot + k) for k in (-1, 0, 1)], ignore_index=True)
    pairs = table.merge(near, on="slot", suffixes=("_a", "_b"))
    pairs = pairs[
        (pairs["s_a"] < pairs["s_b"])
        & (tenant[pairs["s_a"].to_numpy()] != tenant[pairs["s_b"].to_numpy()])
    ]
    matched = pairs.drop_duplicates(["s_a", "s_b", "slot"]).groupby(["s_a", "s_b"]).size()
    out = matched.rename("matched").rename_axis(["a", "b"]).reset_index()
    out["fewer"] = np.minimum(lengths[out["a"]], lengths[out["b"]])
    out["more"] = np.maximum(lengths[out["a"]], lengths[out["b"]])
    return out


def _shared(
    tenant: pd.Series,
    value: pd.Series | None,
    settings: Settings,
    weight: float,
    kind: str,
    exclude: frozenset[str] = frozenset({""}),
) -> pd.DataFrame:
    """Tenant pairs sharing a value held by 2..link_max_tenants tenants, `weight` a value."""
    if value is None:
        return pd.DataFrame({"a": [], "b": [], "weight": [], "kind": []})
    table = pd.DataFrame(
        {"t": tenant.astype(str).to_numpy(), "v": value.astype("string").fillna("").to_numpy()}
    )
    table = table[~table["v"].str.lower().isin(exclude)].drop_duplicates()
    return _pairs_within(table, settings.features.link_max_tenants, weight, kind)


def _shared_prefixes(access: pd.DataFrame, settings: Settings) -> pd.DataFrame:
    """Tenant pairs by the non-hosting source prefixes (/24, /48) they share: one per shared
    prefix. Hosting prefixes (cloud NAT, VPN exits) serve many customers: not a link."""
    access = access[~access["hosting"].astype(bool)]
    ips = access["src_ip"].astype("string").fillna("")
    distinct = pd.Series(ips.unique())
    prefix = distinct.map(source_prefix)
    table = pd.DataFrame(
        {
            "t": access["tenant_id"].astype(str).to_numpy(),
            "v": ips.map(dict(zip(distinct, prefix, strict=True))),
        }
    )
    table = table[table["v"] != ""].drop_duplicates()
    return _pairs_within(table, settings.features.link_max_tenants, PREFIX_WEIGHT, "prefix")


def source_prefix(ip: str) -> str:
    """The /24 (IPv4) or /48 (IPv6) network of an address; '' when it is not one."""
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return ""
    bits = 24 if address.version == 4 else 48
    return str(ipaddress.ip_network(f"{address}/{bits}", strict=False))


def _pairs_within(table: pd.DataFrame, max_tenants: int, weight: float, kind: str) -> pd.DataFrame:
    """Pairs of tenants (column t) that share a value (column v) with few tenants. A tenant
    that shares such values with more than `max_tenants` others is a hub (a rotating proxy
    pool, a common first name), and its pairs are dropped."""
    size = table.groupby("v")["t"].transform("size")
    table = table[(size >= 2) & (size <= max_tenants)]
    pairs = table.merge(table, on="v", suffixes=("_a", "_b"))
    pairs = pairs[pairs["t_a"] != pairs["t_b"]]
    partners = pairs.groupby("t_a")["t_b"].nunique()
    hubs = partners.index[partners > max_tenants]
    keep = (pairs["t_a"] < pairs["t_b"]) & ~pairs["t_a"].isin(hubs) & ~pairs["t_b"].isin(hubs)
    pairs = pairs[keep]
    return pd.DataFrame({"a": pairs["t_a"], "b": pairs["t_b"], "weight": weight, "kind": kind})


def _group_pairs(tenant: pd.Series, groups: np.ndarray) -> pd.DataFrame:
    """Tenant pairs of sessions in one in-step group."""
    table = pd.DataFrame({"v": groups, "t": tenant.to_numpy()}).drop_duplicates()
    table = table[table.groupby("v")["t"].transform("size") >= 2]
    pairs = table.merge(table, on="v", suffixes=("_a", "_b"))
    pairs = pairs[pairs["t_a"] < pairs["t_b"]]
    return pd.DataFrame(
        {"a": pairs["t_a"], "b": pairs["t_b"], "weight": LINK_WEIGHT, "kind": "in-step sessions"}
    )


def _entities(tenant_ids: list[str], index: dict[str, int], links: pd.DataFrame) -> np.ndarray:
    """Connected components of the tenants over links of enough weight."""
    weight = links.groupby(["a", "b"])["weight"].sum()
    strong = weight[weight >= LINK_WEIGHT].reset_index()
    n = len(tenant_ids)
    a = strong["a"].map(index).to_numpy(np.int64)
    b = strong["b"].map(index).to_numpy(np.int64)
    graph = coo_matrix((np.ones(len(a)), (a, b)), shape=(n, n))
    return connected_components(graph, directed=False)[1]


def _reasons(links: pd.DataFrame) -> dict[tuple[str, str], str]:
    """Per ordered tenant pair, what they share: 'billing id, 2 prefixes, in-step sessions'."""
    counts = links.groupby(["a", "b", "kind"], sort=True).size()
    out: dict[tuple[str, str], list[str]] = {}
    for (a, b, kind), n in counts.items():
        text = f"{n} {PLURALS[kind]}" if n > 1 and kind in PLURALS else kind
        out.setdefault((a, b), []).append(text)
        out.setdefault((b, a), []).append(text)
    return {pair: ", ".join(parts) for pair, parts in out.items()}
