#!/usr/bin/env python
"""Benchmarks, run sequentially in one process, ours side by side with a same-size HF Marian model.

  python scripts/bench.py                       # full run (10-15 min on 2 CPU cores): bench.json + Markdown
  python scripts/bench.py --smoke               # tiny sizes, checks that everything runs (the tests use it)
  python scripts/bench.py --no-peer             # without transformers installed

What is measured and how to read it: docs/performance.md. The code: transformer_mt/benchmark/.
"""
from __future__ import annotations

import argparse
import math
from pathlib import Path

from transformer_mt.benchmark import suite
from transformer_mt.benchmark.report import markdown
from transformer_mt.cli import main_guard, output_path, writing
from transformer_mt.errors import UserError
from transformer_mt.malloc import retain_freed_memory


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
    def so_far(partial) -> None:  # a run stopped part-way (make check-gpu's cap) keeps its figures
        part = output.with_name(output.name + ".part")
        with writing("--output", part):
            part.write_text(partial.to_json())
            part.replace(output)  # whole or not at all, even if stopped mid-write

    report = suite.measure(suite.Options(args.device, args.smoke, not args.no_peer, args.train_minutes, so_far))
    report.retain_freed_memory = retained
    print(markdown(report))  # first: if the file cannot be written after all, the figures are on screen
    with writing("--output", output):
        output.write_text(report.to_json())
    if report.quality is not None and report.quality.error is not None:
        raise UserError(f"quality per budget failed ({output} has the other figures): {report.quality.error}")
    return 0


def _check_args(args: argparse.Namespace) -> Path:
    """Refuse what would only fail after minutes of measuring."""
    if not 0 <= args.train_minutes < math.inf:
        raise UserError(f"--train-minutes must be a number of minutes >= 0 (0 skips it), got {args.train_minutes}")
    return output_path("--output", args.output)


if __name__ == "__main__":
    main_guard(main)
