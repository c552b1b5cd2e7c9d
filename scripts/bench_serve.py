#!/usr/bin/env python
"""Serving benchmark: the real server (scripts/serve.py) under 1, 8, 32 and 128 closed-loop clients
(asyncio + httpx on this machine, one test-split sentence per LibreTranslate request), with and without
batching across requests, beside offline batch translation of the same sentences with the same backend
and threads; then an overload run and a 5-minute soak (docs/serving.md).

  make bench-serve                       the quick-start run's int8 export and PyTorch model (~12 min)
  python scripts/bench_serve.py --smoke  tiny sizes: checks that it runs (the tests use it)

Writes bench-serve.json (with "complete": false until it has finished) and prints Markdown tables.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

from transformer_mt.cli import main_guard
from transformer_mt.data.corpus import read_lines
from transformer_mt.errors import UserError

ROOT = Path(__file__).resolve().parent.parent


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", default="runs/sample", help="the PyTorch backend, and its test split")
    parser.add_argument("--model", help="the CTranslate2 backend (default: exports/RUN-ct2-int8); "
                                        "'none' for the PyTorch backend alone")
    parser.add_argument("--sentences", help="source sentences, one per line (default: the run's test split)")
    parser.add_argument("--threads", type=int, default=2, help="decoding threads, offline and in the server")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes: checks the benchmark runs, measures nothing")
    parser.add_argument("--output", default="bench-serve.json")
    args = parser.parse_args()
    if args.threads < 1:
        raise UserError(f"--threads must be at least 1, got {args.threads}")
    from transformer_mt.benchmark.serving import ServeSizes, markdown, measure

    run = Path(args.run)
    sentences = single_sentences(run, args.sentences)
    output = Path(args.output)

    def save(report) -> None:
        output.write_text(json.dumps(dataclasses.asdict(report), indent=2, ensure_ascii=False))

    report = measure(backends(run, args.model, args.threads), sentences, args.threads, ServeSizes.of(args.smoke), save)
    save(report)
    print(markdown(report))
    return 0


def single_sentences(run: Path, given: str | None) -> list[str]:
    """The lines the server's splitter leaves whole, so that offline and served decode the same pieces."""
    from transformer_mt.run_folder import open_run
    from transformer_mt.serving.paragraphs import Paragraph

    if given:
        path = Path(given)
    else:
        from transformer_mt.data.corpus import held_out_files

        path = held_out_files(open_run(run), "test")[0]
    if not path.is_file():
        raise UserError(f"no sentences at {path}: pass --sentences FILE")
    found = [line for line in read_lines(path) if line.strip() and len(Paragraph.of(line).sentences) == 1]
    if not found:
        raise UserError(f"{path} holds no sentence to send")
    return found


def backends(run: Path, model: str | None, threads: int) -> list:
    from transformer_mt.benchmark.serving import Backend
    from transformer_mt.decoding.ctranslate2 import ExportedTranslator
    from transformer_mt.decoding.pytorch import Translator
    from transformer_mt.run_folder import open_run

    found = []
    if model != "none":
        folder = Path(model) if model else ROOT / "exports" / f"{run.name}-ct2-int8"
        if not folder.is_dir():
            raise UserError(f"no export at {folder}: make export RUN={run} ARGS=\"--quantization int8\"")
        found.append(Backend(f"ctranslate2 {_quantization(folder)}", ["--model", str(folder)],
                             lambda: ExportedTranslator(folder, "cpu", threads)))
    found.append(Backend("pytorch fp32", ["--run", str(run)],
                         lambda: Translator(open_run(run), device="cpu")))
    return found


def _quantization(folder: Path) -> str:
    from transformer_mt.decoding.ctranslate2_folder import read_meta

    return read_meta(folder).quantization


if __name__ == "__main__":
    main_guard(main)
