#!/usr/bin/env python
"""Which sentence splitter the server uses, measured (docs/serving.md, "Paragraphs"): sentences of a
file joined five at a time into paragraphs (does the splitter find every join?), and hand-written
sentences with traps (abbreviations, initials, decimals, quotes, ellipses). Prints a Markdown table.

  pip install sentencex pysbd blingfire
  python scripts/bench_splitters.py --sentences runs/sample/data/test.en
"""
from __future__ import annotations

import argparse
import importlib
import re
import time
from pathlib import Path

from transformer_mt.cli import main_guard
from transformer_mt.errors import UserError

PROSE = [
    ("Mr. Smith arrived at 3.30 p.m. on Friday. He was late, e.g. by an hour.",
     ["Mr. Smith arrived at 3.30 p.m. on Friday.", "He was late, e.g. by an hour."]),
    ('"Are you coming?" she asked. "Yes!" he said.', ['"Are you coming?" she asked.', '"Yes!" he said.']),
    ("The U.S. economy grew 2.5% in 2023. Dr. Jones disagrees... Why? Nobody knows.",
     ["The U.S. economy grew 2.5% in 2023.", "Dr. Jones disagrees...", "Why?", "Nobody knows."]),
    ("I live at No. 5 Baker St. in London. It is near the station.",
     ["I live at No. 5 Baker St. in London.", "It is near the station."]),
    ("He said (quietly) that it was fine. Then he left!", ["He said (quietly) that it was fine.", "Then he left!"]),
    ("Prices rose by approx. 10 per cent. See Fig. 2 for details.",
     ["Prices rose by approx. 10 per cent.", "See Fig. 2 for details."]),
    ("It was 5 a.m. The birds were singing.", ["It was 5 a.m.", "The birds were singing."]),
    ("She bought apples, pears, etc. Then she went home.", ["She bought apples, pears, etc.", "Then she went home."]),
]


def splitters() -> dict:
    def load(name: str):
        try:
            return importlib.import_module(name)
        except ImportError:
            raise UserError(f"this needs {name}: pip install sentencex pysbd blingfire") from None

    sentencex, pysbd, blingfire = load("sentencex"), load("pysbd"), load("blingfire")
    segmenter = pysbd.Segmenter(language="en", clean=False)
    return {f"sentencex {_version('sentencex')}": lambda t: sentencex.segment("en", t),
            f"pysbd {_version('pysbd')}": segmenter.segment,
            f"blingfire {_version('blingfire')}": lambda t: blingfire.text_to_sentences(t).split("\n")}


def _version(name: str) -> str:
    from importlib.metadata import version

    return version(name)


def joins_missed(split, paragraph: list[str]) -> tuple[int, int]:
    """(joins of the paragraph's lines not found as sentence ends, cuts inside a line not after . ! ?)"""
    text = " ".join(paragraph)
    joins, position = set(), 0
    for line in paragraph[:-1]:
        position += len(line)
        joins.add(position)
        position += 1
    ends, cursor, odd = set(), 0, 0
    for piece in (p.strip() for p in split(text)):
        if not piece:
            continue
        cursor = text.index(piece, cursor) + len(piece)
        ends.add(cursor)
        if cursor not in joins and cursor != len(text) and not re.search(r"[.!?…][\"'»)]*$", piece):
            odd += 1
    return len(joins - ends), odd


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sentences", default="runs/sample/data/test.en", help="one sentence per line")
    args = parser.parse_args()
    path = Path(args.sentences)
    if not path.is_file():
        raise UserError(f"{path} not found: name a file of sentences, one per line (a run's data/test.en)")
    lines = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    paragraphs = [lines[i : i + 5] for i in range(0, len(lines) - 4, 5)]
    print("| splitter | paragraphs with every join found | joins missed | cuts not after . ! ? | tricky prose exact "
          "| seconds |\n|---|---|---|---|---|---|")
    for name, split in splitters().items():
        started = time.perf_counter()
        counts = [joins_missed(split, paragraph) for paragraph in paragraphs]
        seconds = time.perf_counter() - started
        exact = sum([p.strip() for p in split(text) if p.strip()] == want for text, want in PROSE)
        print(f"| {name} | {sum(m == 0 for m, _ in counts)} / {len(paragraphs)} | {sum(m for m, _ in counts)} "
              f"| {sum(o for _, o in counts)} | {exact} / {len(PROSE)} | {seconds:.2f} |")
    return 0


if __name__ == "__main__":
    main_guard(main)
