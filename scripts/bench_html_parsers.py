#!/usr/bin/env python
"""Which HTML library the server's `format: html` uses, measured (docs/serving.md, "HTML"): for each
candidate, parse a fragment and write it back with nothing changed. Does a well-formed fragment come
back byte for byte? Is the answer stable (a second round trip changes nothing, so what we return parses
as what we built)? Does random or broken markup ever raise? And the time per round trip of an article,
walking every text node. Prints a Markdown table.

  pip install beautifulsoup4 lxml selectolax html5lib
  python scripts/bench_html_parsers.py
"""
from __future__ import annotations

import importlib
import time
from importlib.metadata import version

from transformer_mt.benchmark.html_pages import PAGES, random_markup
from transformer_mt.cli import main_guard
from transformer_mt.errors import UserError

SLOPPY = {"unclosed", "whitespace", "text only"}  # not expected back byte for byte by every parser


def _load(name: str):
    try:
        return importlib.import_module(name)
    except ImportError:
        raise UserError(f"this needs {name}: pip install beautifulsoup4 lxml selectolax html5lib") from None


def candidates() -> dict:
    bs4, lxml_html, lexbor, html5lib = (_load("bs4"), _load("lxml.html"), _load("selectolax.lexbor"),
                                        _load("html5lib"))

    def soup(builder: str):
        def round_trip(text: str) -> tuple[str, int]:
            tree = bs4.BeautifulSoup(text, builder)
            nodes = sum(1 for _ in tree.find_all(string=True))
            return tree.decode(formatter="html5"), nodes
        return round_trip

    def lxml_trip(text: str) -> tuple[str, int]:
        holder = lxml_html.fragment_fromstring(text, create_parent="div")
        nodes = sum(1 for _ in holder.itertext())
        inner = lxml_html.tostring(holder, encoding="unicode", method="html")
        return inner[len("<div>"):-len("</div>")], nodes

    def lexbor_trip(text: str) -> tuple[str, int]:
        tree = lexbor.LexborHTMLParser(f"<body>{text}")
        nodes = sum(1 for node in tree.body.traverse(include_text=True) if node.tag == "-text")
        return tree.body.inner_html, nodes

    def html5lib_trip(text: str) -> tuple[str, int]:
        fragment = html5lib.parseFragment(text, treebuilder="etree")
        nodes = sum(1 for _ in fragment.iter())
        out = html5lib.serialize(fragment, tree="etree", quote_attr_values="always", omit_optional_tags=False,
                                 minimize_boolean_attributes=False, use_trailing_solidus=False)
        return out, nodes

    return {f"BeautifulSoup {version('beautifulsoup4')} + html.parser": soup("html.parser"),
            f"BeautifulSoup {version('beautifulsoup4')} + lxml": soup("lxml"),
            f"lxml.html {version('lxml')}": lxml_trip,
            f"selectolax {version('selectolax')} (lexbor)": lexbor_trip,
            f"html5lib {version('html5lib')}": html5lib_trip}


def measure(round_trip, bodies: list[str], repeats: int) -> dict:
    exact = sum(round_trip(html)[0] == html for name, html in PAGES.items() if name not in SLOPPY)
    raised, unstable = 0, 0
    for body in bodies:
        try:
            once = round_trip(body)[0]
            unstable += round_trip(once)[0] != once
        except Exception:  # a candidate that raises on broken markup is what this counts
            raised += 1
    article = PAGES["article"] * 4
    started = time.perf_counter()
    for _ in range(repeats):
        round_trip(article)
    milliseconds = (time.perf_counter() - started) / repeats * 1000
    return {"exact": exact, "raised": raised, "unstable": unstable, "ms": milliseconds}


def main() -> int:
    bodies = random_markup(500)
    well_formed = len(PAGES) - len(SLOPPY)
    print(f"| library | well-formed fragments back byte for byte (of {well_formed}) | random or broken bodies "
          f"that raise (of {len(bodies)}) | not stable on a second round trip | ms per round trip of a "
          f"{len(PAGES['article']) * 4:,}-character article |\n|---|---|---|---|---|")
    for name, round_trip in candidates().items():
        found = measure(round_trip, bodies, repeats=200)
        print(f"| {name} | {found['exact']} | {found['raised']} | {found['unstable']} | {found['ms']:.3f} |")
    return 0


if __name__ == "__main__":
    main_guard(main)
