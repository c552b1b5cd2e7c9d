#!/usr/bin/env python
"""Translate a source file and score it: corpus BLEU and chrF (sacreBLEU settings, 13a tokenisation).

  python scripts/evaluate.py --run runs/sample                        the run's own saved test split
  python scripts/evaluate.py --run runs/mixed --corpus captions       one corpus's test split (data.corpora)
  python scripts/evaluate.py --run runs/sample --src test.en --ref test.fr [--ref test2.fr ...] --json
  python scripts/evaluate.py --model exports/sample-ct2 --src test.en --ref test.fr     a CTranslate2 export
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from transformer_mt.cli import (
    add_model_flags,
    add_search_flags,
    check_search_flags,
    decode_settings,
    main_guard,
    open_translator,
    output_path,
    writing,
)
from transformer_mt.data.corpus import held_out_files, read_lines
from transformer_mt.decoding.scores import corpus_scores
from transformer_mt.errors import UserError
from transformer_mt.malloc import retain_freed_memory
from transformer_mt.run_folder import find_checkpoint


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_model_flags(parser)
    parser.add_argument("--src", help="source sentences, one per line (default: the run's data/test split)")
    parser.add_argument("--ref", action="append", help="reference translations, one per line; repeat for more")
    parser.add_argument("--corpus", help="a run of several corpora (data.corpora): score this one's test split")
    add_search_flags(parser)
    parser.add_argument("--output", help="write the translations here, one per line")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    args = parser.parse_args()
    retain_freed_memory()
    if (args.src is None) != (args.ref is None):
        raise UserError("give --src and --ref together, or neither (the run's test split)")
    if args.corpus and args.src is not None:
        raise UserError("--corpus names a run's own test split: leave out --src and --ref")
    if args.model and args.src is None:
        raise UserError("an export holds no test split: give --src and --ref with --model")
    output = output_path("--output", args.output) if args.output else None
    check_search_flags(args)
    translator = open_translator(args)
    for note in translator.notes:
        print(note, file=sys.stderr)
    sources, references = _inputs(args)
    decode = decode_settings(args, translator.decode)
    started = time.perf_counter()
    notes: list[str] = []
    hypotheses = [hyps[0].text for hyps in translator.translate(sources, decode, notes=notes)]
    seconds = time.perf_counter() - started
    for note in notes:
        print(note, file=sys.stderr)
    scores = corpus_scores(hypotheses, references)
    if note := translator.empty_note(sources, hypotheses):
        print(note, file=sys.stderr)
    if output:
        with writing("--output", output):
            output.write_text("".join(h + "\n" for h in hypotheses), encoding="utf-8")
    report = {"bleu": round(scores.bleu, 2), "chrf": round(scores.chrf, 2), "signature": scores.signature,
              "sentences": len(sources), "seconds": round(seconds, 2), "beam_size": decode.beam_size,
              "checkpoint": str(translator.checkpoint), "step": translator.step}
    if args.json:
        print(json.dumps(report))
    else:
        print(f"BLEU {report['bleu']:.2f}  chrF {report['chrf']:.2f}  ({len(sources)} sentences, beam "
              f"{decode.beam_size}, {seconds:.1f} s, {translator.checkpoint})\nsignature: {scores.signature}")
    return 0


def _inputs(args: argparse.Namespace) -> tuple[list[str], list[list[str]]]:
    """--src and --ref, or the test split of the run the model flags name (an export has none: refused
    before the model loads)."""
    src, refs = args.src, args.ref
    if src is None:
        run, _ = find_checkpoint(args.run, args.checkpoint, args.runs)
        src_path, ref_path = held_out_files(run, "test", corpus=args.corpus)
        src, refs = str(src_path), [str(ref_path)]
    sources = _read_lines(src)
    if not sources:
        raise UserError(f"{src} is empty: no sentences to score")
    references = [_read_lines(path) for path in refs]
    for path, lines in zip(refs, references):
        if len(lines) != len(sources):
            raise UserError(f"{path} has {len(lines)} lines but {src} has {len(sources)}")
    return sources, references


def _read_lines(path: str) -> list[str]:
    file = Path(path)
    if not file.is_file():
        raise UserError(f"file not found: {path}")
    return list(read_lines(file))


if __name__ == "__main__":
    main_guard(main)
