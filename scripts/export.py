#!/usr/bin/env python
"""Export a trained run for deployment: a CTranslate2 model folder (fp32 or quantized), exactly the
model of the checkpoint, with its tokenizers and decoding defaults.

  python scripts/export.py --run runs/sample --quantization int8 --output exports/sample-ct2
  python scripts/translate.py --model exports/sample-ct2 "I am hungry."
"""
from __future__ import annotations

import argparse
from pathlib import Path

from transformer_mt.cli import main_guard
from transformer_mt.errors import UserError
from transformer_mt.export.ctranslate2 import QUANTIZATIONS, export_ctranslate2
from transformer_mt.run_folder import latest_run, open_run


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", help="run folder (default: the latest under --runs)")
    parser.add_argument("--runs", default="runs", help="where to look for the latest run")
    parser.add_argument("--checkpoint", help="checkpoint file (default: the run's best.pt, else last.pt)")
    parser.add_argument("--format", default="ctranslate2", choices=("ctranslate2",))
    parser.add_argument("--quantization", default="float32", choices=QUANTIZATIONS,
                        help="weights as stored and computed: float32 (exact), int8 (fastest on CPU), ...")
    parser.add_argument("--output", help="export folder (default: exports/RUN-ct2[-QUANTIZATION])")
    parser.add_argument("--force", action="store_true", help="replace an existing, non-empty --output")
    args = parser.parse_args()
    run = open_run(Path(args.run)) if args.run else latest_run(Path(args.runs))
    checkpoint = Path(args.checkpoint) if args.checkpoint else None
    if checkpoint is not None and not checkpoint.is_file():
        raise UserError(f"checkpoint not found: {checkpoint}")
    suffix = "" if args.quantization == "float32" else f"-{args.quantization}"
    output = Path(args.output or f"exports/{run.root.name}-ct2{suffix}")
    meta = export_ctranslate2(run, checkpoint, output, args.quantization, args.force)
    print(f"exported {meta.checkpoint} (step {meta.step}, {meta.quantization}) to {output}\n"
          f"translate with it: python scripts/translate.py --model {output} \"I am hungry.\"")
    return 0


if __name__ == "__main__":
    main_guard(main)
