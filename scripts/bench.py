#!/usr/bin/env python
"""Benchmarks, run sequentially in one process: matmul peak, training throughput, decoding speed.

  python scripts/bench.py                      # full run: writes bench.json and prints a Markdown table
  python scripts/bench.py --smoke              # tiny sizes, seconds (the test suite runs this)

Every figure is the min / median / max of several timed repetitions after a warm-up; compare
systems by the ratios in bench.json, measured side by side in this one run.
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from collections.abc import Callable
from datetime import date
from pathlib import Path

import torch
import torch.nn.functional as F

from transformer_mt.batching import collate, encode_pairs, epoch_batches, padding_share, token_batches
from transformer_mt.cli import main_guard
from transformer_mt.config import DataConfig, ModelConfig, TokenizerConfig
from transformer_mt.data import prepare
from transformer_mt.model import Transformer
from transformer_mt.runtime import attention_kernels, autocast, cpu_supports_bf16
from transformer_mt.search import SearchConfig, beam_search, greedy
from transformer_mt.tokenizer import PAD, TokenizerPair


def timed(fn: Callable[[], object], warmup: int, repeats: int) -> dict[str, float]:
    for _ in range(warmup):
        fn()
    seconds = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        seconds.append(time.perf_counter() - started)
    return {"min": min(seconds), "median": statistics.median(seconds), "max": max(seconds)}


def per_second(amount: float, seconds: dict[str, float]) -> dict[str, float]:
    """Throughput from times: the fastest time gives the max rate."""
    return {"min": amount / seconds["max"], "median": amount / seconds["median"], "max": amount / seconds["min"]}


def matmul_peak(size: int, dtype: torch.dtype, device: torch.device, repeats: int) -> dict[str, float]:
    a = torch.randn(size, size, device=device, dtype=dtype)
    b = torch.randn(size, size, device=device, dtype=dtype)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    seconds = timed(lambda: (a @ b, sync()), warmup=2, repeats=repeats)
    return {k: v / 1e9 for k, v in per_second(2 * size**3, seconds).items()}


def training_flops_per_token(cfg: ModelConfig, vocab: int, src_len: float, tgt_len: float) -> float:
    """Forward + backward (3× forward) matmul FLOPs per target token, attention and output layer included."""
    d, ff = cfg.d_model, cfg.d_ff
    ratio = src_len / tgt_len  # source tokens per target token
    encoder = cfg.encoder_layers * ratio * (2 * 4 * d * d + 2 * 2 * d * ff + 2 * 2 * src_len * d)
    decoder = cfg.decoder_layers * (2 * 4 * d * d + 2 * 2 * d * ff + 2 * 2 * tgt_len * d  # self-attn, FFN
                                    + 2 * 2 * d * d + ratio * 2 * 2 * d * d + 2 * 2 * src_len * d)  # cross
    return 3 * (encoder + decoder + 2 * d * vocab)


class Setup:
    def __init__(self, smoke: bool, device: torch.device):
        pairs = 3000 if smoke else 40000
        splits = prepare(DataConfig(source="sample", max_pairs=pairs, valid_size=300, test_size=300))
        self.tokenizers = TokenizerPair.train(splits.train, TokenizerConfig(vocab_size=1000 if smoke else 8000))
        self.train_ids = encode_pairs(splits.train, self.tokenizers, 256)
        self.sources = [s for s, _ in splits.test][: 64 if smoke else 256]
        self.model_cfg = (ModelConfig(d_model=64, n_heads=4, encoder_layers=2, decoder_layers=2, d_ff=256, dropout=0.0)
                          if smoke else ModelConfig(d_model=256, n_heads=4, encoder_layers=3, decoder_layers=3,
                                                    d_ff=1024, dropout=0.0))
        self.device = device


def bench_training(setup: Setup, precision: str, batch_tokens: int, steps: int) -> dict:
    torch.manual_seed(0)
    vocab = setup.tokenizers.src.vocab_size
    model = Transformer(setup.model_cfg, vocab, vocab, shared_vocab=True).to(setup.device)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4, betas=(0.9, 0.98), eps=1e-9)
    batches = [collate(setup.train_ids, b).to(setup.device)
               for b in epoch_batches(setup.train_ids, batch_tokens, seed=1, epoch=0)[: steps]]
    tokens = sum(b.n_tokens for b in batches)

    def run_all() -> None:
        for batch in batches:
            with autocast(setup.device, precision):
                logits = model(batch.src, batch.tgt_in)
            loss = F.cross_entropy(logits.float().flatten(0, 1), batch.tgt_out.flatten(), ignore_index=PAD,
                                   label_smoothing=0.1, reduction="sum") / batch.n_tokens
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
        if setup.device.type == "cuda":
            torch.cuda.synchronize()

    with attention_kernels(setup.device):
        seconds = timed(run_all, warmup=1, repeats=3)
    sentences = sum(b.src.size(0) for b in batches)
    src_len = sum(int((b.src != PAD).sum()) for b in batches) / sentences  # mean real lengths
    flops = training_flops_per_token(setup.model_cfg, vocab, src_len, tokens / sentences)
    return {"tokens_per_sec": per_second(tokens, seconds),
            "seconds_per_step": {k: v / len(batches) for k, v in seconds.items()},
            "train_flops_per_token": flops,
            "padding_share": statistics.mean(padding_share(b) for b in batches)}


def bench_decoding(setup: Setup, precision: str, beam_size: int, use_cache: bool, batch_size: int) -> dict:
    torch.manual_seed(0)
    vocab = setup.tokenizers.src.vocab_size
    model = Transformer(setup.model_cfg, vocab, vocab, shared_vocab=True).to(setup.device).eval()
    encoded = [ids + [2] for ids in setup.tokenizers.src.encode_batch(setup.sources)]
    order = sorted(range(len(encoded)), key=lambda i: len(encoded[i]))
    batches = []
    for start in range(0, len(order), batch_size):
        chunk = [encoded[i] for i in order[start : start + batch_size]]
        src = torch.full((len(chunk), max(map(len, chunk))), PAD, dtype=torch.long)
        for row, ids in enumerate(chunk):
            src[row, : len(ids)] = torch.tensor(ids)
        batches.append(src.to(setup.device))
    # A random model never says EOS on its own: force a fixed output length so systems compare fairly.
    length = 24
    cfg = SearchConfig(beam_size=beam_size, max_len_a=0.0, max_len_b=length, min_len=length, use_cache=use_cache)
    search = greedy if beam_size == 1 else beam_search

    def run_all() -> None:
        with torch.no_grad(), attention_kernels(setup.device), autocast(setup.device, precision):
            for src in batches:
                search(model, src, cfg, 255)

    seconds = timed(run_all, warmup=1, repeats=3)
    return {"sentences_per_sec": per_second(len(setup.sources), seconds),
            "tokens_per_sec": per_second(len(setup.sources) * (length + 1), seconds)}


def padding_shares(setup: Setup, batch_tokens: int) -> dict:
    ids = setup.train_ids
    bucketed = token_batches(ids.src_lengths, ids.tgt_lengths, batch_tokens, torch.Generator().manual_seed(0))
    sentences = max(1, round(sum(len(b) for b in bucketed) / len(bucketed)))
    shuffled = list(torch.randperm(len(ids), generator=torch.Generator().manual_seed(0)).split(sentences))
    share = lambda batches: statistics.mean(padding_share(collate(ids, b)) for b in batches[:200])  # noqa: E731
    return {"random_batches": share(shuffled), "bucketed_batches": share(bucketed), "sentences_per_batch": sentences}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument("--smoke", action="store_true", help="tiny sizes: checks the benchmark runs, measures nothing")
    parser.add_argument("--output", default="bench.json")
    args = parser.parse_args()
    device = torch.device(args.device)
    precisions = ["fp32"] + (["bf16"] if device.type == "cuda" or cpu_supports_bf16() else [])
    setup = Setup(args.smoke, device)
    results: dict = {"device": _device_name(device), "torch": torch.__version__, "date": date.today().isoformat(),
                     "model": vars(setup.model_cfg), "vocab": setup.tokenizers.src.vocab_size,
                     "matmul_gflops": {}, "train": {}, "decode": {}}
    size, repeats, steps = (256, 3, 4) if args.smoke else (1024, 10, 20)
    for precision in precisions:
        results["matmul_gflops"][precision] = matmul_peak(size, {"fp32": torch.float32, "bf16": torch.bfloat16}[precision],
                                                          device, repeats)
        _log(f"matmul {precision}: {results['matmul_gflops'][precision]['median']:.0f} GFLOP/s")
        train = bench_training(setup, precision, 2048, steps)
        train["mfu"] = train["tokens_per_sec"]["median"] * train["train_flops_per_token"] / 1e9 / \
            results["matmul_gflops"][precision]["max"]
        results["train"][precision] = train
        _log(f"train {precision}: {train['tokens_per_sec']['median']:.0f} target tokens/s, MFU {train['mfu']:.2f}")
        for name, beam, cache in (("greedy", 1, True), ("greedy_uncached", 1, False), ("beam4", 4, True),
                                  ("beam4_uncached", 4, False)):
            results["decode"][f"{name}_{precision}"] = bench_decoding(setup, precision, beam, cache, 64)
            _log(f"decode {name} {precision}: "
                 f"{results['decode'][f'{name}_{precision}']['sentences_per_sec']['median']:.1f} sentences/s")
    results["padding"] = padding_shares(setup, 2048)
    med = lambda section, key, field: results[section][key][field]["median"]  # noqa: E731
    results["ratios"] = {
        "cached_vs_uncached_greedy": med("decode", "greedy_fp32", "sentences_per_sec")
        / med("decode", "greedy_uncached_fp32", "sentences_per_sec"),
        "cached_vs_uncached": med("decode", "beam4_fp32", "sentences_per_sec")
        / med("decode", "beam4_uncached_fp32", "sentences_per_sec"),
        "padding_random_vs_bucketed": results["padding"]["random_batches"] / results["padding"]["bucketed_batches"],
    }
    if "bf16" in precisions:
        results["ratios"]["train_bf16_vs_fp32"] = med("train", "bf16", "tokens_per_sec") / med("train", "fp32",
                                                                                               "tokens_per_sec")
        results["ratios"]["mfu_bf16"] = results["train"]["bf16"]["mfu"]
    Path(args.output).write_text(json.dumps(results, indent=2))
    print(_markdown(results))
    return 0


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"{platform.processor() or platform.machine()} CPU, {torch.get_num_threads()} threads"


def _markdown(results: dict) -> str:
    lines = [f"device: {results['device']} · torch {results['torch']} · {results['date']}", "",
             "| figure | min | median | max |", "|---|---|---|---|"]
    for precision, value in results["matmul_gflops"].items():
        lines.append(_row(f"matmul GFLOP/s, {precision}", value))
    for precision, value in results["train"].items():
        lines.append(_row(f"training target tokens/s, {precision}", value["tokens_per_sec"]))
    for name, value in results["decode"].items():
        lines.append(_row(f"decoding sentences/s, {name}", value["sentences_per_sec"]))
    lines += ["", "| ratio | value |", "|---|---|"]
    lines += [f"| {k} | {v:.2f} |" for k, v in results["ratios"].items()]
    return "\n".join(lines)


def _row(name: str, value: dict) -> str:
    return f"| {name} | {value['min']:.1f} | {value['median']:.1f} | {value['max']:.1f} |"


def _log(message: str) -> None:
    print(message, flush=True)


if __name__ == "__main__":
    main_guard(main)
