"""GPU metric shapes of the workload families, as DCGM-exporter would report them.

Each family turns a job and its scrape times into (T, G) arrays of the ten metrics below; the
shared :func:`render` adds the idle tail, the power model and realistic quantisation.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import numpy as np

METRICS = (
    "gpu_util",
    "sm_active",
    "tensor_active",
    "dram_active",
    "fb_used_mib",
    "power_w",
    "nvlink_tx_bps",
    "nvlink_rx_bps",
    "pcie_tx_bps",
    "pcie_rx_bps",
)

PRETRAINING, FINE_TUNING, INFERENCE = "llm_pretraining", "fine_tuning", "inference"
THROTTLED = "throttled_pretraining"  # duty-cycled to 50-75 % utilisation, lock-step kept
NOTEBOOK, HPC, MINING, IDLE = "notebook", "hpc_simulation", "crypto_mining", "idle_reservation"
RENDERING = "rendering"
WORKLOADS = (
    PRETRAINING,
    FINE_TUNING,
    THROTTLED,
    INFERENCE,
    NOTEBOOK,
    HPC,
    MINING,
    RENDERING,
    IDLE,
)
TRAINING = frozenset({PRETRAINING, FINE_TUNING, THROTTLED})


@dataclass(frozen=True)
class GpuModel:
    """One GPU product: frame buffer, power envelope and usable NVLink bandwidth per direction."""

    short: str
    name: str
    fb_mib: int
    reserved_mib: int
    tdp_w: float
    idle_w: float
    nvlink_bps: float

    @property
    def usable_mib(self) -> int:
        return self.fb_mib - self.reserved_mib


GPU_MODELS = {
    "h100": GpuModel("h100", "NVIDIA H100 80GB HBM3", 81559, 555, 700.0, 72.0, 450e9),
    "a100": GpuModel("a100", "NVIDIA A100-SXM4-80GB", 81920, 566, 400.0, 58.0, 300e9),
    "l40s": GpuModel("l40s", "NVIDIA L40S", 46068, 527, 350.0, 34.0, 0.0),
}


@dataclass
class Job:
    """One workload instance: work runs in [start, end); the GPUs stay allocated tail_s longer."""

    tenant_id: str
    job_id: str | None
    workload: str
    start: int
    end: int
    tail_s: int
    n_hosts: int
    gpus_per_host: int
    model: GpuModel
    zone: str
    hosts: tuple[str, ...] = ()
    first_gpu: int = 0
    sync: int | None = None  # parts of one job split across accounts share their step timing

    @property
    def n_gpus(self) -> int:
        return self.n_hosts * self.gpus_per_host


Arrays = dict[str, np.ndarray]


def _smooth(rng: np.random.Generator, n: int, width: int) -> np.ndarray:
    """Slowly varying unit-variance noise (moving average of white noise)."""
    width = max(1, min(width, n))
    white = rng.standard_normal(n + width - 1)
    return np.convolve(white, np.ones(width) / np.sqrt(width), mode="valid")


def _lockstep_states(
    job: Job,
    t: np.ndarray,
    rng: np.random.Generator,
    period_min: tuple,
    dip_s: tuple,
    restart_p: float,
) -> np.ndarray:
    """0 = working, 1 = periodic dip (checkpoint/eval/output), 2 = down, 3 = start-up ramp.

    The parts of a job split across accounts (`job.sync`) draw their timing from one shared
    generator, so they start, checkpoint and restart together."""
    if job.sync is not None:
        rng = np.random.default_rng([job.sync, 17])
    since = t - job.start
    period = rng.uniform(*period_min) * 60
    dip = rng.uniform(*dip_s)
    k = (since // period).astype(np.int64)
    late = rng.uniform(0, 0.1 * period, int(k.max()) + 2)[np.clip(k, 0, None)]  # step times vary
    pos = since - k * period - late
    state = np.where((pos >= period - dip - 0.1 * period) & (pos < period - 0.1 * period), 1, 0)
    state[since < rng.uniform(300, 900)] = 3
    if job.end - job.start > 12 * 3600 and rng.random() < restart_p:
        crash = job.start + rng.uniform(0.2, 0.8) * (job.end - job.start)
        down = rng.uniform(600, 2700)
        state[(t >= crash) & (t < crash + down)] = 2
        ramp = (t >= crash + down) & (t < crash + down + rng.uniform(300, 600))
        state[ramp] = 3
    return state


def _lockstep(
    job: Job,
    t: np.ndarray,
    rng: np.random.Generator,
    *,
    sm: tuple,
    tensor: tuple,
    dram: tuple,
    mem: tuple,
    nvlink: tuple,
    pcie: tuple,
    period_min: tuple,
    dip_s: tuple,
    restart_p: float,
    dip_pcie_tx: tuple,
    duty: float = 1.0,
) -> Arrays:
    """Data-parallel style work: every GPU of the job moves together. A `duty` below 1 is a
    job throttled on purpose (it sleeps between steps): every activity scales by it, the
    lock-step, the checkpoints and the memory stay."""
    n, g, m = len(t), job.n_gpus, job.model
    state = _lockstep_states(job, t, rng, period_min, dip_s, restart_p)[:, None]
    shared = np.random.default_rng([job.sync, 18]) if job.sync is not None else rng
    common = _smooth(shared, n, 15)[:, None]
    noise = rng.standard_normal((n, g))
    work, dip, down, ramp = state == 0, state == 1, state == 2, state == 3
    sm0, tc0, dr0 = rng.uniform(*sm), rng.uniform(*tensor), rng.uniform(*dram)
    sm_w = sm0 + 0.015 * common + 0.008 * noise
    low = rng.uniform(0.02, 0.2, (n, 1)) * (1 + 0.1 * noise)  # dips: together, not identical
    util = np.select(
        [work, dip, ramp],
        [
            duty * (99.3 - np.abs(0.9 * noise + 0.4 * common)),
            100 * low + 2 * noise,
            rng.uniform(10, 70, (n, g)),
        ],
        0.0,
    )
    smv = np.select([work, dip, ramp], [duty * sm_w, low, rng.uniform(0.1, 0.5, (n, g))], 0.0)
    tcv = np.select([work, ramp], [duty * (tc0 * sm_w / sm0 + 0.01 * noise), 0.05 * smv], 0.0)
    drv = np.select(
        [work, dip, ramp], [duty * (dr0 + 0.01 * common + 0.01 * noise), 0.3 * low, 0.2], 0.0
    )
    fb_g = np.full(g, rng.uniform(*mem) * m.usable_mib)  # replicas hold the same tensors
    fb_g[0] += rng.uniform(200, 900)  # rank 0 keeps a little more
    fb = np.where(down, 0.0, fb_g)
    fb = np.where(ramp, fb * rng.uniform(0.3, 0.9, (n, 1)), fb)
    bw = m.nvlink_bps * rng.uniform(*nvlink) if job.n_gpus > 1 else 0.0
    nv = np.select(
        [work, dip | ramp], [duty * bw * (1 + 0.06 * common + 0.04 * noise), bw * 0.01], 0.0
    )
    p0 = duty * rng.uniform(*pcie)
    pcie_rx = np.select([work, ramp], [p0 * (1 + 0.15 * noise), 3 * p0], 0.0)
    pcie_tx = np.select(
        [work, dip],
        [0.6 * p0 * (1 + 0.15 * noise), rng.uniform(*dip_pcie_tx) * (1 + 0.1 * noise)],
        0.0,
    )
    return {
        "gpu_util": util,
        "sm_active": smv,
        "tensor_active": tcv,
        "dram_active": drv,
        "fb_used_mib": fb,
        "nvlink_tx_bps": nv,
        "nvlink_rx_bps": nv * (1 + 0.01 * noise),
        "pcie_tx_bps": pcie_tx,
        "pcie_rx_bps": pcie_rx,
    }


def _pretraining(job: Job, t: np.ndarray, rng: np.random.Generator) -> Arrays:
    return _lockstep(
        job,
        t,
        rng,
        sm=(0.80, 0.93),
        tensor=(0.4, 0.7),
        dram=(0.3, 0.55),
        mem=(0.90, 0.975),
        nvlink=(0.15, 0.6),
        pcie=(2e9, 8e9),
        period_min=(30, 120),
        dip_s=(60, 300),
        restart_p=0.6,
        dip_pcie_tx=(8e9, 2e10),
    )


def _fine_tuning(job: Job, t: np.ndarray, rng: np.random.Generator) -> Arrays:
    return _lockstep(
        job,
        t,
        rng,
        sm=(0.65, 0.9),
        tensor=(0.3, 0.6),
        dram=(0.25, 0.5),
        mem=(0.70, 0.95),
        nvlink=(0.05, 0.3),
        pcie=(5e8, 4e9),
        period_min=(20, 60),
        dip_s=(90, 360),
        restart_p=0.0,
        dip_pcie_tx=(2e9, 8e9),
    )


def _throttled(job: Job, t: np.ndarray, rng: np.random.Generator) -> Arrays:
    """Pre-training held at 50-75 % utilisation by sleeping between steps (an evasion)."""
    return _lockstep(
        job,
        t,
        rng,
        sm=(0.80, 0.93),
        tensor=(0.4, 0.7),
        dram=(0.3, 0.55),
        mem=(0.85, 0.975),
        nvlink=(0.15, 0.6),
        pcie=(2e9, 8e9),
        period_min=(30, 120),
        dip_s=(60, 300),
        restart_p=0.3,
        dip_pcie_tx=(8e9, 2e10),
        duty=rng.uniform(0.5, 0.75),
    )


def _rendering(job: Job, t: np.ndarray, rng: np.random.Generator) -> Arrays:
    """3D rendering (Blender Cycles-like): busy shader cores, no tensor work, a short dip
    between frames on each GPU at its own pace, little memory, low power for its utilisation
    and little PCIe traffic once the scene is loaded."""
    n, g, m = len(t), job.n_gpus, job.model
    frame_s = rng.uniform(40, 400, g)  # each GPU renders its own frames
    phase = rng.uniform(0, 1, g) * frame_s
    between = ((t[:, None] + phase) % frame_s) < rng.uniform(3, 12)
    noise = rng.standard_normal((n, g))
    util = np.where(between, rng.uniform(5, 40, (n, g)), 97.5 + 1.5 * noise)
    sm = np.where(between, 0.1, rng.uniform(0.6, 0.9, g)) + 0.01 * noise
    pcie = np.where(between, 4e7, rng.uniform(2e6, 1.5e7)) * (1 + 0.2 * np.abs(noise))
    draw = rng.uniform(0.3, 0.5, g)  # share of the power envelope above idle
    return {
        "gpu_util": util,
        "sm_active": sm,
        "tensor_active": np.clip(rng.uniform(0.0, 0.02) + 0.003 * noise, 0, None),
        "dram_active": sm * rng.uniform(0.12, 0.3),
        "fb_used_mib": np.broadcast_to(rng.uniform(0.06, 0.35) * m.usable_mib, (n, g)),
        "nvlink_tx_bps": np.zeros((n, g)),
        "nvlink_rx_bps": np.zeros((n, g)),
        "pcie_tx_bps": pcie * 0.3,
        "pcie_rx_bps": pcie,
        "power_w": m.idle_w + (m.tdp_w - m.idle_w) * draw * util / 100 * (1 + 0.02 * noise),
    }


def _hpc(job: Job, t: np.ndarray, rng: np.random.Generator) -> Arrays:
    out = _lockstep(
        job,
        t,
        rng,
        sm=(0.7, 0.95),
        tensor=(0.0, 0.02),
        dram=(0.4, 0.8),
        mem=(0.4, 0.85),
        nvlink=(0.02, 0.15),
        pcie=(3e8, 3e9),
        period_min=(60, 180),
        dip_s=(60, 240),
        restart_p=0.2,
        dip_pcie_tx=(1e9, 5e9),
    )
    out["tensor_active"] = np.clip(out["tensor_active"], 0, 0.05)
    return out


def _local_hour(t: np.ndarray, zone: str) -> np.ndarray:
    """Local hour of day (fractional) of epoch seconds, using the zone's offset at t[0]."""
    local = datetime.fromtimestamp(int(t[0]), UTC).astimezone(ZoneInfo(zone))
    return ((t + local.utcoffset().total_seconds()) % 86400) / 3600  # type: ignore[union-attr]


def _inference(job: Job, t: np.ndarray, rng: np.random.Generator) -> Arrays:
    """Serving: diurnal in the users' zone, bursty, each GPU on its own."""
    n, g, m = len(t), job.n_gpus, job.model
    hour = _local_hour(t, job.zone)
    diurnal = 0.2 + 0.8 * np.clip(np.sin((hour - 7) / 16 * np.pi), 0, None) ** 1.5
    burst = np.exp(0.35 * _smooth(rng, n, 5))[:, None] * np.exp(0.3 * rng.standard_normal((n, g)))
    load = np.clip(diurnal[:, None] * burst * rng.uniform(0.6, 1.0, g), 0, 1.3)
    peak = rng.uniform(35, 75)
    util = np.clip(peak * load + rng.normal(0, 3, (n, g)), 0, 100)
    sm = util / 100 * rng.uniform(0.5, 0.8)
    tensor = sm * rng.uniform(0.05, 0.25)
    cache = 512 * np.floor(4 * np.maximum.accumulate(load, axis=0))  # allocator high-water
    fb = rng.uniform(0.3, 0.7) * m.usable_mib + rng.choice([0, 256, 512], g) + cache
    nv = m.nvlink_bps * 0.002 * load if g > 1 else np.zeros((n, g))
    pcie = rng.uniform(5e7, 5e8) * load
    return {
        "gpu_util": util,
        "sm_active": sm,
        "tensor_active": tensor,
        "dram_active": sm * 0.6,
        "fb_used_mib": fb,
        "nvlink_tx_bps": nv,
        "nvlink_rx_bps": nv,
        "pcie_tx_bps": pcie * 0.4,
        "pcie_rx_bps": pcie,
    }


def _notebook(job: Job, t: np.ndarray, rng: np.random.Generator) -> Arrays:
    """Interactive development: a few short bursts in long idle stretches."""
    n, g, m = len(t), job.n_gpus, job.model
    busy = np.zeros(n, dtype=bool)
    span = max(job.end - job.start, 1)
    starts = job.start + rng.uniform(0, span, rng.integers(2, 9))
    for s, d in zip(starts, rng.uniform(120, 1200, len(starts)), strict=True):
        busy |= (t >= s) & (t < s + d)
    b = busy[:, None]
    level = rng.uniform(0.3, 1.0, (n, 1))
    util = np.where(b, np.clip(100 * level + rng.normal(0, 5, (n, g)), 0, 100), 0.0)
    sm = np.where(b, level * rng.uniform(0.4, 0.8), 0.0)
    loaded = t[:, None] >= starts.min()
    fb = np.where(loaded, rng.uniform(0.1, 0.5) * m.usable_mib, rng.uniform(0, 600))
    pcie = np.where(b, rng.uniform(1e8, 2e9) * level, 1e5)
    return {
        "gpu_util": util,
        "sm_active": sm,
        "tensor_active": sm * rng.uniform(0.1, 0.6),
        "dram_active": sm * 0.4,
        "fb_used_mib": np.broadcast_to(fb, (n, g)),
        "nvlink_tx_bps": np.zeros((n, g)),
        "nvlink_rx_bps": np.zeros((n, g)),
        "pcie_tx_bps": pcie * 0.3,
        "pcie_rx_bps": pcie,
    }


def _mining(job: Job, t: np.ndarray, rng: np.random.Generator) -> Arrays:
    """Flat out, tiny memory, no tensor cores, no NVLink, power capped and steady."""
    n, g = len(t), job.n_gpus
    noise = rng.standard_normal((n, g))
    return {
        "gpu_util": np.clip(99.7 + 0.4 * noise, 0, 100),
        "sm_active": 0.975 + 0.01 * noise,
        "tensor_active": np.zeros((n, g)),
        "dram_active": rng.uniform(0.35, 0.6, g) + 0.005 * noise,
        "fb_used_mib": np.broadcast_to(rng.uniform(2000, 5000, g), (n, g)),
        "nvlink_tx_bps": np.zeros((n, g)),
        "nvlink_rx_bps": np.zeros((n, g)),
        "pcie_tx_bps": np.full((n, g), 2e5) * (1 + 0.1 * noise),
        "pcie_rx_bps": np.full((n, g), 1e5) * (1 + 0.1 * noise),
        "power_w": job.model.tdp_w * rng.uniform(0.6, 0.75, g) * (1 + 0.004 * noise),
    }


def _idle(job: Job, t: np.ndarray, rng: np.random.Generator) -> Arrays:
    n, g = len(t), job.n_gpus
    zeros = np.zeros((n, g))
    return {
        "gpu_util": zeros,
        "sm_active": zeros,
        "tensor_active": zeros,
        "dram_active": zeros,
        "fb_used_mib": np.broadcast_to(rng.choice([0.0, 0.0, 424.0], g), (n, g)),
        "nvlink_tx_bps": zeros,
        "nvlink_rx_bps": zeros,
        "pcie_tx_bps": np.full((n, g), 1.5e4),
        "pcie_rx_bps": np.full((n, g), 1.2e4),
    }


FAMILIES: dict[str, Callable[[Job, np.ndarray, np.random.Generator], Arrays]] = {
    PRETRAINING: _pretraining,
    FINE_TUNING: _fine_tuning,
    THROTTLED: _throttled,
    RENDERING: _rendering,
    INFERENCE: _inference,
    NOTEBOOK: _notebook,
    HPC: _hpc,
    MINING: _mining,
    IDLE: _idle,
}


def render(job: Job, t: np.ndarray, rng: np.random.Generator) -> Arrays:
    """Metrics of ``job`` at scrape times ``t`` (seconds), work then idle tail, quantised."""
    work = t < job.end
    m = job.model
    out = {k: np.zeros((len(t), job.n_gpus)) for k in METRICS}
    if work.any():
        arrays = FAMILIES[job.workload](job, t[work], rng)
        for k, v in arrays.items():
            out[k][work] = v
        if "power_w" not in arrays:
            a = {
                k: np.clip(arrays[k], 0, None)
                for k in ("gpu_util", "sm_active", "tensor_active", "dram_active")
            }
            load = np.clip(
                0.15 * a["gpu_util"] / 100
                + 0.45 * a["sm_active"]
                + 0.35 * a["tensor_active"]
                + 0.15 * a["dram_active"],
                0,
                1,
            )
            out["power_w"][work] = m.idle_w + (m.tdp_w - m.idle_w) * load
    idle_noise = rng.normal(0, 0.02 * m.idle_w, (int((~work).sum()), job.n_gpus))
    out["power_w"][~work] = m.idle_w + idle_noise
    out["power_w"][work] += rng.normal(0, 0.01 * m.tdp_w, (int(work.sum()), job.n_gpus))
    return quantise(out, m)


def quantise(arrays: Arrays, model: GpuModel) -> Arrays:
    """Clip to physical ranges and round as DCGM-exporter prints them."""
    out = {"gpu_util": np.clip(np.round(arrays["gpu_util"]), 0, 100)}
    for k in ("sm_active", "tensor_active", "dram_active"):
        out[k] = np.round(np.clip(arrays[k], 0, 1), 3)
    fb = np.clip(np.round(arrays["fb_used_mib"]), 0, model.usable_mib)
    out["fb_used_mib"], out["fb_free_mib"] = fb, model.usable_mib - fb
    out["power_w"] = np.round(np.clip(arrays["power_w"], 0, 1.05 * model.tdp_w))
    for k in ("nvlink_tx_bps", "nvlink_rx_bps", "pcie_tx_bps", "pcie_rx_bps"):
        out[k] = _significant(np.clip(arrays[k], 0, None), 2)
    return {k: v.astype(np.float32) for k, v in out.items()}


def _significant(x: np.ndarray, digits: int) -> np.ndarray:
    """Round to a few significant digits (rates are derived from counters, not exact)."""
    with np.errstate(divide="ignore"):
        scale = 10.0 ** (np.floor(np.log10(np.where(x > 0, x, 1))) - digits + 1)
    return np.round(x / scale) * scale
