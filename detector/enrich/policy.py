"""Access events + IP database + jurisdiction policy -> origin columns and policy flags.

Policy is data: countries of concern, hosting ASNs and organisation keywords all come from
``Settings``; nothing here names a country or a provider.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from ..config import Settings
from ..errors import SchemaError
from .geoip import IpDatabase, take_rows


@dataclass(frozen=True)
class EnrichStats:
    """Coverage of the database over the distinct public source addresses.

    ``ips_unknown_asn`` counts addresses with no AS answer at all (neither number nor
    organisation); ``asn_rejected_not_containing`` those whose AS answer was a block that does
    not contain the address and was therefore dropped.
    """

    ips_total: int
    ips_unknown_country: int
    ips_unknown_asn: int
    asn_rejected_not_containing: int


def enrich_access(
    access: pd.DataFrame, db: IpDatabase, settings: Settings, tenants: pd.DataFrame | None = None
) -> tuple[pd.DataFrame, EnrichStats]:
    """Add country, asn, as_org (pre-enriched values kept), ip_class and the policy flags
    restricted, hosting, declared_country, reseller, kyc_mismatch. The input is not changed."""
    if "src_ip" not in access.columns:
        raise SchemaError("access table has no src_ip column", column="src_ip")
    codes, uniques = pd.factorize(access["src_ip"])
    distinct = db.lookup_distinct(uniques)
    stats = _stats(distinct)
    found = take_rows(distinct, codes).set_axis(access.index)

    country = _keep(access, "country", found["country"], "string")
    asn = _keep(access, "asn", found["asn"], "Int64")
    as_org = _keep(access, "as_org", found["as_org"], "string")
    declared, reseller = _tenant_columns(access.get("tenant_id"), tenants)
    restricted = country.isin(settings.jurisdiction.countries_of_concern).to_numpy(bool)
    kyc_mismatch = (country.notna() & declared.notna() & (country != declared)).to_numpy(bool)
    enriched = access.assign(
        country=country,
        asn=asn,
        as_org=as_org,
        ip_class=found["ip_class"],
        restricted=restricted,
        hosting=_hosting(asn, as_org, settings),
        declared_country=declared,
        reseller=reseller,
        kyc_mismatch=kyc_mismatch,
    )
    return enriched, stats


def _stats(distinct: pd.DataFrame) -> EnrichStats:
    public = (distinct["ip_class"] == "public").fillna(False).to_numpy(bool)
    no_asn = (distinct["asn"].isna() & distinct["as_org"].isna()).to_numpy(bool)
    return EnrichStats(
        ips_total=int(public.sum()),
        ips_unknown_country=int((public & distinct["country"].isna().to_numpy(bool)).sum()),
        ips_unknown_asn=int((public & no_asn).sum()),
        asn_rejected_not_containing=int((public & distinct["asn_rejected"].to_numpy(bool)).sum()),
    )


def _keep(access: pd.DataFrame, column: str, found: pd.Series, dtype: str) -> pd.Series:
    """Pre-enriched values where present, the database's elsewhere."""
    if column not in access.columns:
        return found
    try:
        given = access[column].astype(dtype)
    except (TypeError, ValueError) as exc:
        raise SchemaError(f"pre-enriched values are not {dtype} ({exc})", column=column) from exc
    return given.fillna(found)


def _tenant_columns(
    tenant_ids: pd.Series | None, tenants: pd.DataFrame | None
) -> tuple[pd.Series, pd.Series]:
    """declared_country and reseller of each event's tenant (NA when unknown)."""
    index = tenant_ids.index if tenant_ids is not None else None
    out = []
    for column in ("declared_country", "reseller"):
        if tenant_ids is None or tenants is None or column not in tenants.columns:
            out.append(pd.Series(pd.NA, index=index, dtype="string"))
            continue
        if tenants["tenant_id"].duplicated().any():
            raise SchemaError("tenants table lists a tenant_id more than once", column="tenant_id")
        by_tenant = tenants.set_index("tenant_id")[column].astype("string")
        out.append(tenant_ids.map(by_tenant).astype("string"))
    return out[0], out[1]


def _hosting(asn: pd.Series, as_org: pd.Series, settings: Settings) -> np.ndarray:
    """AS number in the hosting list, or organisation containing a hosting keyword."""
    by_number = asn.isin(settings.hosting.asns).to_numpy(bool)
    codes, orgs = pd.factorize(as_org)
    names = pa.array(np.asarray(orgs, dtype=object), pa.string())
    org_hit = np.zeros(len(orgs), bool)
    for keyword in settings.hosting.org_keywords:
        org_hit |= pc.match_substring(names, keyword, ignore_case=True).to_numpy(
            zero_copy_only=False
        )
    by_org = np.append(org_hit, False)[np.where(codes < 0, len(orgs), codes)]
    return by_number | by_org
