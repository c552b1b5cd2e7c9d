#!/usr/bin/env python
"""Export a trained run, exactly the model of the checkpoint, with its tokenizers and decoding defaults:

  --format ctranslate2 (default): a CTranslate2 model folder (fp32 or quantized), decoded by our scripts
  python scripts/export.py --run runs/sample --quantization int8 --output exports/sample-ct2
  python scripts/translate.py --model exports/sample-ct2 "I am hungry."

  --format transformers: a Hugging Face folder (model, tokenizer, generation settings, model card) that
  `transformers` alone loads and that uploads to the Hub as it is (docs/deployment.md)
  python scripts/export.py --run runs/sample --format transformers --output exports/sample-hf
"""
from __future__ import annotations

import argparse
from pathlib import Path

from transformer_mt.cli import main_guard
from transformer_mt.decoding.ctranslate2_folder import QUANTIZATIONS
from transformer_mt.errors import UserError
from transformer_mt.run_folder import find_checkpoint


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", help="run folder (default: the latest under --runs)")
    parser.add_argument("--runs", default="runs", help="where to look for the latest run")
    parser.add_argument("--checkpoint", help="checkpoint file (default: the run's best.pt, else last.pt)")
    parser.add_argument("--format", default="ctranslate2", choices=("ctranslate2", "transformers"))
    parser.add_argument("--quantization", choices=QUANTIZATIONS,
                        help="ctranslate2: weights as stored and computed: float32 (the default, exact), int8 "
                             "(fastest on CPU), ...")
    parser.add_argument("--no-evaluate", action="store_true",
                        help="transformers: leave the test-split BLEU/chrF out of the model card (saves decoding it)")
    parser.add_argument("--output", help="export folder (default: exports/RUN-ct2[-QUANTIZATION], exports/RUN-hf)")
    parser.add_argument("--force", action="store_true", help="replace an existing, non-empty --output")
    args = parser.parse_args()
    if args.format == "transformers" and args.quantization:
        raise UserError("--quantization is for --format ctranslate2: a transformers export is float32")
    if args.format == "ctranslate2" and args.no_evaluate:
        raise UserError("--no-evaluate is for --format transformers: a CTranslate2 export has no model card")
    run, checkpoint = find_checkpoint(args.run, args.checkpoint, args.runs)  # as translate/evaluate/serve
    if args.format == "transformers":
        return _transformers(run, checkpoint, args)
    quantization = args.quantization or "float32"
    suffix = "" if quantization == "float32" else f"-{quantization}"
    output = Path(args.output or f"exports/{run.root.name}-ct2{suffix}")
    from transformer_mt.export.ctranslate2 import export_ctranslate2  # PyTorch loads once the flags are checked

    meta = export_ctranslate2(run, checkpoint, output, quantization, args.force)
    print(f"exported {meta.checkpoint} (step {meta.step}, {meta.quantization}) to {output}\n"
          f"translate with it: python scripts/translate.py --model {output} \"I am hungry.\"")
    return 0


def _transformers(run, checkpoint: Path | None, args: argparse.Namespace) -> int:
    from transformer_mt.export.transformers import export_transformers

    output = Path(args.output or f"exports/{run.root.name}-hf")
    done = export_transformers(run, checkpoint, output, args.force, evaluate=not args.no_evaluate)
    scores = (f"; test split BLEU {done.evaluation.bleu:.2f}, chrF {done.evaluation.chrf:.2f}"
              if done.evaluation else "")
    print(f"exported {done.checkpoint} (step {done.step}) as {done.model_class} to {output}{scores}\n"
          f"publish it: hf auth login, then hf upload USER/{run.root.name} {output}")
    return 0


if __name__ == "__main__":
    main_guard(main)
