"""Talking to a served model: start scripts/serve.py, post to it, pick test sentences it keeps whole, and
read HTML answers."""
import html
from pathlib import Path

import html5lib
import httpx

from transformer_mt.benchmark.server_process import ServerProcess
from transformer_mt.serving.paragraphs import Paragraph


def Server(run: Path | None, *flags: str) -> ServerProcess:
    return ServerProcess(["--run", str(run)] if run else [], *flags, ready_within=60)


def single(sample_pairs, start: int, count: int) -> list[str]:
    """`count` source sentences from `start` on that the server does not split further (some lines of
    the corpus hold two sentences), so that ours translate them as they are."""
    found = [s for s, _ in sample_pairs[start:] if len(Paragraph.of(s).sentences) == 1]
    return found[:count]


def post(server, path="/translate", **kwargs) -> httpx.Response:
    return httpx.post(f"{server.url}{path}", timeout=60, **kwargs)


def skeleton(text: str) -> list:
    """What html5lib sees of a fragment: each element's tag and attributes, in document order with its
    depth, comments; no text."""
    found = []

    def walk(node, depth):
        for child in node:
            tag = child.tag if isinstance(child.tag, str) else "#comment"
            found.append((depth, tag.split("}")[-1], sorted(child.attrib.items()) if tag != "#comment" else child.text))
            walk(child, depth + 1)
    walk(html5lib.parseFragment(text, treebuilder="etree"), 0)
    return found


def as_html(text: str) -> str:
    """A text translation as an HTML answer holds it: escaped, without the control characters HTML cannot
    carry (a tiny model writes some)."""
    return "".join(c for c in html.escape(text, quote=False) if c in "\t\n\r" or " " <= c < "\ufffe")
