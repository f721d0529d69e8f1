"""The scenario mix: which origin family runs which workloads, and how many tenants of each.

A job is restricted training exactly when its workload is training (pretraining or fine-tuning)
and its tenant's drivers sit in a country of concern (directly, through VPN exits or behind a
reseller). Benign decoys share one half of that signature each.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .origins import ALLIED, DOMESTIC, R_DIRECT, R_VPN, RESELLER, RESTRICTED_ORIGINS
from .workloads import (
    FINE_TUNING,
    HPC,
    IDLE,
    INFERENCE,
    MINING,
    NOTEBOOK,
    PRETRAINING,
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

    @property
    def restricted_training(self) -> bool:
        return self.origin in RESTRICTED_ORIGINS and self.workloads[0] in TRAINING


SCENARIOS = (
    Scenario("restricted_direct_pretraining", R_DIRECT, (PRETRAINING,), 1.0),
    Scenario("restricted_vpn_pretraining", R_VPN, (PRETRAINING,), 1.0),
    Scenario("reseller_pretraining", RESELLER, (PRETRAINING,), 0.5),
    Scenario("restricted_direct_finetuning", R_DIRECT, (FINE_TUNING,), 1.0),
    Scenario("restricted_vpn_finetuning", R_VPN, (FINE_TUNING, NOTEBOOK), 1.5),
    Scenario("reseller_finetuning", RESELLER, (FINE_TUNING,), 1.0),
    Scenario("domestic_pretraining", DOMESTIC, (PRETRAINING,), 2.0),
    Scenario("domestic_finetuning", DOMESTIC, (FINE_TUNING, NOTEBOOK), 3.0),
    Scenario("domestic_inference", DOMESTIC, (INFERENCE,), 4.0),
    Scenario("domestic_hpc", DOMESTIC, (HPC,), 2.0),
    Scenario("domestic_mining", DOMESTIC, (MINING,), 2.0),
    Scenario("domestic_notebook", DOMESTIC, (NOTEBOOK,), 3.0),
    Scenario("domestic_idle_reservation", DOMESTIC, (IDLE,), 2.0),
    Scenario("allied_finetuning", ALLIED, (FINE_TUNING,), 2.5),
    Scenario("allied_inference", ALLIED, (INFERENCE,), 2.0),
    Scenario("allied_traveller_finetuning", ALLIED, (FINE_TUNING,), 1.0, traveller=True),
    Scenario("restricted_direct_inference", R_DIRECT, (INFERENCE,), 1.5),
    Scenario("restricted_vpn_notebook", R_VPN, (NOTEBOOK,), 1.5),
)
BY_NAME = {s.name: s for s in SCENARIOS}
# Small sets take scenarios in this order: restricted training and decoys interleaved.
_SMALL_ORDER = (
    "restricted_vpn_pretraining",
    "domestic_pretraining",
    "domestic_inference",
    "restricted_direct_finetuning",
    "domestic_hpc",
    "domestic_mining",
    "allied_traveller_finetuning",
    "restricted_direct_inference",
    "reseller_finetuning",
    "domestic_notebook",
    "domestic_idle_reservation",
    "restricted_vpn_notebook",
    "restricted_direct_pretraining",
    "allied_inference",
    "domestic_finetuning",
    "restricted_vpn_finetuning",
    "allied_finetuning",
    "reseller_pretraining",
)


def scenario_counts(n_tenants: int) -> dict[str, int]:
    """Tenants per scenario: one of each, the rest proportional to weight (largest remainder);
    below one per scenario, the first ``n_tenants`` of an interleaved order."""
    if n_tenants < len(SCENARIOS):
        return {name: 1 for name in _SMALL_ORDER[:n_tenants]}
    w = np.array([s.weight for s in SCENARIOS])
    quota = n_tenants * w / w.sum()
    base, frac = np.floor(quota).astype(int), quota - np.floor(quota)
    base, frac = np.maximum(base, 1), np.where(quota < 1, -1.0, frac)
    base[np.argsort(-frac, kind="stable")[: max(n_tenants - base.sum(), 0)]] += 1
    while base.sum() > n_tenants:
        base[int(np.argmax(base))] -= 1
    return {s.name: int(c) for s, c in zip(SCENARIOS, base, strict=True) if c}


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
