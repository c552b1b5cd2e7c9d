#!/usr/bin/env python
"""Deployment benchmark: CTranslate2 exports (fp32, int8) against our PyTorch decoder and Hugging Face
generate(), on the same sentences with the same forced output length, all on --threads CPU threads.

  python scripts/bench_deploy.py                 both sizes, and BLEU of the exports of runs/sample
  python scripts/bench_deploy.py --smoke         tiny sizes: checks that it runs (the tests use it)

What is measured: transformer_mt/benchmark/deploy.py. Writes bench-deploy.json and prints Markdown tables.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from transformer_mt.benchmark.deploy import DeployOptions, markdown, measure
from transformer_mt.benchmark.machine import ROOT
from transformer_mt.cli import main_guard
from transformer_mt.errors import UserError
from transformer_mt.malloc import retain_freed_memory


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true", help="tiny sizes: checks the benchmark runs, measures nothing")
    parser.add_argument("--no-peer", action="store_true", help="skip Hugging Face generate()")
    parser.add_argument("--threads", type=int, default=2, help="CPU threads for every system")
    parser.add_argument("--run", default=str(ROOT / "runs" / "sample"), help="a trained run for the BLEU check")
    parser.add_argument("--output", default="bench-deploy.json")
    args = parser.parse_args()
    if args.threads < 1:
        raise UserError(f"--threads must be at least 1, got {args.threads}")
    retain_freed_memory()
    results = measure(DeployOptions(args.smoke, not args.no_peer, args.threads, Path(args.run) if args.run else None))
    Path(args.output).write_text(json.dumps(results, indent=2))
    print(markdown(results))
    return 0


if __name__ == "__main__":
    main_guard(main)
