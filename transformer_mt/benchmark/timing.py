"""Timing jobs side by side, the machine's matmul peak sampled alongside them, and CPU profiles."""
from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import torch

from .records import MatmulFigure, Profile, Spread

GEMM_OPS = ("aten::mm", "aten::addmm", "aten::_addmm_activation")  # the linear layers' matrix products


@dataclass
class Job:
    """What one system times, as its steps (a training step or a decoded batch each), so that systems can
    take turns step by step."""
    steps: list[Callable[[], object]]

    def __call__(self) -> None:
        for step in self.steps:
            step()


def side_by_side(jobs: dict[str, Job], warmup: int, repeats: int) -> dict[str, list[float]]:
    """Seconds of every job in each of `repeats` rounds. Within a round the jobs take turns step by step
    (step i of each, then step i + 1), so that a slow spell of a shared machine, which comes and goes
    within seconds, hits all alike (docs/benchmark-runs.md shows what taking turns job by job did);
    each turn starts one job further on, so that no job always runs right after the same other one
    (whose caches and freed memory it inherits)."""
    for job in jobs.values():
        for _ in range(warmup):
            job()
    names, turns = list(jobs), max((len(job.steps) for job in jobs.values()), default=0)
    seconds: dict[str, list[float]] = {name: [] for name in names}
    for round_ in range(repeats if names else 0):
        totals = dict.fromkeys(names, 0.0)
        for i in range(turns):
            first = (round_ + i) % len(names)
            for name in names[first:] + names[:first]:
                if i < len(jobs[name].steps):
                    started = time.perf_counter()
                    jobs[name].steps[i]()
                    totals[name] += time.perf_counter() - started
        for name in names:
            seconds[name].append(totals[name])
    return seconds


def sync(device: torch.device) -> None:
    if device.type == "cuda":  # a step is timed when its kernels are done, not when they are queued
        torch.cuda.synchronize()


class MatmulPeak:
    """The machine's dense matmul throughput, timed at the start and again as one more job taking turns
    with the systems' training and decoding repetitions: a shared machine's speed drifts within
    minutes, and MFU and the decoding floors divide by this figure, so it is sampled at the same
    moments as the systems."""

    def __init__(self, size: int, dtype: torch.dtype, device: torch.device):
        a, b = (torch.randn(size, size, device=device, dtype=dtype) for _ in range(2))
        self.job = Job([lambda: (a @ b, sync(device))])
        self.flops, self.seconds = 2 * size**3, []

    def measure(self, repeats: int) -> None:
        self.alongside({}, warmup=2, repeats=repeats)

    def alongside(self, jobs: dict[str, Job], warmup: int, repeats: int) -> dict[str, list[float]]:
        """side_by_side(jobs) with the matmul taking its turn too; its samples are kept here."""
        timed = side_by_side({"matmul": self.job, **jobs}, warmup, repeats)
        self.seconds += timed.pop("matmul")
        return timed

    def gflops(self) -> MatmulFigure:
        rate = Spread.of(self.seconds).rate(self.flops / 1e9)
        return MatmulFigure(rate.min, rate.median, rate.max, samples=len(self.seconds))


def profile_job(job: Callable[[], None], top: int = 6) -> Profile:
    """One more run under torch.profiler (CPU): self seconds of the busiest ops and of the GEMMs.

    The GEMMs are the part no implementation of the same layers at the same shapes can skip, so their
    share of our time bounds the ratio we could reach with PyTorch's kernels."""
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        job()
    ops = {event.key: event.self_cpu_time_total / 1e6 for event in prof.key_averages()}
    busiest = sorted(ops.items(), key=lambda item: -item[1])[:top]
    return Profile(sum(ops.values()), sum(ops.get(op, 0.0) for op in GEMM_OPS), dict(busiest))
