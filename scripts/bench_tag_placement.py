#!/usr/bin/env python
"""Where an inline tag goes in a translation, measured two ways (docs/serving.md, "Inline tags").

The tagged set: test sentences (one sentence a line) holding exactly one word of a small English→French
lexicon, that word in <b>; kept where the sentence's translation holds exactly one of the word's French
forms, which is where the tag belongs. Then:
- fragments (Argos Translate's way): the tagged word translated alone and found in the sentence's
  translation (as a whole word, else the most similar word, else the same share of the sentence);
- alignment (the server's way, placement.py over translator.align): the translation scored by the
  model once more, each of its tokens aligned to the source token it attends to most in the penultimate
  decoder layer (averaged over heads), the tag put round the words whose tokens align to the tagged
  word's; and the same with each layer, and with the mean of all layers.
A placement is right when it covers exactly the French form's characters. Prints a Markdown table.
The code is transformer_mt/benchmark/tag_placement.py.

  python scripts/bench_tag_placement.py --run runs/sample
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

from transformer_mt.benchmark.tag_placement import by_alignment, by_attention, by_fragments, tagged_set
from transformer_mt.cli import main_guard
from transformer_mt.decoding.pytorch import Translator
from transformer_mt.errors import UserError
from transformer_mt.run_folder import open_run


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", default="runs/sample", help="a trained run folder")
    parser.add_argument("--limit", type=int, default=400, help="tagged sentences at most")
    args = parser.parse_args()
    translator = Translator(open_run(Path(args.run)), device="cpu")
    path = translator.run.root / "data" / "test.en"
    if not path.is_file():
        raise UserError(f"{path} not found: the run has no test split")
    sentences = [s.strip() for s in path.read_text(encoding="utf-8").splitlines() if s.strip()]
    translations = [t[0].text for t in translator.translate(sentences)]
    cases = tagged_set(sentences, translations)[: args.limit]
    layers = len(translator.model.decoder)
    ways = {"fragments (translated alone, found)": lambda: by_fragments(translator, cases),
            "alignment (the server's: penultimate layer, placement.py)": lambda: by_alignment(translator, cases),
            "attention, mean of all layers": lambda: by_attention(translator, cases, None)}
    for layer in range(layers):
        ways[f"attention, layer {layer + 1}"] = lambda layer=layer: by_attention(translator, cases, layer)
    print(f"{len(cases)} tagged sentences from {path} ({len(sentences)} sentences)\n")
    print("| placement | exactly the word | overlaps the word | ms per sentence |\n|---|---|---|---|")
    for name, way in ways.items():
        started = time.perf_counter()
        placed = way()
        ms = (time.perf_counter() - started) / max(len(cases), 1) * 1000
        exact = sum(p == c[3] for p, c in zip(placed, cases))
        overlap = sum(p[0] < c[3][1] and c[3][0] < p[1] for p, c in zip(placed, cases))
        print(f"| {name} | {100 * exact / len(cases):.1f} % | {100 * overlap / len(cases):.1f} % | {ms:.1f} |")
    return 0


if __name__ == "__main__":
    main_guard(main)
