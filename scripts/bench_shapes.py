#!/usr/bin/env python
"""Distinct kernel shapes per epoch, and what rounding batch shapes does to training (docs/performance.md).

  python scripts/bench_shapes.py                    the quick start's data and model (~6 min on 2 cores)
  python scripts/bench_shapes.py --precision bf16   another precision than train.precision=auto picks
  python scripts/bench_shapes.py --smoke            tiny sizes: checks that it runs (the tests use it)
  python scripts/bench_shapes.py --make-bench       also: the matrix products of make bench's training
                                                    phase, replayed in its turn order through the cache
                                                    (needs the bench extra: transformers)

Prepares configs/sample.yaml's corpus in a temporary folder, then:
1. the census of one epoch's batch plan under each rounding (batching.Shapes): batches, distinct
   batch shapes, encoder and decoder row counts, linear-layer shapes, and the padding it costs; the
   GEMM shapes (backward products too), and how many kernels a least-recently-used cache of oneDNN's
   default 1,024 entries would build over the epoch;
2. the trainer's update on the first --steps fresh batches of each rounding, taking turns step by
   step: real target tokens/s, and its ratio to the unrounded plan's;
3. one profile (torch.profiler, shapes recorded) of --profile-steps fresh updates, unrounded and with
   rows rounded to 32 (what train.row_multiple=auto picks for bf16 on CPU): the busiest ops, the
   shares of the GEMMs and of copies (dtype casts and layout copies), the elements cast per update
   (weight-shaped against activations), and GEMM GFLOP/s by shape.
Writes bench-shapes.json and prints Markdown tables.
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
from dataclasses import asdict, replace
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

ROUNDINGS = {"none": (1, 1), "rows 32": (1, 32), "length 2, rows 32": (2, 32), "length 4, rows 32": (4, 32),
             "length 8, rows 64": (8, 64)}
TIMED = ("none", "rows 32", "length 2, rows 32", "length 4, rows 32")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--precision", choices=["auto", "fp32", "bf16"], default="auto")
    parser.add_argument("--steps", type=int, default=120, help="timed updates per rounding")
    parser.add_argument("--profile-steps", type=int, default=20)
    parser.add_argument("--output", default="bench-shapes.json")
    parser.add_argument("--smoke", action="store_true")
    parser.add_argument("--make-bench", action="store_true",
                        help="count the kernels make bench's interleaved training jobs would build")
    args = parser.parse_args()
    if args.steps < 2 or args.profile_steps < 1:
        parser.error("--steps must be at least 2 and --profile-steps at least 1")
    if not Path(args.output).resolve().parent.is_dir():
        parser.error(f"--output: no folder {Path(args.output).resolve().parent}")

    import torch

    from transformer_mt.benchmark import shapes as bench
    from transformer_mt.benchmark.suite import cpu_model
    from transformer_mt.config import load_config
    from transformer_mt.data.batching import Shapes
    from transformer_mt.malloc import retain_freed_memory
    from transformer_mt.model.device import pick_precision, row_multiple
    from transformer_mt.training.setup import set_up_run

    retain_freed_memory()
    device = torch.device("cpu")
    report_bench = asdict(bench_training_turns(args.smoke)) if args.make_bench else None  # first: it may need the peer
    with tempfile.TemporaryDirectory() as folder:
        overrides = [f"run.root={folder}", "run.name=shapes"]
        if args.smoke:
            overrides += ["data.max_pairs=2000", "tokenizer.vocab_size=500", "model.d_model=32", "model.n_heads=2",
                          "model.encoder_layers=1", "model.decoder_layers=1", "model.d_ff=64"]
            args.steps, args.profile_steps = min(args.steps, 4), min(args.profile_steps, 2)
        config = load_config(ROOT / "configs" / "sample.yaml", overrides)
        precision = pick_precision(args.precision, device)
        train = replace(config.train, precision=precision)
        prepared = set_up_run(config, log=lambda *_: None)
        corpus, vocab = prepared.train_ids, prepared.tokenizers.tgt.vocab_size
        roundings = {name: Shapes(*multiples) for name, multiples in ROUNDINGS.items()}
        censuses = {name: bench.census(corpus, train.batch_tokens, train.seed, shapes, config.model, vocab)
                    for name, shapes in roundings.items()}
        timed = bench.timed_updates(corpus, train, config.model, vocab, precision,
                                    {name: roundings[name] for name in TIMED}, args.steps)
        profiles = {name: bench.profile_updates(corpus, train, config.model, vocab, precision, roundings[name],
                                                args.profile_steps)
                    for name in ("none", "rows 32")}
    report = {"device": cpu_model(), "machine": platform.machine(), "torch": torch.__version__,
              "date": date.today().isoformat(), "precision": precision, "smoke": args.smoke,
              "row_multiple_auto": row_multiple(None, device, precision),
              "batch_tokens": train.batch_tokens, "census": {k: asdict(v) for k, v in censuses.items()},
              "timed": {k: asdict(v) for k, v in timed.items()},
              "ratios": {k: v.tokens_per_sec / timed["none"].tokens_per_sec for k, v in timed.items()},
              "profiles": {k: asdict(v) for k, v in profiles.items()}}
    if args.make_bench:
        report["make_bench_training"] = report_bench
    Path(args.output).write_text(json.dumps(report, indent=2) + "\n")
    print(markdown(report))
    return 0


def bench_training_turns(smoke: bool):
    """shapes.TurnsCensus of make bench's training jobs (fp32: the same matrix shapes as bf16), matmul peak
    included."""
    import torch

    from transformer_mt.benchmark import shapes as bench
    from transformer_mt.benchmark.suite import Sizes, training_batchings, training_jobs
    from transformer_mt.benchmark.systems import ours, peer
    from transformer_mt.benchmark.timing import MatmulPeak
    from transformer_mt.benchmark.workload import Workload
    from transformer_mt.model.device import DTYPES

    device = torch.device("cpu")
    work, sizes = Workload(smoke, device), Sizes.of(smoke, device)
    systems = [ours(work.model_cfg, work.vocab, device), peer(work.model_cfg, work.vocab, device)]
    jobs, _ = training_jobs(systems, training_batchings(work, sizes), "fp32", device)
    peak = MatmulPeak(sizes.matmul, DTYPES["fp32"], device)
    return bench.turns_census({"matmul": peak.job, **jobs}, *sizes.rounds,
                              capacities=(bench.ONEDNN_DEFAULT_CACHE, 4096))


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


if __name__ == "__main__":
    from transformer_mt.cli import main_guard

    main_guard(main)
