#!/usr/bin/env python
"""Distinct kernel shapes per epoch, and what rounding batch shapes does to training (docs/performance.md).

  python scripts/bench_shapes.py                    the quick start's data and model (~6 min on 2 cores)
  python scripts/bench_shapes.py --precision bf16   another precision than train.precision=auto picks
  python scripts/bench_shapes.py --smoke            tiny sizes: checks that it runs (the tests use it)
  python scripts/bench_shapes.py --make-bench       also: the matrix products of make bench's training
                                                    phase, replayed in its turn order through the cache
                                                    (needs the bench extra: transformers)

Prepares configs/sample.yaml's corpus in a temporary folder, then: the census of one epoch's batch plan
under each rounding (GEMM shapes, kernels an LRU cache of oneDNN's 1,024 entries would build, padding);
the trainer's update on --steps fresh batches of each rounding, taking turns; one profile of
--profile-steps fresh updates, unrounded and with rows rounded to 32. What each figure is:
transformer_mt/benchmark/shapes.py and docs/performance.md. Writes bench-shapes.json and prints
Markdown tables.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from transformer_mt.cli import main_guard


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
    # PyTorch loads only once the flags are known to be good.
    from transformer_mt.benchmark.shapes import ShapesOptions, markdown, measure
    from transformer_mt.malloc import retain_freed_memory

    retain_freed_memory()
    report = measure(ShapesOptions(args.precision, args.steps, args.profile_steps, args.smoke, args.make_bench))
    Path(args.output).write_text(json.dumps(report, indent=2) + "\n")
    print(markdown(report))
    return 0


if __name__ == "__main__":
    main_guard(main)
