#!/usr/bin/env python
"""Does a `transformers` export translate as the run does? Its run's test split decoded by our PyTorch
decoder and by `generate` on the export, greedy and with the run's beam size: identical lines, BLEU and
chrF of each, the first lines that differ. Writes bench-export.json and prints a Markdown table.

  python scripts/export.py --run runs/sample --format transformers --output exports/sample-hf
  python scripts/bench_export.py --run runs/sample --export exports/sample-hf
"""
from __future__ import annotations

import argparse
import json
import platform
from dataclasses import asdict
from pathlib import Path

import torch

from transformer_mt.benchmark.export_agreement import measure, test_split
from transformer_mt.benchmark.machine import cpu_model
from transformer_mt.cli import main_guard
from transformer_mt.decoding.pytorch import Translator
from transformer_mt.errors import UserError
from transformer_mt.run_folder import open_run


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", default="runs/sample", help="the run folder (its test split and checkpoint)")
    parser.add_argument("--export", default="exports/sample-hf", help="its transformers export")
    parser.add_argument("--checkpoint", help="the checkpoint the export was made from (default: the run's best.pt)")
    parser.add_argument("--limit", type=int, help="only the first LIMIT test sentences")
    parser.add_argument("--json", default="bench-export.json", help="where to write the results")
    args = parser.parse_args()
    folder = Path(args.export)
    if not (folder / "config.json").is_file():
        raise UserError(f"{folder} is not a transformers export: make one with scripts/export.py --format transformers")
    translator = Translator(open_run(Path(args.run)), Path(args.checkpoint) if args.checkpoint else None, device="cpu")
    sources, references = test_split(translator)
    sources, references = sources[: args.limit], references[: args.limit]
    results = [measure(translator, folder, beam, sources, references)
               for beam in sorted({1, translator.decode.beam_size})]
    import transformers

    report = {"cpu": cpu_model(), "threads": torch.get_num_threads(), "torch": torch.__version__,
              "transformers": transformers.__version__, "python": platform.python_version(),
              "run": args.run, "export": args.export, "checkpoint": str(translator.checkpoint),
              "results": [asdict(r) | {"identical_share": round(r.identical_share, 4)} for r in results]}
    Path(args.json).write_text(json.dumps(report, indent=1, ensure_ascii=False))
    print(f"{report['cpu']}, torch {report['torch']}, transformers {report['transformers']}\n\n"
          "| search | identical lines | BLEU ours | BLEU transformers | chrF ours | chrF transformers |\n"
          "|---|---|---|---|---|---|")
    for r in results:
        print(f"| {r.search} | {r.identical}/{r.sentences} ({100 * r.identical_share:.2f} %) | {r.bleu_ours:.2f} | "
              f"{r.bleu_transformers:.2f} | {r.chrf_ours:.2f} | {r.chrf_transformers:.2f} |")
    return 0


if __name__ == "__main__":
    main_guard(main)
