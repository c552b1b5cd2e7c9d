"""The whole benchmark, in one process: matmul peak, training and decoding side by side, profiles,
MFU and ratios, then quality per training budget (docs/performance.md explains each figure)."""
from __future__ import annotations

import contextlib
import json
import statistics
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date

import torch

from ..data.batching import Batch, padding_share
from ..data.tokenizer import PAD
from ..errors import UserError
from ..model.device import DTYPES, slow_precision_warning
from .flops import decoding_flops, source_pad_gemm_share, training_flops_per_token
from .machine import device_name, log, run_script
from .records import (
    HF_BATCHING,
    OURS,
    PEER,
    SAME_BATCHES,
    SEARCHES,
    UNCACHED,
    BenchReport,
    DecodeFigure,
    Quality,
    Spread,
    TrainFigure,
    label,
)
from .systems import DECODE_LENGTH, System, decoding_job, ours, peer, training_job
from .timing import Job, MatmulPeak, profile_job
from .workload import Workload

REQUIRED_RATIOS = ("train_same_batches_fp32", "train_same_batches_bf16", "train_own_batching_bf16", "greedy_fp32",
                   "beam4_fp32", "beam4_bf16", "cached_vs_uncached", "mfu_bf16")


@dataclass
class Options:
    device: str = "cpu"
    smoke: bool = False  # tiny sizes: checks that everything runs, measures nothing
    peer: bool = True
    train_minutes: float = 3.0  # quality per budget (0: skip)
    # Called with the report as it stands after each section, so that a run stopped part-way
    # (a time cap) leaves its figures so far.
    progress: Callable[[BenchReport], None] = lambda report: None


@dataclass
class Sizes:
    matmul: int  # square matrices of the peak
    repeats: int  # timings of the peak at the start
    steps: int  # training batches
    batch_tokens: int
    rounds: tuple[int, int]  # (warm-up, timed) runs of every training and decoding job

    @classmethod
    def of(cls, smoke: bool, device: torch.device) -> "Sizes":
        """A GPU's: a peak at 8192^3 (smaller products do not fill it) and Transformer-base's 12k-token
        batches (the Workload's model is Transformer-base there)."""
        if smoke:
            return cls(256, 3, 2, 512, (0, 2))
        return cls(8192, 10, 12, 12288, (1, 3)) if device.type == "cuda" else cls(1024, 10, 12, 2048, (1, 3))


def measure(options: Options) -> BenchReport:
    device = torch.device(options.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda: no CUDA GPU is visible")
    precisions, skipped = _precisions(device, options.smoke)
    work, sizes = Workload(options.smoke, device), Sizes.of(options.smoke, device)
    cfg, vocab = work.model_cfg, work.vocab
    systems = [ours(cfg, vocab, device)] + ([peer(cfg, vocab, device)] if options.peer else [])
    report = BenchReport(device_name(device), torch.__version__, date.today().isoformat(), vars(cfg), vocab,
                         skipped=skipped)
    batchings = training_batchings(work, sizes)
    same_batches = batchings[SAME_BATCHES]
    decode_batches = work.decode_batches(64)
    report.decode_sentences = sum(src.size(0) for src in decode_batches)
    _count_training_flops(report, work, same_batches)

    def progress() -> None:
        report.ratios = ratios(report, precisions, peer_present=options.peer)
        options.progress(report)

    for precision in precisions:
        peak = MatmulPeak(sizes.matmul, DTYPES[precision], device)
        peak.measure(sizes.repeats)
        log(f"matmul {precision}: {peak.gflops().median:.0f} GFLOP/s")
        _bench_training(report, systems, batchings, precision, device, sizes.rounds, peak)
        report.matmul_gflops[precision] = peak.gflops()
        _add_mfu(report, precision)
        progress()
        _bench_decoding(report, systems + [ours(cfg, vocab, device, use_cache=False)], decode_batches, precision,
                        device, sizes.rounds, peak)
        report.matmul_gflops[precision] = peak.gflops()  # with the samples taken alongside the systems
        _add_mfu(report, precision)
        for name, beam in SEARCHES.items():  # no implementation decodes faster than this
            report.decode_matmul_floor_seconds[f"{name}_{precision}"] = decoding_flops(
                cfg, vocab, decode_batches, beam, DECODE_LENGTH) / 1e9 / report.matmul_gflops[precision].max
        progress()
    for precision in peak_only_precisions(device):
        peak = MatmulPeak(sizes.matmul, DTYPES[precision], device)
        peak.measure(sizes.repeats)
        report.matmul_gflops[precision] = peak.gflops()
    report.padding = work.padding(sizes.batch_tokens)
    if options.train_minutes > 0:
        report.quality = quality_per_budget(options.train_minutes, options.smoke)
        log(f"quality after {options.train_minutes} min: {report.quality}")
    report.ratios = ratios(report, precisions, peer_present=options.peer)
    for name in REQUIRED_RATIOS:  # a skipped figure stays visible as null, its reason under "skipped"
        report.ratios.setdefault(name, None)
    report.complete = True
    return report


def peak_only_precisions(device: torch.device) -> tuple[str, ...]:
    """Precisions whose matmul peak is measured though no system is timed in them: fp16 on CUDA, for
    reference (the GPU's tensor cores run it as fast as bf16; the systems are timed in bf16)."""
    return ("fp16",) if device.type == "cuda" else ()


def _precisions(device: torch.device, smoke: bool) -> tuple[list[str], dict[str, str]]:
    """bf16 where the hardware has it; a smoke run always exercises it, emulated or not, at tiny sizes.
    On a GPU bf16 comes first: it is what trains there, and a capped run keeps what came first."""
    emulated = slow_precision_warning("bf16", device)
    if device.type == "cuda":
        return ["bf16", "fp32"], {}
    if emulated is None or smoke:
        return ["fp32", "bf16"], {}
    return ["fp32"], {"bf16": f"{emulated} (bf16 figures would time the emulation, not the systems)"}


def _bench_training(report: BenchReport, systems: list[System], batchings: dict[str, list[Batch]], precision: str,
                    device: torch.device, rounds: tuple[int, int], peak: MatmulPeak) -> None:
    """Ours on its own batches; the peer on the same batches and on Hugging Face-style ones."""
    jobs, batches_of = training_jobs(systems, batchings, precision, device)
    for key, samples in peak.alongside(jobs, *rounds).items():
        batches, seconds = batches_of[key], Spread.of(samples)
        report.train[key] = TrainFigure(seconds.rate(sum(b.n_tokens for b in batches)),
                                        seconds.scaled(1 / len(batches)),
                                        statistics.mean(padding_share(b) for b in batches))
        log(f"train {key}: {report.train[key].tokens_per_sec.median:.0f} target tokens/s")
    _profile(report, {key: jobs[key] for key in jobs if SAME_BATCHES in key}, precision, device)


def training_batchings(work: Workload, sizes: Sizes) -> dict[str, list[Batch]]:
    """Our length-bucketed batches, and Hugging Face-style ones of the same mean sentences per batch."""
    same_batches = work.token_batches(sizes.batch_tokens, sizes.steps)
    mean_sentences = round(sum(b.src.size(0) for b in same_batches) / len(same_batches))
    return {SAME_BATCHES: same_batches, HF_BATCHING: work.hf_batches(mean_sentences, sizes.steps)}


def training_jobs(systems: list[System], batchings: dict[str, list[Batch]], precision: str,
                  device: torch.device) -> tuple[dict[str, Job], dict[str, list[Batch]]]:
    """The training jobs that take turns, by label, and the batches each runs."""
    jobs, batches_of = {}, {}
    for system in systems:
        for batching, batches in batchings.items():
            if system.name == PEER or batching == SAME_BATCHES:
                key = label(system.name, batching, precision)
                jobs[key], batches_of[key] = training_job(system, batches, precision, device), batches
    return jobs, batches_of


def _bench_decoding(report: BenchReport, systems: list[System], batches: list[torch.Tensor], precision: str,
                    device: torch.device, rounds: tuple[int, int], peak: MatmulPeak) -> None:
    sentences = report.decode_sentences
    for name, beam in SEARCHES.items():
        jobs = {label(system.name, name, precision): decoding_job(system, batches, beam, precision, device)
                for system in systems}
        for key, samples in peak.alongside(jobs, *rounds).items():
            seconds = Spread.of(samples)
            report.decode[key] = DecodeFigure(seconds.rate(sentences), seconds.rate(sentences * (DECODE_LENGTH + 1)))
            log(f"decode {key}: {report.decode[key].sentences_per_sec.median:.1f} sentences/s")
        _profile(report, {key: job for key, job in jobs.items() if not key.startswith(UNCACHED)}, precision, device)


def _profile(report: BenchReport, jobs: dict[str, Job], precision: str, device: torch.device) -> None:
    if device.type != "cpu":  # CPU self times of CUDA ops are launch times, not kernel times
        report.skipped["profiles"] = "profiles and GEMM bounds are measured on CPU only"
        return
    if slow_precision_warning(precision, device):  # only in a smoke run: emulated matmuls flood the profiler
        report.skipped[f"profiles_{precision}"] = f"{precision} is emulated on this CPU: not profiled"
        return
    for key, job in jobs.items():
        profile = report.profiles[key] = profile_job(job)
        log(f"profile {key}: GEMMs {profile.gemm_seconds:.2f} s of {profile.total_seconds:.2f} s")


def _count_training_flops(report: BenchReport, work: Workload, batches: list[Batch]) -> None:
    sentences = sum(b.src.size(0) for b in batches)
    src_len = sum(int((b.src != PAD).sum()) for b in batches) / sentences
    tgt_len = sum(b.n_tokens for b in batches) / sentences
    report.train_flops_per_token = training_flops_per_token(work.model_cfg, work.vocab, src_len, tgt_len)
    report.train_source_pad_gemm_share = source_pad_gemm_share(work.model_cfg, work.vocab, batches)


def _add_mfu(report: BenchReport, precision: str) -> None:
    """Our training's MFU in `precision`, against the matmul peak sampled so far."""
    figure = report.train[label(OURS, SAME_BATCHES, precision)]
    figure.mfu = figure.tokens_per_sec.median * report.train_flops_per_token / 1e9 / \
        report.matmul_gflops[precision].max


def ratios(report: BenchReport, precisions: list[str], peer_present: bool) -> dict[str, float | None]:
    """ours / peer medians, and what bounds them (docs/performance.md). A ratio whose figures are not
    measured yet is left out, so that a run stopped part-way writes those it has."""
    result: dict[str, float | None] = {}

    def put(name: str, formula: Callable[[], float | None]) -> None:
        with contextlib.suppress(KeyError):
            result[name] = formula()

    put("cached_vs_uncached",
        lambda: report.decode_rate(OURS, "beam4", "fp32") / report.decode_rate(UNCACHED, "beam4", "fp32"))
    put("cached_vs_uncached_greedy",
        lambda: report.decode_rate(OURS, "greedy", "fp32") / report.decode_rate(UNCACHED, "greedy", "fp32"))
    if report.padding is not None:
        result["padding_random_vs_bucketed"] = report.padding.random_batches / report.padding.bucketed_batches
    for p in precisions:
        put(f"mfu_{p}", lambda p=p: report.train[label(OURS, SAME_BATCHES, p)].mfu)
    if "bf16" in precisions:
        put("train_bf16_vs_fp32",
            lambda: report.train_rate(OURS, SAME_BATCHES, "bf16") / report.train_rate(OURS, SAME_BATCHES, "fp32"))
    if peer_present:
        for p in precisions:
            put(f"train_same_batches_{p}",
                lambda p=p: report.train_rate(OURS, SAME_BATCHES, p) / report.train_rate(PEER, SAME_BATCHES, p))
            put(f"train_own_batching_{p}",
                lambda p=p: report.train_rate(OURS, SAME_BATCHES, p) / report.train_rate(PEER, HF_BATCHING, p))
            for name in SEARCHES:
                put(f"{name}_{p}", lambda n=name, p=p: report.decode_rate(OURS, n, p) / report.decode_rate(PEER, n, p))
                # The best ratio any decoder could reach: the peer's time over the matmul floor.
                put(f"{name}_{p}_ceiling", lambda n=name, p=p: report.decode_sentences / report.decode_rate(PEER, n, p)
                    / report.decode_matmul_floor_seconds[f"{n}_{p}"])
            with contextlib.suppress(KeyError):
                _add_gemm_bounds(report, result, p)
    return result


def _add_gemm_bounds(report: BenchReport, result: dict[str, float | None], precision: str) -> None:
    """`_gemm_bound`: our ratio over our profiled GEMM share, i.e. the ratio we would reach if everything
    but our linear layers' matrix products took no time (GEMMs run as PyTorch runs them). A share, not
    the profiled seconds, so that a slow spell during the one profiled run moves it little.
    For training on identical batches also `_gemm_time` (the peer's GEMM seconds over ours: the skipped
    source pads should make it 1 / (1 - train_source_pad_gemm_share)) and `_from_skipping` (the ratio
    skipping alone buys: the peer's step with that share of its GEMM time gone)."""
    for name, job in (("train_same_batches", SAME_BATCHES), ("greedy", "greedy"), ("beam4", "beam4")):
        profile = report.profiles.get(label(OURS, job, precision))
        if profile is not None:
            result[f"{name}_{precision}_gemm_bound"] = result[f"{name}_{precision}"] / profile.gemm_share
    mine, theirs = (report.profiles.get(label(who, SAME_BATCHES, precision)) for who in (OURS, PEER))
    if mine is not None and theirs is not None:
        result[f"train_same_batches_{precision}_gemm_time"] = theirs.gemm_seconds / mine.gemm_seconds
        skipped = report.train_source_pad_gemm_share * theirs.gemm_share
        result[f"train_same_batches_{precision}_from_skipping"] = 1 / (1 - skipped)


def quality_per_budget(minutes: float, smoke: bool) -> Quality:
    """Train configs/sample.yaml for a fixed wall-clock budget, then score greedy and beam on its test split.
    A failure is kept in the record, so that the timings above still get written."""
    config, extra = ("configs/tiny.yaml", ["train.max_steps=20"]) if smoke else ("configs/sample.yaml", [])
    try:
        with tempfile.TemporaryDirectory() as root:
            run_script("train.py", config, f"run.root={root}", "run.name=budget", f"train.max_minutes={minutes}",
                       *extra)
            scores = [json.loads(run_script("evaluate.py", "--run", f"{root}/budget", "--beam-size", str(beam),
                                            "--json")) for beam in SEARCHES.values()]
    except UserError as err:
        return Quality(config, minutes, error=str(err))
    return Quality(config, minutes, *scores)
