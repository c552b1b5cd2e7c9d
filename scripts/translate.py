#!/usr/bin/env python
"""Translate English sentences to French with a trained run.

  python scripts/translate.py "I am hungry."            one or more sentences as arguments
  echo "I am hungry." | python scripts/translate.py     or one sentence per line on standard input
  python scripts/translate.py --model exports/sample-ct2 "I am hungry."    with a CTranslate2 export

The model is loaded once; input is batched by length and printed in input order. Without --run or
--checkpoint the most recently trained run under runs/ is used (its best.pt, else last.pt).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

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
from transformer_mt.errors import UserError
from transformer_mt.malloc import retain_freed_memory

if TYPE_CHECKING:  # translating with an export never loads PyTorch, which decoding/pytorch.py imports
    from transformer_mt.decoding.pytorch import Translator


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("sentences", nargs="*", help="sentences to translate (default: standard input)")
    add_model_flags(parser)
    add_search_flags(parser)
    parser.add_argument("--nbest", type=int, default=1, help="print this many hypotheses per sentence, with scores")
    parser.add_argument("--attention", metavar="OUT.png", help="save the cross-attention heatmaps of the sentence")
    args = parser.parse_args()
    retain_freed_memory()
    if args.attention and args.model:
        raise UserError("--attention needs a run's PyTorch model, not an export (--model)")
    attention = _attention_path(args.attention) if args.attention else None
    check_search_flags(args)
    translator = open_translator(args)
    for note in translator.notes:
        print(note, file=sys.stderr)
    decode = decode_settings(args, translator.decode)
    if not 1 <= args.nbest <= decode.beam_size:
        raise UserError(f"--nbest must be between 1 and the beam size ({decode.beam_size})")
    sentences = args.sentences if args.sentences else [line.rstrip("\n") for line in sys.stdin]
    if attention:
        _save_attention(translator, sentences, attention)
    notes: list[str] = []
    translations = translator.translate(sentences, decode, args.nbest, notes)
    for note in notes:
        print(note, file=sys.stderr)
    for hyps in translations:
        if args.nbest == 1:
            print(hyps[0].text)
        else:
            for rank, hyp in enumerate(hyps):
                print(f"{rank}\t{hyp.score:.4f}\t{hyp.text}")
    sys.stdout.flush()
    if note := translator.empty_note(sentences, [hyps[0].text for hyps in translations]):
        print(note, file=sys.stderr)
    return 0


def _attention_path(value: str) -> Path:
    """Checked before the model loads. matplotlib picks the format from the extension and adds .png to
    a name without one, which would write a file the user did not name."""
    from transformer_mt.decoding.heatmaps import figures_available

    if not figures_available():
        raise UserError("--attention needs matplotlib: pip install -e '.[plot]'")
    from matplotlib.backend_bases import FigureCanvasBase

    path, formats = output_path("--attention", value), FigureCanvasBase.get_supported_filetypes()
    if path.suffix.lstrip(".").lower() not in formats:
        raise UserError(f"--attention {path}: name an image file ending in .{', .'.join(sorted(formats))}")
    return path


def _save_attention(translator: Translator, sentences: list[str], path: Path) -> None:
    from transformer_mt.decoding.heatmaps import cross_attention_figure

    if len(sentences) != 1 or not sentences[0].strip():
        raise UserError("--attention takes exactly one non-empty sentence")
    figure = cross_attention_figure(translator.model, translator.tokenizers, sentences[0], translator.device,
                                    self_attention=True)
    with writing("--attention", path):
        figure.savefig(path, dpi=120)
    print(f"attention heatmaps saved to {path}", file=sys.stderr)


if __name__ == "__main__":
    main_guard(main)
