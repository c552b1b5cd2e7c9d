"""How many distinct matrix shapes a training epoch gives the kernels, what rounding them costs in
padding, and what it does to real training steps (`make bench-shapes`, docs/performance.md).

Kernels built per shape (oneDNN's bf16 kernels on CPU, compiled graphs anywhere) pay for every new
shape; an epoch of length-bucketed batches brings hundreds. The census here counts them from the
batch plan alone (any machine gives the same counts); the timed part runs the trainer's update on
fresh batches, each rounding in turn, so that a kernel built for one step is reused only where a
shape really repeats."""
from __future__ import annotations

import functools
import time
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np
import torch

from ..config import ModelConfig, TrainConfig
from ..data.batching import Shapes, collate, epoch_batches
from ..data.store import EncodedCorpus
from ..model.device import attention_kernels
from ..model.transformer import Transformer
from ..training.distributed import Distributed
from ..training.step import Updater
from .timing import GEMM_OPS, Job, side_by_side

COPY_OPS = ("aten::copy_", "aten::_to_copy")


@dataclass(frozen=True)
class BatchShape:
    sentences: int  # B
    src_len: int  # S, rounded
    tgt_len: int  # T, rounded
    encoder_rows: int  # N: the rows the encoder's position-wise layers run on
    real_target_tokens: int
    real_source_tokens: int


def batch_shapes(corpus: EncodedCorpus, batch_tokens: int, seed: int, shapes: Shapes) -> list[BatchShape]:
    """Every batch of epoch 0 as the trainer would collate it, without building the tensors."""
    out = []
    for indices in epoch_batches(corpus, batch_tokens, seed, 0, shapes=shapes):
        src, tgt = (side.astype(np.int64) + 1 for side in corpus.lengths(indices.astype(np.int64)))
        b, s, t = len(indices), shapes.length(int(src.max())), shapes.length(int(tgt.max()))
        rows = min(b * s, -(-int(src.sum()) // shapes.row_multiple) * shapes.row_multiple)
        out.append(BatchShape(b, s, t, rows, int(tgt.sum()), int(src.sum())))
    return out


def linear_products(batch: BatchShape, cfg: ModelConfig, vocab: int) -> list[tuple[int, int, int]]:
    """(rows, in, out) of every linear layer's forward matrix product in one training step of `batch`
    (each shape's two backward products follow from it)."""
    d, ff = cfg.d_model, cfg.d_ff
    bt, bs, n = batch.sentences * batch.tgt_len, batch.sentences * batch.src_len, batch.encoder_rows
    encoder = [(n, d, 3 * d), (n, d, d), (n, d, ff), (n, ff, d)] * cfg.encoder_layers
    decoder = [(bt, d, 3 * d), (bt, d, d), (bt, d, d), (bs, d, 2 * d), (bt, d, d), (bt, d, ff), (bt, ff, d)]
    return encoder + decoder * cfg.decoder_layers + [(bt, d, vocab)]


@dataclass
class Census:
    batches: int
    batch_shapes: int  # distinct (B, S, T): the attention products' shapes
    encoder_rows: int  # distinct N
    decoder_rows: int  # distinct B·T
    linear_shapes: int  # distinct (rows, in, out) over all linear layers
    real_target_share: float  # real target tokens / target positions computed
    encoder_row_overhead: float  # encoder rows computed / real source tokens, less 1
    linear_mflops_per_target_token: float  # the linear layers', forward and backward
    gemm_shapes: int  # distinct GEMMs (m, k, n) of the linear layers, forward and both backward products
    gemm_builds: int  # how often a cache of ONEDNN_DEFAULT_CACHE GEMM kernels, least recently used
    #                   out first, would have to build one over the epoch (oneDNN's primitive cache)


ONEDNN_DEFAULT_CACHE = 1024  # oneDNN's default primitive cache capacity (ONEDNN_PRIMITIVE_CACHE_CAPACITY)


def gemm_products(linear: list[tuple[int, int, int]]) -> list[tuple[int, int, int]]:
    """(m, k, n) of each linear layer's forward product and of its two backward ones, in order."""
    return [gemm for rows, fan_in, fan_out in linear
            for gemm in ((rows, fan_in, fan_out), (rows, fan_out, fan_in), (fan_out, rows, fan_in))]


def cache_builds(sequence: list, capacity: int) -> int:
    """Misses of a least-recently-used cache of `capacity` entries over `sequence`."""
    cache: OrderedDict = OrderedDict()
    builds = 0
    for key in sequence:
        if key in cache:
            cache.move_to_end(key)
            continue
        builds += 1
        cache[key] = None
        if len(cache) > capacity:
            cache.popitem(last=False)
    return builds


def census(corpus: EncodedCorpus, batch_tokens: int, seed: int, shapes: Shapes, cfg: ModelConfig,
           vocab: int) -> Census:
    """Distinct shapes, padding and linear-layer FLOPs per real target token of one rounding's epoch."""
    plan = batch_shapes(corpus, batch_tokens, seed, shapes)
    linear: set[tuple[int, int, int]] = set()
    gemms: list[tuple[int, int, int]] = []
    flops = 0.0
    for batch in plan:
        products = linear_products(batch, cfg, vocab)
        flops += sum(6.0 * rows * fan_in * fan_out for rows, fan_in, fan_out in products)  # forward and backward
        linear |= set(products)
        gemms += gemm_products(products)
    targets = sum(b.real_target_tokens for b in plan)
    return Census(
        batches=len(plan), batch_shapes=len({(b.sentences, b.src_len, b.tgt_len) for b in plan}),
        encoder_rows=len({b.encoder_rows for b in plan}), decoder_rows=len({b.sentences * b.tgt_len for b in plan}),
        linear_shapes=len(linear),
        real_target_share=targets / max(1, sum(b.sentences * b.tgt_len for b in plan)),
        encoder_row_overhead=sum(b.encoder_rows for b in plan) / max(1, sum(b.real_source_tokens for b in plan)) - 1,
        linear_mflops_per_target_token=flops / max(1, targets) / 1e6,
        gemm_shapes=len(set(gemms)), gemm_builds=cache_builds(gemms, ONEDNN_DEFAULT_CACHE))


@dataclass
class StepTiming:
    steps: int
    seconds: float
    real_target_tokens: int
    tokens_per_sec: float
    first_half_tokens_per_sec: float  # where more of the shapes are new
    second_half_tokens_per_sec: float


def timed_updates(corpus: EncodedCorpus, train: TrainConfig, cfg: ModelConfig, vocab: int, precision: str,
                  roundings: dict[str, Shapes], steps: int) -> dict[str, StepTiming]:
    """The trainer's update (forward, backward, clipping, fused Adam) on the first `steps` batches of
    epoch 0 under each rounding, the roundings taking turns step by step; no warm-up, so that every
    shape is as new to the kernels as in a real run's first epoch."""
    device = torch.device("cpu")
    runs = {}
    for name, shapes in roundings.items():
        torch.manual_seed(train.seed)
        model = Transformer(cfg, vocab, vocab, shared_vocab=True)
        plan = epoch_batches(corpus, train.batch_tokens, train.seed, 0, shapes=shapes)
        batches = [collate(corpus, plan[i], shapes) for i in range(min(steps, len(plan)))]
        runs[name] = (Updater(model, train, device, precision, Distributed()), batches, [])
    with attention_kernels(device):
        for i in range(max(len(batches) for _, batches, _ in runs.values())):
            for updater, batches, seconds in runs.values():
                if i < len(batches):
                    started = time.perf_counter()
                    updater.update([batches[i]])
                    seconds.append(time.perf_counter() - started)
    return {name: _timing(batches, seconds) for name, (_, batches, seconds) in runs.items()}


def _timing(batches: list, seconds: list[float]) -> StepTiming:
    tokens = [b.n_tokens for b in batches]
    half = len(seconds) // 2
    rate = lambda t, s: sum(t) / max(1e-9, sum(s))  # noqa: E731
    return StepTiming(len(seconds), sum(seconds), sum(tokens), rate(tokens, seconds),
                      rate(tokens[:half], seconds[:half]), rate(tokens[half:], seconds[half:]))


@dataclass
class StepProfile:
    seconds: float  # self time of all ops
    gemm_share: float  # the linear layers' products
    copy_share: float  # copy_ and _to_copy: dtype casts (autocast's) and layout copies
    top_ops: dict[str, float]  # share of the busiest ops
    gemm_gflops_by_shape: dict[str, float]  # time-weighted GFLOP/s of the busiest GEMM input shapes
    casts_per_update: dict[str, float]  # millions of elements through _to_copy: weight-shaped, activations


def profile_updates(corpus: EncodedCorpus, train: TrainConfig, cfg: ModelConfig, vocab: int, precision: str,
                    shapes: Shapes, steps: int, top: int = 8) -> StepProfile:
    """`steps` updates on fresh batches under torch.profiler (CPU, shapes recorded)."""
    device = torch.device("cpu")
    torch.manual_seed(train.seed)
    model = Transformer(cfg, vocab, vocab, shared_vocab=True)
    updater = Updater(model, train, device, precision, Distributed())
    plan = epoch_batches(corpus, train.batch_tokens, train.seed, 0, shapes=shapes)
    batches = [collate(corpus, plan[i], shapes) for i in range(min(steps, len(plan)))]
    with attention_kernels(device), torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU],
                                                           record_shapes=True) as prof:
        for batch in batches:
            updater.update([batch])
    ops = {e.key: e.self_cpu_time_total / 1e6 for e in prof.key_averages()}
    total = max(1e-9, sum(ops.values()))
    busiest = sorted(ops.items(), key=lambda item: -item[1])[:top]
    return StepProfile(total, sum(ops.get(op, 0.0) for op in GEMM_OPS) / total,
                       sum(ops.get(op, 0.0) for op in COPY_OPS) / total,
                       {op: seconds / total for op, seconds in busiest}, _gemm_rates(prof, top),
                       _casts(prof, {tuple(p.shape) for p in model.parameters()}, len(batches)))


def _casts(prof, weight_shapes: set[tuple[int, ...]], updates: int) -> dict[str, float]:
    """Elements (millions per update) that `_to_copy` converts, split by whether the input has a
    parameter's shape: autocast's weight casts and their gradients' casts back, against activations."""
    counts = {"weights": 0, "activations": 0}
    for event in prof.events():
        if event.name == "aten::_to_copy" and event.input_shapes and event.input_shapes[0]:
            shape = tuple(event.input_shapes[0])
            counts["weights" if shape in weight_shapes else "activations"] += int(np.prod(shape))
    return {kind: n / max(1, updates) / 1e6 for kind, n in counts.items()}


def _gemm_rates(prof, top: int) -> dict[str, float]:
    """GFLOP/s of `mm`/`addmm` grouped by input shapes, for the shapes that took the most time."""
    by_shape: dict[str, list[float]] = {}
    for event in prof.key_averages(group_by_input_shape=True):
        if event.key not in ("aten::mm", "aten::addmm") or not event.input_shapes:
            continue
        dims = [s for s in event.input_shapes if len(s) == 2]
        if len(dims) < 2:
            continue
        (m, k), (_, n) = dims[-2], dims[-1]
        entry = by_shape.setdefault(f"{m}x{k}x{n}", [0.0, 0.0])
        entry[0] += 2.0 * m * k * n * event.count
        entry[1] += event.self_cpu_time_total / 1e6
    busiest = sorted(by_shape.items(), key=lambda item: -item[1][1])[:top]
    return {shape: flops / max(1e-9, seconds) / 1e9 for shape, (flops, seconds) in busiest}


MATMUL_OPS = GEMM_OPS + ("aten::bmm", "aten::baddbmm")  # the attention products too


def matmul_calls(job: Job) -> list[list[tuple]]:
    """(op, input shapes) of every matrix product of each of `job`'s steps, in order (torch.profiler)."""
    calls = []
    for step in job.steps:
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU], record_shapes=True) as prof:
            step()
        calls.append([(e.name, tuple(map(tuple, e.input_shapes))) for e in prof.events() if e.name in MATMUL_OPS])
    return calls


@dataclass
class TurnsCensus:
    distinct_by_job: dict[str, int]  # distinct (op, shapes) matrix products of each job
    distinct: int  # over all the jobs together
    timed_calls: int  # matrix products in the timed rounds
    timed_builds: dict[int, int]  # by cache capacity: kernels built in the timed rounds, warm-up done


def turns_census(jobs: dict[str, Job], warmup: int, repeats: int, capacities: tuple[int, ...]) -> TurnsCensus:
    """Replays the jobs' matrix products in the order timing.side_by_side runs the jobs (warm-up, then
    rounds taking turns), through least-recently-used caches: does a benchmark that interleaves
    systems keep their kernels, or build them again and time the building?"""
    calls = {name: matmul_calls(job) for name, job in jobs.items()}
    sequence: list[tuple] = []
    replay = {name: Job([functools.partial(sequence.extend, step) for step in steps]) for name, steps in calls.items()}
    side_by_side(replay, warmup, 0)
    warm = len(sequence)
    side_by_side(replay, 0, repeats)
    return TurnsCensus({name: len({c for step in steps for c in step}) for name, steps in calls.items()},
                       len(set(sequence)), len(sequence) - warm,
                       {capacity: cache_builds(sequence, capacity) - cache_builds(sequence[:warm], capacity)
                        for capacity in capacities})
