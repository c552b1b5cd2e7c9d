#!/usr/bin/env python
"""The CUDA check, as one command on a machine with a GPU and no network (make check-gpu):

  1. tests    the CUDA tests (tests/test_cuda.py): every one must run and pass;
  2. matmul   the GPU's bf16 matmul peak (the best of 8192^3 and 16384^3);
  3. training configs/base.yaml (Transformer-base, bf16, 12,000-token batches) on the embedded sample,
              --minutes with PyTorch's attention dispatch and --minutes with flash + memory-efficient
              only: target tokens/s, MFU, peak GPU memory, validation BLEU of each;
  4. bench    scripts/bench.py --device cuda, stopped after --bench-seconds (it keeps what it measured).
Results go to --output as each stage ends (results.json, log.txt, bench.json, events/). A first run
takes at most --budget-minutes (6); rerun what failed with --stages and --pytest-args:

  python3 scripts/check_gpu.py --output DIR --stages tests --pytest-args "-k resume"

It uses the PyTorch installed there (never reinstalls it); docs/gpu-check.md says what each figure
means. --device cpu --smoke checks the plumbing on a CPU (configs/tiny.yaml; the tests use it).
"""
from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # runs where this checkout is not installed

from transformer_mt.benchmark.gpu_check import STAGES, CheckOptions, run_check  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    defaults = CheckOptions(Path())
    parser.add_argument("--output", default=os.environ.get("OUT") or "check-gpu", help="results folder")
    parser.add_argument("--stages", default=",".join(STAGES), help=f"comma-separated, from {','.join(STAGES)}")
    parser.add_argument("--pytest-args", default="", help="added to the tests stage's pytest command, e.g. '-k resume'")
    parser.add_argument("--minutes", type=float, default=defaults.minutes,
                        help="training time of each attention variant")
    parser.add_argument("--bench-seconds", type=int, default=defaults.bench_seconds, help="cap on scripts/bench.py")
    parser.add_argument("--budget-minutes", type=float, default=defaults.budget_minutes, help="the whole check's cap")
    parser.add_argument("--wheels", default=str(defaults.wheels), help="wheels of packages the machine lacks")
    parser.add_argument("--device", default="cuda", choices=("cuda", "cpu"))
    parser.add_argument("--smoke", action="store_true", help="configs/tiny.yaml for seconds (with --device cpu)")
    args = parser.parse_args()
    stages = tuple(s.strip() for s in args.stages.split(",") if s.strip())
    if not stages or set(stages) - set(STAGES):
        parser.error(f"--stages: expected some of {','.join(STAGES)}, got {args.stages!r}")
    if not (args.minutes > 0 and args.budget_minutes > 0 and args.bench_seconds > 0):
        parser.error("--minutes, --budget-minutes and --bench-seconds must be greater than 0")
    status, results = run_check(CheckOptions(Path(args.output), stages, args.minutes, args.bench_seconds,
                                             args.budget_minutes, Path(args.wheels), args.device, args.smoke,
                                             shlex.split(args.pytest_args)))
    print(json.dumps(results, indent=1))
    if "error" in results and status == 2:
        print(f"error: {results['error']}", file=sys.stderr)
    return status


if __name__ == "__main__":
    sys.exit(main())
