"""What rounding batch shapes does to real training steps (`make bench-shapes`, docs/performance.md):
the census of each rounding (`shape_census`), the trainer's update on fresh batches, each rounding in
turn, so that a kernel built for one step is reused only where a shape really repeats, profiles of
fresh updates, and the kernels make bench's interleaved training jobs would build."""
from __future__ import annotations

import functools
import platform
import tempfile
import time
from dataclasses import asdict, dataclass, replace
from datetime import date

import numpy as np
import torch

from ..config import ModelConfig, TrainConfig, load_config
from ..data.batching import Shapes, collate, epoch_batches
from ..data.store import EncodedCorpus
from ..model.device import DTYPES, attention_kernels, pick_precision, row_multiple
from ..model.transformer import Transformer
from ..training.distributed import Distributed
from ..training.setup import set_up_run
from ..training.step import Updater
from .machine import ROOT, cpu_model
from .shape_census import ONEDNN_DEFAULT_CACHE, cache_builds, census
from .suite import Sizes, training_batchings, training_jobs
from .systems import ours, peer
from .timing import GEMM_OPS, Job, MatmulPeak, side_by_side
from .workload import Workload

COPY_OPS = ("aten::copy_", "aten::_to_copy")

ROUNDINGS = {"none": (1, 1), "rows 32": (1, 32), "length 2, rows 32": (2, 32), "length 4, rows 32": (4, 32),
             "length 8, rows 64": (8, 64)}
TIMED = ("none", "rows 32", "length 2, rows 32", "length 4, rows 32")


SMOKE = ["data.max_pairs=2000", "tokenizer.vocab_size=500", "model.d_model=32", "model.n_heads=2",
         "model.encoder_layers=1", "model.decoder_layers=1", "model.d_ff=64"]


@dataclass
class ShapesOptions:
    precision: str = "auto"  # auto | fp32 | bf16
    steps: int = 120  # timed updates per rounding
    profile_steps: int = 20
    smoke: bool = False  # tiny sizes: checks that it runs, measures nothing
    make_bench: bool = False  # also: the kernels make bench's interleaved training jobs would build


def measure(options: ShapesOptions) -> dict:
    """Prepares configs/sample.yaml's corpus in a temporary folder, then: the census of one epoch's
    batch plan under each rounding; the trainer's update on fresh batches of each, taking turns step
    by step; one profile of fresh updates, unrounded and with rows rounded to 32."""
    device = torch.device("cpu")
    steps, profile_steps = (min(options.steps, 4), min(options.profile_steps, 2)) if options.smoke else \
        (options.steps, options.profile_steps)
    turns = asdict(bench_training_turns(options.smoke)) if options.make_bench else None  # first: may need the peer
    with tempfile.TemporaryDirectory() as folder:
        overrides = [f"run.root={folder}", "run.name=shapes"] + (SMOKE if options.smoke else [])
        config = load_config(ROOT / "configs" / "sample.yaml", overrides)
        precision = pick_precision(options.precision, device)
        train = replace(config.train, precision=precision)
        prepared = set_up_run(config, log=lambda *_: None)
        corpus, vocab = prepared.train_ids, prepared.tokenizers.tgt.vocab_size
        roundings = {name: Shapes(*multiples) for name, multiples in ROUNDINGS.items()}
        censuses = {name: census(corpus, train.batch_tokens, train.seed, shapes, config.model, vocab)
                    for name, shapes in roundings.items()}
        timed = timed_updates(corpus, train, config.model, vocab, precision, {n: roundings[n] for n in TIMED}, steps)
        profiles = {name: profile_updates(corpus, train, config.model, vocab, precision, roundings[name],
                                          profile_steps) for name in ("none", "rows 32")}
    report = {"device": cpu_model(), "machine": platform.machine(), "torch": torch.__version__,
              "date": date.today().isoformat(), "precision": precision, "smoke": options.smoke,
              "row_multiple_auto": row_multiple(None, device, precision),
              "batch_tokens": train.batch_tokens, "census": {k: asdict(v) for k, v in censuses.items()},
              "timed": {k: asdict(v) for k, v in timed.items()},
              "ratios": {k: v.tokens_per_sec / timed["none"].tokens_per_sec for k, v in timed.items()},
              "profiles": {k: asdict(v) for k, v in profiles.items()}}
    if turns is not None:
        report["make_bench_training"] = turns
    return report


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


def bench_training_turns(smoke: bool):
    """shapes.TurnsCensus of make bench's training jobs (fp32: the same matrix shapes as bf16), matmul peak
    included."""
    device = torch.device("cpu")
    work, sizes = Workload(smoke, device), Sizes.of(smoke, device)
    systems = [ours(work.model_cfg, work.vocab, device), peer(work.model_cfg, work.vocab, device)]
    jobs, _ = training_jobs(systems, training_batchings(work, sizes), "fp32", device)
    peak = MatmulPeak(sizes.matmul, DTYPES["fp32"], device)
    return turns_census({"matmul": peak.job, **jobs}, *sizes.rounds,
                              capacities=(ONEDNN_DEFAULT_CACHE, 4096))


def markdown(report: dict) -> str:
    base = report["census"]["none"]["linear_mflops_per_target_token"]
    lines = [f"{report['device']} · torch {report['torch']} · {report['date']} · {report['precision']} · "
             f"batch_tokens {report['batch_tokens']}", "",
             "| rounding | batches | distinct (B, S, T) | encoder rows | decoder rows | linear shapes | "
             "real target share | encoder row overhead | linear FLOPs / token | GEMM shapes | "
             "GEMM kernel builds (LRU 1024) |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for name, c in report["census"].items():
        lines.append(f"| {name} | {c['batches']} | {c['batch_shapes']} | {c['encoder_rows']} | {c['decoder_rows']} | "
                     f"{c['linear_shapes']} | {c['real_target_share']:.3f} | {c['encoder_row_overhead']:.1%} | "
                     f"{c['linear_mflops_per_target_token'] / base:.3f} | {c['gemm_shapes']} | {c['gemm_builds']} |")
    lines += ["", "| rounding (fresh batches, turns step by step) | steps | target tokens/s | first half | "
                  "second half | vs none |", "|---|---|---|---|---|---|"]
    for name, t in report["timed"].items():
        lines.append(f"| {name} | {t['steps']} | {t['tokens_per_sec']:,.0f} | {t['first_half_tokens_per_sec']:,.0f} | "
                     f"{t['second_half_tokens_per_sec']:,.0f} | {report['ratios'][name]:.3f} |")
    lines += ["", f"train.row_multiple=auto here: {report['row_multiple_auto']}", "",
              "| profile | seconds | GEMM share | copy share | casts / update (M elements: weights, activations) | "
              "busiest ops | GEMM GFLOP/s by shape |", "|---|---|---|---|---|---|---|"]
    for name, p in report["profiles"].items():
        ops = ", ".join(f"{op.removeprefix('aten::')} {share:.0%}" for op, share in list(p["top_ops"].items())[:5])
        rates = ", ".join(f"{shape} {rate:.0f}" for shape, rate in list(p["gemm_gflops_by_shape"].items())[:4])
        casts = p["casts_per_update"]
        lines.append(f"| {name} | {p['seconds']:.2f} | {p['gemm_share']:.0%} | {p['copy_share']:.0%} | "
                     f"{casts['weights']:.1f}, {casts['activations']:.1f} | {ops} | {rates} |")
    if "make_bench_training" in report:
        t = report["make_bench_training"]
        by_job = ", ".join(f"{job} {n}" for job, n in t["distinct_by_job"].items())
        builds = ", ".join(f"{n} at capacity {capacity}" for capacity, n in t["timed_builds"].items())
        lines += ["", f"make bench's training phase: {t['distinct']} distinct matrix products ({by_job}); "
                      f"kernels built in its timed rounds ({t['timed_calls']} products): {builds}"]
    return "\n".join(lines)
