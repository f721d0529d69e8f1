"""Generate a whole seeded dataset: tenants, their jobs' telemetry, access logs and the truth.

The same arguments give byte-identical files: every random draw comes from generators spawned
from one ``numpy`` seed sequence, in a fixed order, and the writers embed no clock time.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Collection
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from ..errors import ConfigError
from ..schema import TELEMETRY
from .ips import load_ip_pool
from .jobs import DAY, HostPool, Window, plan_jobs
from .messiness import make_messy
from .origins import RESTRICTED_ORIGINS, SPLIT, Origin, access_events, make_origin
from .scenarios import BY_NAME, SPLIT_ACCOUNTS, Scenario, org_name, scenario_counts
from .workloads import METRICS, MINING, PRETRAINING, TRAINING, Job, render

FILES = ("telemetry.parquet", "access.jsonl.gz", "tenants.csv", "truth.csv")


@dataclass
class _Tenant:
    tenant_id: str
    scenario: Scenario
    origin: Origin
    jobs: list[Job]
    rng: np.random.Generator


def simulate(
    out_dir: Path,
    n_tenants: int,
    days: float,
    seed: int,
    interval_s: int = 60,
    start: str = "2026-10-05",
    without: Collection[str] = (),
) -> dict:
    """Write telemetry.parquet, access.jsonl.gz, tenants.csv and truth.csv into ``out_dir``;
    return counts per file, tenants per scenario and what the messiness did. Scenarios named in
    `without` are left out (a fleet to train on without an evasion family)."""
    window = _window(n_tenants, days, interval_s, start)
    tenants = _tenants(n_tenants, window, seed, without)
    jobs = [j for t in tenants for j in t.jobs]
    HostPool().allocate(jobs)
    telemetry, mess = _telemetry(tenants, window, np.random.default_rng([seed, 1]))
    access = pd.concat(
        [access_events(t.tenant_id, t.origin, t.jobs, window, t.rng) for t in tenants],
        ignore_index=True,
    )
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    pq.write_table(
        telemetry, out_dir / "telemetry.parquet", compression="zstd", compression_level=15
    )
    _write_access(access, out_dir / "access.jsonl.gz")
    registry = _registry(tenants, window)
    registry.to_csv(out_dir / "tenants.csv", index=False, lineterminator="\n")
    truth = _truth(tenants, window)
    truth.to_csv(out_dir / "truth.csv", index=False, lineterminator="\n")
    counts: dict[str, int] = {}
    for t in tenants:
        counts[t.scenario.name] = counts.get(t.scenario.name, 0) + 1
    return {
        "out_dir": str(out_dir),
        "rows": {
            "telemetry.parquet": telemetry.num_rows,
            "access.jsonl.gz": len(access),
            "tenants.csv": len(registry),
            "truth.csv": len(truth),
        },
        "bytes": {f: (out_dir / f).stat().st_size for f in FILES},
        "scenarios": dict(sorted(counts.items())),
        "restricted_training_tenants": sum(t.scenario.restricted_training for t in tenants),
        "restricted_training_jobs": int((truth["restricted_training"] == "true").sum()),
        "messiness": mess,
    }


def _window(n_tenants: int, days: float, interval_s: int, start: str) -> Window:
    if n_tenants < 1:
        raise ConfigError(f"--tenants must be at least 1, got {n_tenants}")
    if not 0 < days <= 366:
        raise ConfigError(f"--days must be within (0, 366], got {days}")
    if not 1 <= interval_s <= 3600:
        raise ConfigError(f"--interval must be 1-3600 seconds, got {interval_s}")
    try:
        t0 = int(datetime.strptime(start, "%Y-%m-%d").replace(tzinfo=UTC).timestamp())
    except ValueError as exc:
        raise ConfigError(f"--start must be a date YYYY-MM-DD, got {start!r}") from exc
    return Window(t0, t0 + int(round(days * DAY)), int(interval_s))


def _tenants(
    n_tenants: int, window: Window, seed: int, without: Collection[str] = ()
) -> list[_Tenant]:
    master = np.random.default_rng([seed, 0])
    names = [n for n, c in scenario_counts(n_tenants, without).items() for _ in range(c)]
    names = [names[i] for i in master.permutation(len(names))]
    ids = master.choice(16**6, n_tenants, replace=False)
    pool = load_ip_pool()
    out = []
    for i, name in enumerate(names):
        rng = np.random.default_rng([seed, 2, i])
        scenario, tenant_id = BY_NAME[name], f"tn-{ids[i]:06x}"
        if scenario.origin == SPLIT:
            continue  # below, crew by crew
        origin = make_origin(scenario.origin, pool, rng, scenario.traveller)
        kubernetes = rng.random() < (0.1 if MINING in scenario.workloads else 0.65)
        jobs = [
            j
            for w in scenario.workloads
            for j in plan_jobs(tenant_id, w, window, origin.zone, kubernetes, rng)
            if j.start < window.t1 and j.end > window.t0
        ]
        out.append(_Tenant(tenant_id, scenario, origin, jobs, rng))
    split = [i for i, name in enumerate(names) if BY_NAME[name].origin == SPLIT]
    for c, members in enumerate(_crews(split)):
        out += _split_crew(
            members, names, ids, window, pool, np.random.default_rng([seed, 3, c]), seed
        )
    return sorted(out, key=lambda t: t.tenant_id)


def _crews(members: list[int]) -> list[list[int]]:
    """Accounts grouped into crews of SPLIT_ACCOUNTS (a last short group joins the previous)."""
    size = SPLIT_ACCOUNTS[-1]
    crews = [members[i : i + size] for i in range(0, len(members), size)]
    if len(crews) > 1 and len(crews[-1]) < SPLIT_ACCOUNTS[0]:
        short = crews.pop()
        crews[-1] += short
    return crews


def _split_crew(
    members: list[int],
    names: list[str],
    ids: np.ndarray,
    window: Window,
    pool: pd.DataFrame,
    crng: np.random.Generator,
    seed: int,
) -> list[_Tenant]:
    """One pre-training job cut into parts, one per account, that run in step."""
    crew = make_origin(SPLIT, pool, crng)
    parent = plan_jobs("", PRETRAINING, window, crew.zone, False, crng)[0]
    sync = int(crng.integers(2**31))
    out = []
    for i in members:
        rng = np.random.default_rng([seed, 2, i])
        tenant_id = f"tn-{ids[i]:06x}"
        origin = make_origin(SPLIT, pool, rng, crew=crew)
        kubernetes = rng.random() < 0.65
        part = replace(
            parent,
            tenant_id=tenant_id,
            job_id=f"llm-{rng.integers(16**7):07x}" if kubernetes else None,
            start=parent.start + int(rng.uniform(0, 90)),
            n_hosts=int(rng.choice([1, 2])),
            first_gpu=0,
            sync=sync,
        )
        jobs = [part] if part.start < window.t1 and part.end > window.t0 else []
        out.append(_Tenant(tenant_id, BY_NAME[names[i]], origin, jobs, rng))
    return out


def _job_frame(
    job: Job, code: int, hosts: dict[str, int], window: Window, rng: np.random.Generator
) -> pd.DataFrame:
    lo, hi = max(job.start, window.t0), min(job.end + job.tail_s, window.t1)
    k = np.arange(-(-(lo - window.t0) // window.interval), -(-(hi - window.t0) // window.interval))
    t = window.t0 + k * window.interval
    arrays = render(job, t, rng)
    col = np.arange(job.n_gpus)
    host = np.array([hosts[h] for h in job.hosts])[col // job.gpus_per_host]
    frame = {
        "timestamp": np.repeat(t, job.n_gpus),
        "host": np.tile(host, len(t)),
        "gpu": np.tile(job.first_gpu + col % job.gpus_per_host, len(t)),
        "job": np.full(len(t) * job.n_gpus, code),
    }
    frame.update({m: arrays[m].ravel() for m in METRICS + ("fb_free_mib",)})
    return pd.DataFrame(frame)


def _telemetry(
    tenants: list[_Tenant], window: Window, rng: np.random.Generator
) -> tuple[pa.Table, dict[str, int]]:
    jobs = [j for t in tenants for j in t.jobs]
    host_names = sorted({h for j in jobs for h in j.hosts})
    hosts = {h: i for i, h in enumerate(host_names)}
    frames, code = [], 0
    for t in tenants:
        for job in t.jobs:
            frames.append(_job_frame(job, code, hosts, window, t.rng))
            code += 1
    df, mess = make_messy(pd.concat(frames, ignore_index=True), rng)
    tenant_ids = sorted({j.tenant_id for j in jobs})
    tcode = np.array([tenant_ids.index(j.tenant_id) for j in jobs])[df["job"].to_numpy()]
    order = np.lexsort(
        (df["gpu"].to_numpy(), df["host"].to_numpy(), tcode, df["timestamp"].to_numpy())
    )
    df, tcode = df.iloc[order], tcode[order]
    jcode = df["job"].to_numpy()

    def dictionary(codes: np.ndarray, values: list) -> pa.Array:
        return pa.DictionaryArray.from_arrays(
            pa.array(codes, pa.int32()), pa.array(values, pa.string())
        ).cast(pa.string())

    columns = {
        "timestamp": pa.array(df["timestamp"].to_numpy() * 1_000_000, pa.timestamp("us", "UTC")),
        "tenant_id": dictionary(tcode, tenant_ids),
        "host": dictionary(df["host"].to_numpy(), host_names),
        "gpu": dictionary(df["gpu"].to_numpy(), [str(i) for i in range(8)]),
    }
    for m in (
        "gpu_util",
        "sm_active",
        "tensor_active",
        "dram_active",
        "fb_used_mib",
        "fb_free_mib",
        "power_w",
        "nvlink_tx_bps",
        "nvlink_rx_bps",
        "pcie_tx_bps",
        "pcie_rx_bps",
    ):
        columns[m] = pa.array(df[m].to_numpy(np.float32), pa.float32(), from_pandas=True)
    models = sorted({j.model.name for j in jobs})
    columns["model_name"] = dictionary(
        np.array([models.index(j.model.name) for j in jobs])[jcode], models
    )
    job_ids = [j.job_id for j in jobs]
    columns["job_id"] = pa.array([job_ids[c] for c in range(len(jobs))], pa.string()).take(
        pa.array(jcode)
    )
    # The simulated exporter sends dcgm-exporter's default counters: no FP64 pipe
    columns["fp64_active"] = pa.nulls(len(df), pa.float32())
    return pa.table({name: columns[name] for name in TELEMETRY.names}), mess


def _iso(seconds: np.ndarray | pd.Series) -> pd.Series:
    return pd.Series(
        pd.to_datetime(np.asarray(seconds, dtype=np.int64), unit="s", utc=True)
    ).dt.strftime("%Y-%m-%dT%H:%M:%SZ")


def _write_access(access: pd.DataFrame, path: Path) -> None:
    access = access.assign(timestamp=np.floor(access["timestamp"]).astype(np.int64))
    access = access.sort_values(
        ["timestamp", "tenant_id", "principal", "event"], kind="stable", ignore_index=True
    )
    access["timestamp"] = _iso(access["timestamp"])
    for col in ("bytes_in", "bytes_out"):
        access[col] = access[col].astype(np.int64)
    records = access.to_dict(orient="records")
    text = "".join(json.dumps(r, separators=(",", ":")) + "\n" for r in records)
    with open(path, "wb") as raw, gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as fh:
        fh.write(text.encode())


def _registry(tenants: list[_Tenant], window: Window) -> pd.DataFrame:
    rows = []
    for t in tenants:
        newer = t.origin.family in RESTRICTED_ORIGINS  # accounts opened recently
        age = t.rng.uniform(5, 300 if newer else 1200) * DAY
        rows.append(
            {
                "tenant_id": t.tenant_id,
                "declared_country": t.origin.declared_country,
                "org_name": org_name(t.origin.declared_country, t.rng),
                "created_at": int(window.t0 - age),
                "billing_country": t.origin.billing_country,
                "reseller": t.origin.reseller,
                "billing_id": t.origin.billing_id,
            }
        )
    out = pd.DataFrame(rows)
    out["created_at"] = _iso(out["created_at"])
    return out


def _truth(tenants: list[_Tenant], window: Window) -> pd.DataFrame:
    rows = []
    for t in tenants:
        for j in t.jobs:
            restricted = t.origin.family in RESTRICTED_ORIGINS and j.workload in TRAINING
            rows.append(
                {
                    "tenant_id": t.tenant_id,
                    "start": max(j.start, window.t0),
                    "end": min(j.end, window.t1),
                    "scenario": t.scenario.name,
                    "workload": j.workload,
                    "origin": t.origin.family,
                    "restricted_training": "true" if restricted else "false",
                    "job_id": j.job_id or "",
                    "n_gpus": j.n_gpus,
                    "hosts": " ".join(j.hosts),
                }
            )
    out = pd.DataFrame(rows).sort_values(
        ["tenant_id", "start", "job_id"], kind="stable", ignore_index=True
    )
    out["start"], out["end"] = _iso(out["start"]), _iso(out["end"])
    return out
