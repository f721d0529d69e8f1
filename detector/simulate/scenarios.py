"""The scenario mix: which origin family runs which workloads, and how many tenants of each.

A job is restricted training exactly when its workload is training (pretraining or fine-tuning)
and its tenant's drivers sit in a country of concern (directly, through VPN exits or behind a
reseller). Benign decoys share one half of that signature each.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

import numpy as np

from ..errors import ConfigError
from .origins import (
    ALLIED,
    APAC_CLOUD,
    DOMESTIC,
    EVENING,
    MULTINATIONAL,
    R_DIRECT,
    R_VPN,
    RESELLER,
    RESTRICTED_ORIGINS,
    SPLIT,
)
from .workloads import (
    FINE_TUNING,
    HPC,
    IDLE,
    INFERENCE,
    MINING,
    NOTEBOOK,
    PRETRAINING,
    RENDERING,
    THROTTLED,
    TRAINING,
)


@dataclass(frozen=True)
class Scenario:
    """A kind of tenant: its origin family, its workloads (main first) and its share."""

    name: str
    origin: str
    workloads: tuple[str, ...]
    weight: float
    traveller: bool = False
    min_tenants: int = 1  # a split crew needs several accounts

    @property
    def restricted_training(self) -> bool:
        return self.origin in RESTRICTED_ORIGINS and self.workloads[0] in TRAINING


SCENARIOS = (
    # Restricted training: the positive class.
    Scenario("restricted_direct_pretraining", R_DIRECT, (PRETRAINING,), 1.0),
    Scenario("restricted_vpn_pretraining", R_VPN, (PRETRAINING,), 1.0),
    Scenario("reseller_pretraining", RESELLER, (PRETRAINING,), 0.5),
    Scenario("restricted_direct_finetuning", R_DIRECT, (FINE_TUNING,), 1.0),
    Scenario("restricted_vpn_finetuning", R_VPN, (FINE_TUNING, NOTEBOOK), 1.0),
    Scenario("reseller_finetuning", RESELLER, (FINE_TUNING,), 0.7),
    Scenario("restricted_throttled_pretraining", R_VPN, (THROTTLED,), 0.8),
    Scenario("restricted_split_pretraining", SPLIT, (PRETRAINING,), 1.2, min_tenants=3),
    # Benign: the same training from elsewhere, and look-alikes of the origin tells.
    Scenario("domestic_pretraining", DOMESTIC, (PRETRAINING,), 1.5),
    Scenario("allied_pretraining", ALLIED, (PRETRAINING,), 1.0),
    Scenario("domestic_finetuning", DOMESTIC, (FINE_TUNING, NOTEBOOK), 2.5),
    Scenario("allied_finetuning", ALLIED, (FINE_TUNING,), 2.0),
    Scenario("us_evening_cloud_finetuning", EVENING, (FINE_TUNING,), 1.5),
    Scenario("multinational_finetuning", MULTINATIONAL, (FINE_TUNING,), 1.2),
    Scenario("domestic_traveller_finetuning", DOMESTIC, (FINE_TUNING,), 0.8, traveller=True),
    Scenario("allied_traveller_finetuning", ALLIED, (FINE_TUNING,), 0.8, traveller=True),
    Scenario("apac_cloud_finetuning", APAC_CLOUD, (FINE_TUNING,), 1.2),
    # Benign: other work, from anywhere.
    Scenario("domestic_inference", DOMESTIC, (INFERENCE,), 2.5),
    Scenario("allied_inference", ALLIED, (INFERENCE,), 1.5),
    Scenario("domestic_hpc", DOMESTIC, (HPC,), 1.5),
    Scenario("domestic_mining", DOMESTIC, (MINING,), 1.0),
    Scenario("domestic_rendering", DOMESTIC, (RENDERING,), 1.2),
    Scenario("domestic_notebook", DOMESTIC, (NOTEBOOK,), 2.0),
    Scenario("domestic_idle_reservation", DOMESTIC, (IDLE,), 1.0),
    Scenario("restricted_direct_inference", R_DIRECT, (INFERENCE,), 1.0),
    Scenario("restricted_vpn_notebook", R_VPN, (NOTEBOOK,), 1.0),
    Scenario("restricted_direct_mining", R_DIRECT, (MINING,), 0.6),
    Scenario("restricted_vpn_rendering", R_VPN, (RENDERING,), 0.6),
    Scenario("restricted_direct_hpc", R_DIRECT, (HPC,), 0.6),
)
BY_NAME = {s.name: s for s in SCENARIOS}
# Evasion families, by the name `gpuwatch benchmark --holdout` takes.
EVASIONS = {
    "throttled": ("restricted_throttled_pretraining",),
    "split": ("restricted_split_pretraining",),
    "vpn": ("restricted_vpn_pretraining", "restricted_vpn_finetuning"),
    "reseller": ("reseller_pretraining", "reseller_finetuning"),
}
# Small sets take scenarios in this order: restricted training and decoys interleaved.
_SMALL_ORDER = (
    "restricted_vpn_pretraining",
    "domestic_pretraining",
    "domestic_inference",
    "restricted_direct_finetuning",
    "us_evening_cloud_finetuning",
    "domestic_hpc",
    "restricted_throttled_pretraining",
    "multinational_finetuning",
    "domestic_rendering",
    "allied_traveller_finetuning",
    "restricted_direct_inference",
    "reseller_finetuning",
    "apac_cloud_finetuning",
    "domestic_mining",
    "domestic_notebook",
    "restricted_split_pretraining",
    "domestic_idle_reservation",
    "restricted_vpn_notebook",
    "restricted_direct_pretraining",
    "allied_inference",
    "domestic_finetuning",
    "allied_pretraining",
    "restricted_vpn_finetuning",
    "domestic_traveller_finetuning",
    "allied_finetuning",
    "restricted_direct_mining",
    "reseller_pretraining",
    "restricted_vpn_rendering",
    "restricted_direct_hpc",
)
SPLIT_ACCOUNTS = (3, 4)  # accounts per split crew


def scenario_counts(n_tenants: int, without: Collection[str] = ()) -> dict[str, int]:
    """Tenants per scenario: one of each, the rest proportional to weight (largest remainder);
    below one per scenario, the first ``n_tenants`` of an interleaved order. Scenarios named in
    `without` get none."""
    unknown = set(without) - set(BY_NAME)
    if unknown:
        raise ConfigError(
            f"unknown scenario(s) {sorted(unknown)}; expected some of {sorted(BY_NAME)}"
        )
    scenarios = [s for s in SCENARIOS if s.name not in without]
    least = np.array([s.min_tenants for s in scenarios])
    if n_tenants < least.sum():
        counts: dict[str, int] = {}
        for name in (n for n in _SMALL_ORDER if n not in without):
            take = min(BY_NAME[name].min_tenants, n_tenants - sum(counts.values()))
            if take == BY_NAME[name].min_tenants:
                counts[name] = take
        return counts
    w = np.array([s.weight for s in scenarios])
    quota = n_tenants * w / w.sum()
    base, frac = np.floor(quota).astype(int), quota - np.floor(quota)
    base, frac = np.maximum(base, least), np.where(quota < least, -1.0, frac)
    base[np.argsort(-frac, kind="stable")[: max(n_tenants - base.sum(), 0)]] += 1
    while base.sum() > n_tenants:
        base[int(np.argmax(base - least))] -= 1
    return {s.name: int(c) for s, c in zip(scenarios, base, strict=True) if c}


_WORDS = (
    "Aurora",
    "Boreal",
    "Cobalt",
    "Delta",
    "Ember",
    "Fathom",
    "Granite",
    "Helix",
    "Indigo",
    "Juniper",
    "Kestrel",
    "Lumen",
    "Meridian",
    "Nimbus",
    "Orbit",
    "Pylon",
    "Quartz",
    "Radiant",
    "Sierra",
    "Tidal",
    "Umber",
    "Vector",
    "Willow",
    "Xenon",
    "Yarrow",
    "Zenith",
)
_KINDS = (
    "Analytics",
    "Labs",
    "Robotics",
    "Systems",
    "Data",
    "AI",
    "Research",
    "Dynamics",
    "Networks",
    "Bio",
    "Media",
    "Compute",
)
_SUFFIX = {
    "US": "Inc.",
    "DE": "GmbH",
    "JP": "K.K.",
    "KR": "Co., Ltd.",
    "GB": "Ltd",
    "IN": "Pvt Ltd",
    "SG": "Pte. Ltd.",
    "FR": "SAS",
    "NL": "B.V.",
    "CN": "Co., Ltd.",
    "HK": "Limited",
    "RU": "LLC",
    "IR": "Co.",
    "AE": "FZ-LLC",
}


def org_name(country: str, rng: np.random.Generator) -> str:
    return f"{rng.choice(_WORDS)} {rng.choice(_KINDS)} {_SUFFIX.get(country, 'Ltd')}"
