#!/usr/bin/env python
"""Benchmarks, run sequentially in one process, ours side by side with a same-size HF Marian model.

  python scripts/bench.py                       # full run (10-15 min on 2 CPU cores): bench.json + Markdown
  python scripts/bench.py --smoke               # tiny sizes, checks that everything runs (the tests use it)
  python scripts/bench.py --no-peer             # without transformers installed

Sections: 1. matmul peak (timed at the start and again between the systems' repetitions); 2. our
training throughput and MFU; 3. the peer (transformers.MarianMTModel, identical dimensions, random init,
SDPA, ReLU, tied embeddings, same optimiser and loss) on our batches and on Hugging Face-style batches;
4. decoding, ours vs `generate()`, output length forced equal, and our cached vs uncached decoder;
5. quality per budget: configs/sample.yaml trained for --train-minutes.
Every figure is min / median / max over timed repetitions after a warm-up; the systems compared in
one table take turns step by step (a training step or decoded batch of each in turn). bf16 decoding
casts the weights once (as translate.py --precision bf16 does; HF's torch_dtype does the same).
bench.json["ratios"] holds ours / peer medians and, for decoding, the `_ceiling`: the peer's time over
the matmul floor (the decoding FLOPs at the measured matmul peak), i.e. the highest ratio that any
implementation of the same maths could reach, and the `_gemm_bound`: the ratio over our GEMMs' share
of our time, profiled (CPU), i.e. the highest ratio reachable while the linear layers' matrix products
run as PyTorch runs them. For training on identical batches, `_from_skipping` is the ratio that
skipping the source pads (bench.json["train_source_pad_gemm_share"] of the GEMM FLOPs) alone buys.
bench.json["profiles"] says where the time of each compared run goes.
"""
from __future__ import annotations

import argparse
import contextlib
import functools
import json
import math
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import torch

from transformer_mt.batching import Batch, collate, epoch_batches, pad_batch, padding_share, token_batches
from transformer_mt.cli import main_guard, output_path, writing
from transformer_mt.config import Config, DataConfig, ModelConfig, RunConfig, TokenizerConfig
from transformer_mt.data import read_split
from transformer_mt.pipeline import prepare
from transformer_mt.errors import UserError
from transformer_mt.model import Transformer
from transformer_mt.runtime import (DTYPES, attention_kernels, autocast, cpu_supports_bf16, retain_freed_memory,
                                   slow_precision_warning)
from transformer_mt.search import SearchConfig, beam_search, greedy
from transformer_mt.tokenizer import BOS, EOS, PAD
from transformer_mt.trainer import adam, smoothed_loss

ROOT = Path(__file__).resolve().parent.parent
DECODE_LENGTH = 24  # generated tokens per sentence, forced for both systems (random weights never stop)


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
    within seconds, hits all alike (taking turns job by job, ~10 s apart, moved the same-batch training
    ratio 0.90-1.09 from run to run); each turn starts one job further on, so that no job always runs
    right after the same other one (whose caches and freed memory it inherits)."""
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


def summary(samples: list[float]) -> dict[str, float]:
    return {"min": min(samples), "median": statistics.median(samples), "max": max(samples)}


def per_second(amount: float, seconds: dict[str, float]) -> dict[str, float]:
    """Rates from times: the fastest repetition gives the max rate."""
    return {"min": amount / seconds["max"], "median": amount / seconds["median"], "max": amount / seconds["min"]}


class MatmulPeak:
    """The machine's dense matmul throughput, timed at the start and again as one more job taking turns
    with the systems' training and decoding repetitions: a shared machine's speed drifts by tens of
    percent within minutes, and MFU and the decoding ceilings divide by this figure, so it is sampled
    at the same moments as the systems (one early slow spell once gave an MFU above 1)."""

    def __init__(self, size: int, dtype: torch.dtype, device: torch.device):
        a, b = (torch.randn(size, size, device=device, dtype=dtype) for _ in range(2))
        self.job = Job([lambda: (a @ b, _sync(device))])
        self.flops, self.seconds = 2 * size**3, []

    def measure(self, repeats: int) -> None:
        self.alongside({}, warmup=2, repeats=repeats)

    def alongside(self, jobs: dict[str, Job], warmup: int, repeats: int) -> dict[str, list[float]]:
        """side_by_side(jobs) with the matmul taking its turn too; its samples are kept here."""
        timed = side_by_side({"matmul": self.job, **jobs}, warmup, repeats)
        self.seconds += timed.pop("matmul")
        return timed

    def gflops(self) -> dict[str, float]:
        gflops = {k: v / 1e9 for k, v in per_second(self.flops, summary(self.seconds)).items()}
        return {**gflops, "samples": len(self.seconds)}


def training_flops_per_token(cfg: ModelConfig, vocab: int, src_len: float, tgt_len: float) -> float:
    """Forward + backward (3× forward) matmul FLOPs per target token, attention and output layer included."""
    d, ff = cfg.d_model, cfg.d_ff
    ratio = src_len / tgt_len  # source tokens per target token
    encoder = cfg.encoder_layers * ratio * (2 * 4 * d * d + 2 * 2 * d * ff + 2 * 2 * src_len * d)
    decoder = cfg.decoder_layers * (2 * 4 * d * d + 2 * 2 * d * ff + 2 * 2 * tgt_len * d  # self-attn, FFN
                                    + 2 * 2 * d * d + ratio * 2 * 2 * d * d + 2 * 2 * src_len * d)  # cross
    return 3 * (encoder + decoder + 2 * d * vocab)


def linear_flops_per_row(cfg: ModelConfig, vocab: int) -> tuple[int, int, int]:
    """Forward FLOPs of the linear layers per row: a source row through the encoder layers, a source row
    through the decoder's cross-attention K/V projections, a target row through the decoder layers and
    the output layer."""
    d, ff = cfg.d_model, cfg.d_ff
    return (cfg.encoder_layers * (8 * d * d + 4 * d * ff), cfg.decoder_layers * 4 * d * d,
            cfg.decoder_layers * (12 * d * d + 4 * d * ff) + 2 * d * vocab)


def decoding_flops(cfg: ModelConfig, vocab: int, batches: list[torch.Tensor], beam: int,
                   attention: bool = True) -> float:
    """Matmul FLOPs of decoding DECODE_LENGTH + 1 steps: encoder, cross K/V, then every beam row at every
    step (beams of a sentence are one row at the first step), output layer and, unless told not to,
    attention over the real (unpadded) positions."""
    d, total = cfg.d_model, 0.0
    encoder, cross_kv, decoder = linear_flops_per_row(cfg, vocab)
    for src in batches:
        n, lengths = src.size(0), (src != PAD).sum(1).float()
        total += float(lengths.sum()) * (encoder + cross_kv)
        total += attention * cfg.encoder_layers * 4 * d * float((lengths**2).sum())
        for step in range(DECODE_LENGTH + 1):
            rows = n if step == 0 else n * beam
            total += rows * decoder
            total += attention * cfg.decoder_layers * 4 * d * (rows * (step + 1) + rows // n * float(lengths.sum()))
    return total


def source_pad_gemm_share(cfg: ModelConfig, vocab: int, batches: list[Batch]) -> float:
    """The share of the linear layers' GEMM FLOPs (forward; backward is the same share) that fall on
    source padding in the encoder: the work our encoder skips and the peer does on identical batches.
    The cross-attention K/V projections of the memory run over the pads in both systems."""
    encoder, cross_kv, decoder = linear_flops_per_row(cfg, vocab)
    rows = sum(b.src.numel() for b in batches)
    pads = sum(int((b.src == PAD).sum()) for b in batches)
    return pads * encoder / (rows * (encoder + cross_kv) + sum(b.tgt_in.numel() for b in batches) * decoder)


@dataclass
class System:
    """One implementation under test: how to build it, run teacher forcing, and decode."""
    name: str
    build: Callable[[], torch.nn.Module]
    logits: Callable[[torch.nn.Module, Batch], torch.Tensor]
    decode: Callable[[torch.nn.Module, torch.Tensor, int], object]
    kernels: Callable[[], contextlib.AbstractContextManager]


def ours(cfg: ModelConfig, vocab: int, device: torch.device, use_cache: bool = True) -> System:
    def decode(model, src, beam):
        search = SearchConfig(beam_size=beam, max_len_a=0.0, max_len_b=DECODE_LENGTH, min_len=DECODE_LENGTH,
                              use_cache=use_cache)
        return (greedy if beam == 1 else beam_search)(model, src, search, model.max_output_len)

    return System("ours" if use_cache else "ours_uncached",
                  lambda: Transformer(cfg, vocab, vocab, shared_vocab=True).to(device),
                  lambda model, b: model(b.src, b.tgt_in), decode, lambda: attention_kernels(device))


def peer(cfg: ModelConfig, vocab: int, device: torch.device) -> System:
    try:
        from transformers import MarianConfig, MarianMTModel
    except ImportError:
        raise UserError("the peer benchmark needs transformers: pip install -e '.[bench]' (or use --no-peer)") from None
    marian = MarianConfig(
        vocab_size=vocab, decoder_vocab_size=vocab, d_model=cfg.d_model, encoder_layers=cfg.encoder_layers,
        decoder_layers=cfg.decoder_layers, encoder_attention_heads=cfg.n_heads, decoder_attention_heads=cfg.n_heads,
        encoder_ffn_dim=cfg.d_ff, decoder_ffn_dim=cfg.d_ff, activation_function="relu", dropout=0.0,
        attention_dropout=0.0, activation_dropout=0.0, max_position_embeddings=cfg.max_positions,
        scale_embedding=True, pad_token_id=PAD, eos_token_id=EOS, decoder_start_token_id=BOS,
        forced_eos_token_id=None, share_encoder_decoder_embeddings=True, tie_word_embeddings=True)

    def decode(model, src, beam):
        return model.generate(input_ids=src, attention_mask=src != PAD, num_beams=beam, do_sample=False,
                              min_new_tokens=DECODE_LENGTH, max_new_tokens=DECODE_LENGTH + 1)

    def logits(model, b):
        return model(input_ids=b.src, attention_mask=b.src != PAD, decoder_input_ids=b.tgt_in).logits

    return System("peer", lambda: MarianMTModel._from_config(marian, attn_implementation="sdpa").to(device),
                  logits, decode, contextlib.nullcontext)  # the peer runs PyTorch's default SDPA dispatch


class Setup:
    """The benchmark's data, prepared as a training run prepares it (in a temporary run folder, kept while
    the benchmark runs: the training pairs are memory-mapped from it)."""

    def __init__(self, smoke: bool, device: torch.device):
        self._folder = tempfile.TemporaryDirectory()
        config = Config(run=RunConfig(name="bench", root=self._folder.name),
                        data=DataConfig(source="sample", max_pairs=3000 if smoke else 40000, valid_size=300,
                                        test_size=300),
                        tokenizer=TokenizerConfig(vocab_size=1000 if smoke else 8000),
                        model=ModelConfig(max_positions=256))
        prepared = prepare(config, log=lambda *_: None)
        self.tokenizers, self.train_ids = prepared.tokenizers, prepared.train_ids
        self.vocab = self.tokenizers.src.vocab_size
        test = read_split(*prepared.run.split_files("test", config.data.src_lang, config.data.tgt_lang))
        self.sources = [s for s, _ in test][: 64 if smoke else 256]
        self.model_cfg = (ModelConfig(d_model=64, n_heads=4, encoder_layers=2, decoder_layers=2, d_ff=256, dropout=0.0)
                          if smoke else ModelConfig(d_model=256, n_heads=4, encoder_layers=3, decoder_layers=3,
                                                    d_ff=1024, dropout=0.0))
        self.device = device

    def token_batches(self, batch_tokens: int, count: int) -> list[Batch]:
        """Ours: length-bucketed, capped by tokens."""
        plan = epoch_batches(self.train_ids, batch_tokens, seed=1, epoch=0)
        return [collate(self.train_ids, plan[i]).to(self.device) for i in range(min(count, len(plan)))]

    def hf_batches(self, sentences: int, count: int) -> list[Batch]:
        """What a Hugging Face user gets by default: random order, fixed sentences, padded to the longest."""
        order = torch.randperm(len(self.train_ids), generator=torch.Generator().manual_seed(1))
        return [collate(self.train_ids, b).to(self.device) for b in order.split(sentences)[:count]]

    def decode_batches(self, batch_size: int) -> list[torch.Tensor]:
        encoded = [ids + [EOS] for ids in self.tokenizers.src.encode_batch(self.sources)]
        order = sorted(range(len(encoded)), key=lambda i: len(encoded[i]))
        return [pad_batch([encoded[i] for i in order[start : start + batch_size]], self.device)
                for start in range(0, len(order), batch_size)]


def training_job(system: System, batches: list[Batch], precision: str, device: torch.device) -> Job:
    torch.manual_seed(0)
    model = system.build()
    optimizer = adam(model.parameters(), lr=1e-4, betas=(0.9, 0.98), eps=1e-9)  # the trainer's, for both systems

    def step(batch: Batch) -> None:
        with system.kernels():
            with autocast(device, precision):
                logits = system.logits(model, batch)
            loss, _ = smoothed_loss(logits, batch.tgt_out, 0.1)  # the trainer's, for both systems
            (loss / batch.n_tokens).backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
        _sync(device)

    return Job([functools.partial(step, batch) for batch in batches])


def _sync(device: torch.device) -> None:
    if device.type == "cuda":  # a step is timed when its kernels are done, not when they are queued
        torch.cuda.synchronize()


GEMM_OPS = ("aten::mm", "aten::addmm", "aten::_addmm_activation")  # the linear layers' matrix products


def profile_job(job: Callable[[], None], top: int = 6) -> dict:
    """One more run under torch.profiler (CPU): self seconds of the busiest ops and of the GEMMs.

    The GEMMs are the part no implementation of the same layers at the same shapes can skip, so their
    share of our time bounds the ratio we could reach with PyTorch's kernels."""
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        job()
    ops = {event.key: event.self_cpu_time_total / 1e6 for event in prof.key_averages()}
    busiest = sorted(ops.items(), key=lambda item: -item[1])[:top]
    return {"total_seconds": sum(ops.values()), "gemm_seconds": sum(ops.get(op, 0.0) for op in GEMM_OPS),
            "top_ops_seconds": dict(busiest)}


def decoding_job(system: System, batches: list[torch.Tensor], beam: int, precision: str,
                 device: torch.device) -> Job:
    """Inference in bf16 casts the weights once, as translate.py does (and HF's torch_dtype)."""
    torch.manual_seed(0)
    model = system.build().eval().to(DTYPES[precision])

    def step(src: torch.Tensor) -> None:
        with torch.no_grad(), system.kernels():
            system.decode(model, src, beam)
        _sync(device)

    return Job([functools.partial(step, src) for src in batches])


def padding_shares(setup: Setup, batch_tokens: int) -> dict:
    ids = setup.train_ids
    bucketed = list(token_batches(ids, batch_tokens, torch.Generator().manual_seed(0)))
    sentences = max(1, round(sum(len(b) for b in bucketed) / len(bucketed)))
    shuffled = list(torch.randperm(len(ids), generator=torch.Generator().manual_seed(0)).split(sentences))
    share = lambda batches: statistics.mean(padding_share(collate(ids, b)) for b in batches[:200])  # noqa: E731
    return {"random_batches": share(shuffled), "bucketed_batches": share(bucketed), "sentences_per_batch": sentences}


def quality_per_budget(minutes: float, smoke: bool) -> dict:
    """Train configs/sample.yaml for a fixed wall-clock budget, then score greedy and beam on its test split."""
    with tempfile.TemporaryDirectory() as root:
        config, extra = ("configs/tiny.yaml", ["train.max_steps=20"]) if smoke else ("configs/sample.yaml", [])
        _script("train.py", config, f"run.root={root}", "run.name=budget", f"train.max_minutes={minutes}", *extra)
        scores = {"greedy" if beam == 1 else "beam4":
                  json.loads(_script("evaluate.py", "--run", f"{root}/budget", "--beam-size", str(beam), "--json"))
                  for beam in (1, 4)}
    return {"config": config, "minutes": minutes, **scores}


def _script(name: str, *args: str) -> str:
    """Run one of our scripts; its stdout, or a UserError with the last line it wrote to stderr."""
    result = subprocess.run([sys.executable, f"scripts/{name}", *args], cwd=ROOT, capture_output=True, text=True)
    if result.returncode != 0:
        last = (result.stderr.strip().splitlines() or ["no message"])[-1]
        raise UserError(f"scripts/{name} exited with {result.returncode}: {last}")
    return result.stdout


def run(args: argparse.Namespace) -> dict:
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda: no CUDA GPU is visible")
    precisions, skipped = _precisions(device, args.smoke)
    setup = Setup(args.smoke, device)
    cfg, vocab = setup.model_cfg, setup.vocab
    systems = [ours(cfg, vocab, device)] + ([] if args.no_peer else [peer(cfg, vocab, device)])
    results: dict = {"device": _device_name(device), "torch": torch.__version__, "date": date.today().isoformat(),
                     "model": vars(cfg), "vocab": vocab, "matmul_gflops": {}, "train": {}, "decode": {},
                     "decode_matmul_floor_seconds": {}, "profiles": {}, "skipped": skipped}
    size, repeats, steps, batch_tokens = (256, 3, 2, 512) if args.smoke else (1024, 10, 12, 2048)
    rounds = (0, 2) if args.smoke else (1, 3)  # (warm-up, timed) runs of every training and decoding job
    same_batches = setup.token_batches(batch_tokens, steps)
    mean_sentences = round(sum(b.src.size(0) for b in same_batches) / len(same_batches))
    hf_batches = setup.hf_batches(mean_sentences, steps)
    decode_batches = setup.decode_batches(64)
    results["decode_sentences"] = sum(src.size(0) for src in decode_batches)
    for precision in precisions:
        peak = MatmulPeak(size, DTYPES[precision], device)
        peak.measure(repeats)
        _log(f"matmul {precision}: {peak.gflops()['median']:.0f} GFLOP/s")
        batchings = {"same_batches": same_batches, "hf_batching": hf_batches}
        _bench_training(results, systems, batchings, precision, device, rounds, peak)
        _bench_decoding(results, systems + [ours(cfg, vocab, device, use_cache=False)], decode_batches, precision,
                        device, rounds, peak)
        results["matmul_gflops"][precision] = peak.gflops()
        for name, beam in (("greedy", 1), ("beam4", 4)):  # no implementation decodes faster than this
            results["decode_matmul_floor_seconds"][f"{name}_{precision}"] = \
                decoding_flops(cfg, vocab, decode_batches, beam) / 1e9 / results["matmul_gflops"][precision]["max"]
    for precision in peak_only_precisions(device):
        peak = MatmulPeak(size, DTYPES[precision], device)
        peak.measure(repeats)
        results["matmul_gflops"][precision] = peak.gflops()
    _add_mfu(results, setup, same_batches, precisions)
    results["padding"] = padding_shares(setup, 2048)
    if args.train_minutes > 0:
        try:
            results["quality"] = quality_per_budget(args.train_minutes, args.smoke)
            _log(f"quality after {args.train_minutes} min: {results['quality']}")
        except UserError as err:  # the timings above still get written; main() exits non-zero
            results["quality"] = {"error": str(err)}
    results["ratios"] = _ratios(results, precisions, peer_present=not args.no_peer)
    for name in REQUIRED_RATIOS:  # a skipped figure stays visible as null, its reason under "skipped"
        results["ratios"].setdefault(name, None)
    return results


def peak_only_precisions(device: torch.device) -> tuple[str, ...]:
    """Precisions whose matmul peak is measured though no system is timed in them: fp16 on CUDA, for
    reference (the GPU's tensor cores run it as fast as bf16; the systems are timed in bf16)."""
    return ("fp16",) if device.type == "cuda" else ()


def _precisions(device: torch.device, smoke: bool) -> tuple[list[str], dict[str, str]]:
    """bf16 where the hardware has it; a smoke run always exercises it, emulated or not, at tiny sizes."""
    emulated = slow_precision_warning("bf16", device)
    if emulated is None or smoke:
        return ["fp32", "bf16"], {}
    return ["fp32"], {"bf16": f"{emulated} (bf16 figures would time the emulation, not the systems)"}


def _bench_training(results: dict, systems: list[System], batchings: dict[str, list[Batch]], precision: str,
                    device: torch.device, rounds: tuple[int, int], peak: MatmulPeak) -> None:
    """Ours on its own batches; the peer on the same batches and on Hugging Face-style ones."""
    jobs, batches_of = {}, {}
    for system in systems:
        for batching, batches in batchings.items():
            if system.name == "peer" or batching == "same_batches":
                key = f"{system.name}_{batching}_{precision}"
                jobs[key], batches_of[key] = training_job(system, batches, precision, device), batches
    for key, samples in peak.alongside(jobs, *rounds).items():
        batches, seconds = batches_of[key], summary(samples)
        results["train"][key] = {"tokens_per_sec": per_second(sum(b.n_tokens for b in batches), seconds),
                                 "seconds_per_step": {k: v / len(batches) for k, v in seconds.items()},
                                 "padding_share": statistics.mean(padding_share(b) for b in batches)}
        _log(f"train {key}: {results['train'][key]['tokens_per_sec']['median']:.0f} target tokens/s")
    _profile(results, {key: job for key, job in jobs.items() if "same_batches" in key}, precision, device)


def _bench_decoding(results: dict, systems: list[System], batches: list[torch.Tensor], precision: str,
                    device: torch.device, rounds: tuple[int, int], peak: MatmulPeak) -> None:
    sentences = results["decode_sentences"]
    for name, beam in (("greedy", 1), ("beam4", 4)):
        jobs = {f"{system.name}_{name}_{precision}": decoding_job(system, batches, beam, precision, device)
                for system in systems}
        for key, samples in peak.alongside(jobs, *rounds).items():
            seconds = summary(samples)
            results["decode"][key] = {"sentences_per_sec": per_second(sentences, seconds),
                                      "tokens_per_sec": per_second(sentences * (DECODE_LENGTH + 1), seconds)}
            _log(f"decode {key}: {results['decode'][key]['sentences_per_sec']['median']:.1f} sentences/s")
        _profile(results, {key: job for key, job in jobs.items() if not key.startswith("ours_uncached")}, precision,
                 device)


def _profile(results: dict, jobs: dict[str, Job], precision: str, device: torch.device) -> None:
    if device.type != "cpu":  # CPU self times of CUDA ops are launch times, not kernel times
        results["skipped"]["profiles"] = "profiles and GEMM bounds are measured on CPU only"
        return
    if slow_precision_warning(precision, device):  # only in a smoke run: ~10k profiler events per emulated matmul
        results["skipped"][f"profiles_{precision}"] = f"{precision} is emulated on this CPU: not profiled"
        return
    for key, job in jobs.items():
        results["profiles"][key] = profile_job(job)
        _log(f"profile {key}: GEMMs {results['profiles'][key]['gemm_seconds']:.2f} s "
             f"of {results['profiles'][key]['total_seconds']:.2f} s")


def _add_mfu(results: dict, setup: Setup, batches: list[Batch], precisions: list[str]) -> None:
    sentences = sum(b.src.size(0) for b in batches)
    src_len = sum(int((b.src != PAD).sum()) for b in batches) / sentences
    tgt_len = sum(b.n_tokens for b in batches) / sentences
    flops = training_flops_per_token(setup.model_cfg, setup.vocab, src_len, tgt_len)
    results["train_flops_per_token"] = flops
    results["train_source_pad_gemm_share"] = source_pad_gemm_share(setup.model_cfg, setup.vocab, batches)
    for precision in precisions:
        rate = results["train"][f"ours_same_batches_{precision}"]["tokens_per_sec"]["median"]
        results["train"][f"ours_same_batches_{precision}"]["mfu"] = \
            rate * flops / 1e9 / results["matmul_gflops"][precision]["max"]


REQUIRED_RATIOS = ("train_same_batches_fp32", "train_same_batches_bf16", "train_own_batching_bf16", "greedy_fp32",
                   "beam4_fp32", "beam4_bf16", "cached_vs_uncached", "mfu_bf16")


def _ratios(results: dict, precisions: list[str], peer_present: bool) -> dict[str, float]:
    def med(section: str, key: str, field: str) -> float:
        return results[section][key][field]["median"]

    ratios = {"cached_vs_uncached": med("decode", "ours_beam4_fp32", "sentences_per_sec")
              / med("decode", "ours_uncached_beam4_fp32", "sentences_per_sec"),
              "cached_vs_uncached_greedy": med("decode", "ours_greedy_fp32", "sentences_per_sec")
              / med("decode", "ours_uncached_greedy_fp32", "sentences_per_sec"),
              "padding_random_vs_bucketed":
                  results["padding"]["random_batches"] / results["padding"]["bucketed_batches"]}
    for p in precisions:
        ratios[f"mfu_{p}"] = results["train"][f"ours_same_batches_{p}"]["mfu"]
    if "bf16" in precisions:
        ratios["train_bf16_vs_fp32"] = med("train", "ours_same_batches_bf16", "tokens_per_sec") / \
            med("train", "ours_same_batches_fp32", "tokens_per_sec")
    if peer_present:
        for p in precisions:
            ours_rate = med("train", f"ours_same_batches_{p}", "tokens_per_sec")
            ratios[f"train_same_batches_{p}"] = ours_rate / med("train", f"peer_same_batches_{p}", "tokens_per_sec")
            ratios[f"train_own_batching_{p}"] = ours_rate / med("train", f"peer_hf_batching_{p}", "tokens_per_sec")
            for name in ("greedy", "beam4"):
                peer_rate = med("decode", f"peer_{name}_{p}", "sentences_per_sec")
                ratios[f"{name}_{p}"] = med("decode", f"ours_{name}_{p}", "sentences_per_sec") / peer_rate
                # The best ratio any decoder could reach: the peer's time over the matmul floor.
                ratios[f"{name}_{p}_ceiling"] = results["decode_sentences"] / peer_rate / \
                    results["decode_matmul_floor_seconds"][f"{name}_{p}"]
            _add_gemm_bounds(results, ratios, p)
    return ratios


def _add_gemm_bounds(results: dict, ratios: dict[str, float], precision: str) -> None:
    """`_gemm_bound`: our ratio over our profiled GEMM share, i.e. the ratio we would reach if everything
    but our linear layers' matrix products took no time (GEMMs run as PyTorch runs them). A share, not
    the profiled seconds, so that a slow spell during the one profiled run moves it little.
    For training on identical batches also `_gemm_time` (the peer's GEMM seconds over ours: the skipped
    source pads should make it 1 / (1 - train_source_pad_gemm_share)) and `_from_skipping` (the ratio
    skipping alone buys: the peer's step with that share of its GEMM time gone)."""
    for name, key in (("train_same_batches", "ours_same_batches"), ("greedy", "ours_greedy"), ("beam4", "ours_beam4")):
        profile = results["profiles"].get(f"{key}_{precision}")
        if profile is not None:
            share = profile["gemm_seconds"] / profile["total_seconds"]
            ratios[f"{name}_{precision}_gemm_bound"] = ratios[f"{name}_{precision}"] / share
    ours, peer = (results["profiles"].get(f"{who}_same_batches_{precision}") for who in ("ours", "peer"))
    if ours is not None and peer is not None:
        ratios[f"train_same_batches_{precision}_gemm_time"] = peer["gemm_seconds"] / ours["gemm_seconds"]
        skipped = results["train_source_pad_gemm_share"] * peer["gemm_seconds"] / peer["total_seconds"]
        ratios[f"train_same_batches_{precision}_from_skipping"] = 1 / (1 - skipped)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument("--smoke", action="store_true", help="tiny sizes: checks the benchmark runs, measures nothing")
    parser.add_argument("--no-peer", action="store_true", help="skip the Hugging Face Marian peer")
    parser.add_argument("--train-minutes", type=float, default=3.0, help="quality-per-budget training (0: skip)")
    parser.add_argument("--output", default="bench.json")
    args = parser.parse_args()
    output = _check_args(args)
    retained = retain_freed_memory()  # as train/translate/evaluate run; the peer shares this process
    results = {"retain_freed_memory": retained, **run(args)}
    print(_markdown(results))  # first: if the file cannot be written after all, the figures are on screen
    with writing("--output", output):
        output.write_text(json.dumps(results, indent=2))
    if "error" in results.get("quality", {}):
        raise UserError(f"quality per budget failed ({output} has the other figures): {results['quality']['error']}")
    return 0


def _check_args(args: argparse.Namespace) -> Path:
    """Refuse what would only fail after minutes of measuring."""
    if not 0 <= args.train_minutes < math.inf:
        raise UserError(f"--train-minutes must be a number of minutes >= 0 (0 skips it), got {args.train_minutes}")
    return output_path("--output", args.output)


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    bf16 = "native bf16" if cpu_supports_bf16() else "no native bf16"
    return f"{_cpu_model()} ({torch.backends.cpu.get_cpu_capability()}, {bf16}), {torch.get_num_threads()} threads"


def _cpu_model() -> str:
    """The CPU's marketing name where Linux tells it (platform.processor() is often empty)."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def _markdown(results: dict) -> str:
    lines = [f"device: {results['device']} · torch {results['torch']} · {results['date']}", "",
             "| figure | min | median | max |", "|---|---|---|---|"]
    lines += [_row(f"matmul GFLOP/s, {p}", v) for p, v in results["matmul_gflops"].items()]
    lines += [_row(f"training target tokens/s, {k}", v["tokens_per_sec"]) for k, v in results["train"].items()]
    lines += [_row(f"decoding sentences/s, {k}", v["sentences_per_sec"]) for k, v in results["decode"].items()]
    lines += ["", "| ratio (medians) | value |", "|---|---|"]
    lines += [f"| {k} | {'skipped' if v is None else f'{v:.2f}'} |" for k, v in results["ratios"].items()]
    if results["profiles"]:
        lines += ["", "| profile (one run, self time) | seconds | GEMM share | busiest ops (share) |",
                  "|---|---|---|---|"]
        lines += [_profile_row(k, v) for k, v in results["profiles"].items()]
    lines += [f"skipped {k}: {reason}" for k, reason in results["skipped"].items()]
    if "quality" in results and "error" not in results["quality"]:
        q = results["quality"]
        lines += ["", f"quality after {q['minutes']} min of {q['config']}: greedy BLEU {q['greedy']['bleu']} "
                      f"chrF {q['greedy']['chrf']}; beam-4 BLEU {q['beam4']['bleu']} chrF {q['beam4']['chrf']}"]
    return "\n".join(lines)


def _row(name: str, value: dict) -> str:
    return f"| {name} | {value['min']:.1f} | {value['median']:.1f} | {value['max']:.1f} |"


def _profile_row(name: str, profile: dict) -> str:
    total = profile["total_seconds"]
    busiest = ", ".join(f"{_short(op)} {seconds / total:.0%}"
                        for op, seconds in list(profile["top_ops_seconds"].items())[:4])
    return f"| {name} | {total:.2f} | {profile['gemm_seconds'] / total:.0%} | {busiest} |"


def _short(op: str) -> str:
    return op.removeprefix("aten::").replace("_scaled_dot_product_flash_attention_for_cpu", "sdpa_flash")


def _log(message: str) -> None:
    print(message, flush=True)


if __name__ == "__main__":
    main_guard(main)
