"""Plan each tenant's jobs in time and place them on hosts.

Training jobs start in the working hours of the people who drive them, which is what the
time-of-day fingerprint later finds. Hosts are whole nodes of 8 GPUs shared over time between
tenants; a job keeps its GPUs through an idle tail after its work ends.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import numpy as np

from .workloads import (
    FINE_TUNING,
    GPU_MODELS,
    HPC,
    IDLE,
    INFERENCE,
    MINING,
    NOTEBOOK,
    PRETRAINING,
    RENDERING,
    THROTTLED,
    Job,
)

DAY, HOUR = 86400, 3600
GPUS_PER_HOST = 8


@dataclass(frozen=True)
class Window:
    """The simulated period [t0, t1) in epoch seconds, and the scrape interval."""

    t0: int
    t1: int
    interval: int

    @property
    def days(self) -> float:
        return (self.t1 - self.t0) / DAY


def work_days(window: Window, zone: str, hours: tuple[float, float] = (9.0, 18.0)) -> list[int]:
    """Local midnights (epoch seconds) of the weekdays whose working hours meet the window."""
    tz = ZoneInfo(zone)
    first = datetime.fromtimestamp(window.t0, UTC).astimezone(tz).date()
    out = []
    for d in range(int(np.ceil(window.days)) + 2):
        day = first + timedelta(days=d)
        midnight = int(datetime.combine(day, datetime.min.time(), tz).timestamp())
        if (
            day.weekday() < 5
            and midnight + hours[0] * HOUR < window.t1
            and midnight + hours[1] * HOUR > window.t0
        ):
            out.append(midnight)
    return out


def work_time(
    window: Window,
    zone: str,
    rng: np.random.Generator,
    first: bool = False,
    hours: tuple[float, float] = (9.0, 18.0),
) -> int:
    """A moment in local working hours of a weekday of the window (the first one, or any)."""
    days = work_days(window, zone, hours) or [window.t0 - window.t0 % DAY]
    midnight = days[0] if first else int(rng.choice(days))
    return int(midnight + rng.uniform(*hours) * HOUR)


def _model(rng: np.random.Generator, choices: tuple[str, ...], p: tuple[float, ...]):
    return GPU_MODELS[str(rng.choice(choices, p=p))]


def plan_jobs(
    tenant_id: str,
    workload: str,
    window: Window,
    zone: str,
    kubernetes: bool,
    rng: np.random.Generator,
) -> list[Job]:
    """The jobs of one workload family for one tenant (times may reach outside the window)."""
    w, days = window, window.days
    jobs: list[dict] = []
    if workload in (PRETRAINING, THROTTLED):
        model = _model(rng, ("h100", "a100"), (0.7, 0.3))
        hosts = int(rng.choice([2, 3, 4], p=[0.6, 0.3, 0.1]))
        start = (
            w.t0 - int(rng.uniform(0.2, 1.5) * DAY)
            if rng.random() < 0.5
            else work_time(w, zone, rng, first=days < 2)
        )
        jobs.append(
            dict(start=start, dur=rng.uniform(1.5, 5) * DAY, hosts=hosts, gph=8, model=model)
        )
    elif workload == RENDERING:
        model = _model(rng, ("l40s", "a100", "h100"), (0.6, 0.25, 0.15))
        for _ in range(max(1, int(round(days * rng.uniform(0.5, 1.2))))):
            jobs.append(
                dict(
                    start=work_time(w, zone, rng),
                    dur=rng.uniform(2, 14) * HOUR,
                    hosts=1,
                    gph=int(rng.choice([1, 2, 4, 8], p=[0.2, 0.3, 0.3, 0.2])),
                    model=model,
                )
            )
    elif workload in (FINE_TUNING, HPC):
        n = (
            max(1, int(round(days * rng.uniform(0.8, 1.6))))
            if workload == FINE_TUNING
            else max(1, int(round(days * 0.6)))
        )
        model = (
            _model(rng, ("h100", "a100", "l40s"), (0.4, 0.4, 0.2))
            if workload == FINE_TUNING
            else _model(rng, ("h100", "a100"), (0.5, 0.5))
        )
        for _ in range(n):
            if workload == FINE_TUNING:
                shape = dict(
                    hosts=1,
                    gph=int(rng.choice([1, 2, 4, 8], p=[0.15, 0.25, 0.3, 0.3])),
                    dur=rng.uniform(2, 10) * HOUR,
                )
            else:
                shape = dict(hosts=int(rng.choice([1, 2])), gph=8, dur=rng.uniform(6, 30) * HOUR)
            jobs.append(dict(start=work_time(w, zone, rng), model=model, **shape))
        if workload == FINE_TUNING and rng.random() < 0.6:  # two runs side by side
            first = jobs[0]
            jobs.append(
                dict(
                    first,
                    start=int(first["start"] + rng.uniform(0.1, 0.6) * first["dur"]),
                    gph=first["gph"],
                )
            )
    elif workload == INFERENCE:
        jobs.append(
            dict(
                start=w.t0 - int(rng.uniform(1, 20) * DAY),
                dur=40 * DAY,
                hosts=1,
                gph=int(rng.choice([1, 2, 4], p=[0.3, 0.4, 0.3])),
                model=_model(rng, ("l40s", "a100", "h100"), (0.5, 0.3, 0.2)),
            )
        )
    elif workload == NOTEBOOK:
        model = _model(rng, ("l40s", "a100", "h100"), (0.5, 0.3, 0.2))
        days_on = [d for d in work_days(w, zone, (8.5, 12)) if rng.random() < 0.8]
        for midnight in days_on or (work_days(w, zone, (8.5, 12)) or [w.t0 - w.t0 % DAY])[:1]:
            jobs.append(
                dict(
                    start=midnight + int(rng.uniform(8.5, 12) * HOUR),
                    dur=rng.uniform(2, 8) * HOUR,
                    hosts=1,
                    gph=int(rng.choice([1, 2])),
                    model=model,
                )
            )
    elif workload == MINING:
        jobs.append(
            dict(
                start=w.t0 - int(rng.uniform(1, 30) * DAY),
                dur=60 * DAY,
                hosts=1,
                gph=int(rng.choice([2, 4])),
                model=_model(rng, ("l40s", "a100"), (0.6, 0.4)),
            )
        )
    elif workload == IDLE:
        jobs.append(
            dict(
                start=w.t0 - int(rng.uniform(0, 2) * DAY)
                if rng.random() < 0.7
                else work_time(w, zone, rng),
                dur=30 * DAY,
                hosts=1,
                gph=int(rng.choice([4, 8])),
                model=_model(rng, ("h100", "a100"), (0.5, 0.5)),
            )
        )
    else:
        raise ValueError(f"unknown workload {workload!r}")
    out = []
    for spec in jobs:
        job_id = f"{workload.split('_')[0][:5]}-{rng.integers(16**7):07x}" if kubernetes else None
        out.append(
            Job(
                tenant_id,
                job_id,
                workload,
                int(spec["start"]),
                int(spec["start"] + spec["dur"]),
                int(rng.uniform(0.5, 1.5) * HOUR),
                spec["hosts"],
                spec["gph"],
                spec["model"],
                zone,
                first_gpu=int(rng.integers(0, GPUS_PER_HOST - spec["gph"] + 1)),
            )
        )
    return out


@dataclass
class HostPool:
    """Whole-node allocation: a host serves one job at a time, then returns to the pool."""

    free_at: dict[str, int] = field(default_factory=dict)
    counter: dict[str, int] = field(default_factory=dict)

    def allocate(self, jobs: list[Job]) -> None:
        """Give every job its hosts, in start order (jobs are updated in place)."""
        for job in sorted(jobs, key=lambda j: (j.start, j.tenant_id, j.job_id or "")):
            prefix = f"{job.model.short}-"
            free = sorted(
                h for h, t in self.free_at.items() if h.startswith(prefix) and t <= job.start
            )
            hosts = free[: job.n_hosts]
            while len(hosts) < job.n_hosts:
                k = self.counter.get(job.model.short, 0)
                self.counter[job.model.short] = k + 1
                hosts.append(f"{prefix}r{k // 16 + 1:02d}-n{k % 16 + 1:02d}")
            for h in hosts:
                self.free_at[h] = job.end + job.tail_s
            job.hosts = tuple(hosts)
