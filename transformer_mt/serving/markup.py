"""HTML in, HTML out: a page's translatable text as units (sentences, cut as for plain text), and the
page again with each unit replaced by its translation and every tag, attribute, comment and untouched
element where it was. The parser is lxml's (measured against four others in docs/serving.md, "HTML").

The text of a block (`p`, `li`, `td`, `h1`, `div`, …) is read as one run: its text and inline elements
(`b`, `a`, `span`, `br`, …) together, so that an inline tag never cuts a sentence in two. Each inline
element is a mark over the characters it holds; `place` (placement.py) finds those characters in the
translation. Elements that are not to be translated (`code`, `pre`, `script`, `style`, `kbd`, `samp`,
`var`, anything with `translate="no"` or class `notranslate`) pass through as they are: a block one
whole, an inline one as an atom whose text the model reads but whose markup comes back unchanged."""
from __future__ import annotations

import copy
from dataclasses import dataclass, field

import lxml.etree
import lxml.html

from .paragraphs import Paragraph
from .placement import Piece

INLINE = frozenset("a abbr b bdi bdo big br cite code data del dfn em font i img ins kbd label mark q s samp small "
                   "span strike strong sub sup time tt u var wbr".split())
UNTRANSLATED = frozenset("code pre script style kbd samp var textarea template svg math noscript".split())
MAX_DEPTH = 200  # elements within elements; the reading recurses, and real pages nest a few dozen deep
VOID = frozenset("area base br col embed hr img input link meta source track wbr".split())
_WHITESPACE = str.maketrans("\t\n\r\f\v", "     ")
# What lxml refuses in text (XML's excluded characters): a model may write any byte, so they are dropped.
_NOT_XML = dict.fromkeys([*range(0x00, 0x09), 0x0B, 0x0C, *range(0x0E, 0x20), 0xFFFE, 0xFFFF])


class BadHtml(ValueError):
    """HTML that lxml cannot read: answered 400."""


@dataclass
class Mark:
    """An inline node over `start:end` of its run's text. kind: "wrap" (an inline element whose text is
    translated), "atom" (an inline element passed through; its text is read, not rewritten), "point"
    (a comment, an image: no text), "break" (a <br>: one line break in the text)."""
    start: int
    end: int
    node: lxml.etree._Element
    kind: str
    inner: list["Mark"] = field(default_factory=list)


@dataclass
class Unit:
    """Consecutive sentences of a run translated as one: more than one only where an inline element
    starts inside one sentence and ends inside another."""
    start: int
    end: int
    text: str  # what the model reads: the run's characters, whitespace collapsed
    marks: list[Mark]  # the marks that start and end inside it, not round all of it, outermost first
    pieces: list[Piece]  # the same marks as placement sees them


@dataclass
class Run:
    """The text and inline nodes between two block boundaries of one element."""
    raw: str  # the text as in the page (entities decoded), a <br> as "\n"
    marks: list[Mark]  # outermost first, in order
    units: list[Unit] = field(default_factory=list)

    @property
    def view(self) -> str:
        """`raw` as the model reads it, of the same length: each <br> a line break, other whitespace a space."""
        breaks = {m.start for m in _walk(self.marks) if m.kind == "break"}
        plain = self.raw.translate(_WHITESPACE)
        return "".join("\n" if i in breaks else c for i, c in enumerate(plain)) if breaks else plain


class Page:
    """A parsed HTML text: `units` to translate, then `render(translations)`."""

    def __init__(self, html: str):
        self.html = html
        self.document = _is_document(html)
        parser = lxml.html.HTMLParser(huge_tree=True)  # deep markup kept whole, then refused below
        try:
            self.root = (lxml.html.document_fromstring(html, parser=parser) if self.document
                         else lxml.html.fragment_fromstring(html, create_parent="div", parser=parser))
        except (lxml.etree.ParserError, ValueError) as err:
            raise BadHtml(f"the HTML could not be read: {err}") from None
        if (depth := _depth(self.root)) > MAX_DEPTH:
            raise BadHtml(f"the HTML nests elements {depth} deep; at most {MAX_DEPTH} are read")
        self._plan: list[tuple[lxml.etree._Element, list]] = []  # per element, its items: Run | child
        self._read(self.root)
        self.units = [unit for _, items in self._plan for item in items if isinstance(item, Run)
                      for unit in item.units]

    @property
    def text(self) -> str:
        """The text to translate, unit after unit (what language detection reads)."""
        return " ".join(unit.text for unit in self.units)

    def render(self, translations: list[str], placements: list[list[tuple[int, int]]]) -> str:
        """The page with unit i's text replaced by translations[i] and its marks (in `_walk` order) over
        placements[i]'s character ranges of that translation."""
        given = iter(zip(translations, placements))
        for element, items in self._plan:
            _rebuild(element, items, given)
        if not self.html.strip():
            return self.html
        if self.document:
            doctype = self.root.getroottree().docinfo.doctype
            return lxml.html.tostring(self.root, encoding="unicode", method="html", doctype=doctype or None)
        inner = lxml.html.tostring(self.root, encoding="unicode", method="html")
        return inner[inner.index(">") + 1 : inner.rindex("<")]

    def _read(self, element: lxml.etree._Element) -> None:
        """Plan `element`'s children: runs of text and inline nodes, and blocks read in their turn."""
        items: list = []
        run = _RunBuilder()
        run.text(element.text)
        for child in element:
            if _is_inline(child):
                run.inline(child)
                run.text(child.tail)
                continue
            items.append(run.finish())
            run = _RunBuilder()
            items.append(child)
            if _translated(child):
                self._read(child)
            run.text(child.tail)
        items.append(run.finish())
        self._plan.append((element, items))


def _depth(root) -> int:
    depth = deepest = 0
    for event, _ in lxml.etree.iterwalk(root, events=("start", "end")):
        depth += 1 if event == "start" else -1
        deepest = max(deepest, depth)
    return deepest


def _is_document(html: str) -> bool:
    head = html.lstrip()[:20].lower()
    return head.startswith("<!doctype") or head.startswith("<html")


def _is_inline(node) -> bool:
    """A comment, or an inline element with no block inside it (an unclosed <b> may hold a <p>)."""
    if not isinstance(node.tag, str):
        return True
    return node.tag.lower() in INLINE and all(not isinstance(d.tag, str) or d.tag.lower() in INLINE
                                              for d in node.iterdescendants())


def _translated(node) -> bool:
    """False for an element left as it is, with all it holds."""
    if not isinstance(node.tag, str) or node.tag.lower() in UNTRANSLATED:
        return False
    return node.get("translate", "").lower() != "no" and "notranslate" not in node.get("class", "").split()


def _walk(marks: list[Mark]):
    for mark in marks:
        yield mark
        yield from _walk(mark.inner)


class _RunBuilder:
    def __init__(self):
        self.pieces: list[str] = []
        self.length = 0
        self.marks: list[Mark] = []
        self._stack: list[list[Mark]] = [self.marks]

    def text(self, text: str | None) -> None:
        if text:
            self.pieces.append(text)
            self.length += len(text)

    def inline(self, node) -> None:
        start = self.length
        if not isinstance(node.tag, str):
            self._stack[-1].append(Mark(start, start, node, "point"))
        elif node.tag.lower() == "br":
            self.text("\n")
            self._stack[-1].append(Mark(start, start + 1, node, "break"))
        elif node.tag.lower() in VOID:
            self._stack[-1].append(Mark(start, start, node, "point"))
        elif not _translated(node):
            self.text(node.text_content())
            self._stack[-1].append(Mark(start, self.length, node, "atom"))
        else:
            mark = Mark(start, start, node, "wrap")
            self._stack[-1].append(mark)
            self._stack.append(mark.inner)
            self.text(node.text)
            for child in node:
                self.inline(child)
                self.text(child.tail)
            self._stack.pop()
            mark.end = self.length

    def finish(self) -> Run:
        run = Run("".join(self.pieces), self.marks)
        run.units = _units(run)
        return run


def _units(run: Run) -> list[Unit]:
    """The run's sentences, merged where a mark starts in one and ends in another; only those that hold
    a letter are translated (a number, a date, "©" stay as they are)."""
    view = run.view
    spans: list[list[int]] = []
    paragraph, position = Paragraph.of(view), 0
    for part in paragraph.parts:
        length = len(part) if isinstance(part, str) else len(paragraph.sentences[part])
        if isinstance(part, int):
            spans.append([position, position + length])
        position += length
    marks = [m for m in _walk(run.marks) if m.kind in ("wrap", "atom") and m.end > m.start]
    merged = True
    while merged:
        merged = False
        for mark in marks:
            touched = [i for i, (s, e) in enumerate(spans) if s < mark.end and mark.start < e]
            if len(touched) > 1 and not (mark.start <= spans[touched[0]][0] and mark.end >= spans[touched[-1]][1]):
                spans[touched[0]:touched[-1] + 1] = [[spans[touched[0]][0], spans[touched[-1]][1]]]
                merged = True
                break
    units = []
    for start, end in spans:
        text, at = _collapsed(view, start, end)
        if any(c.isalpha() for c in text):
            inside = _inside(run.marks, start, end)
            units.append(Unit(start, end, text, inside, [_piece(m, start, end, view, start, at) for m in inside]))
    return units


def _collapsed(view: str, start: int, end: int) -> tuple[str, list[int]]:
    """view[start:end] with its whitespace collapsed (" ".join(split())), and where each of its
    positions start..end lands in that text."""
    out, at, pending = [], [], False
    for c in view[start:end]:
        if c.isspace():
            pending = bool(out)
            at.append(len(out))
            continue
        if pending:
            out.append(" ")
            pending = False
        at.append(len(out))
        out.append(c)
    at.append(len(out))
    return "".join(out), at


def _piece(mark: Mark, low: int, high: int, view: str, unit: int, at: list[int]) -> Piece:
    """`mark` as placement sees it, within its parent's source characters low:high; at[p - unit] is
    where view position p lands in its unit's text."""
    size = max(high - low, 1)
    text = "" if mark.kind in ("point", "break") else " ".join(view[mark.start:mark.end].split())
    return Piece(text, (at[mark.start - unit], at[mark.end - unit]), (mark.start - low) / size,
                 (mark.end - low) / size, mark.kind == "atom",
                 tuple(_piece(m, mark.start, mark.end, view, unit, at) for m in mark.inner))


def _inside(marks: list[Mark], start: int, end: int) -> list[Mark]:
    """The outermost marks within start:end that do not cover all of it (those are placed in the
    translation); a wrap round the whole unit is looked into, as it goes round the whole translation."""
    found = []
    for mark in marks:
        if mark.end <= start and mark.end < end or mark.start >= end and mark.start > start:
            continue
        if mark.kind == "wrap" and mark.start <= start and mark.end >= end:
            found.extend(_inside(mark.inner, start, end))
        elif start <= mark.start and mark.end <= end and (mark.kind != "break" or start < mark.start):
            found.append(mark)
    return found


def _rebuild(element, items: list, given) -> None:
    """`element`'s children anew: each run rendered with its units' translations, blocks as they are."""
    element.text = None
    for child in list(element):
        element.remove(child)
    for item in items:
        if isinstance(item, Run):
            _render_run(element, item, given)
        else:
            item.tail = None
            element.append(item)


def _render_run(element, run: Run, given) -> None:
    """Append the run's translation to `element`: spacing and untranslated text as they were, each
    unit's translation in its place, each mark over its placed or shifted characters."""
    pieces, where, cursor, length = [], {}, 0, 0
    boundaries = []  # (source start, source end, output start, output end) per unit
    for unit in run.units:
        translation, ranges = next(given)
        pieces.append(run.raw[cursor:unit.start])
        length += unit.start - cursor
        boundaries.append((unit.start, unit.end, length, length + len(translation)))
        for mark, (s, e) in zip(_walk(unit.marks), ranges):
            where[id(mark)] = (length + s, length + e)
        pieces.append(translation)
        length += len(translation)
        cursor = unit.end
    pieces.append(run.raw[cursor:])
    text = "".join(pieces)

    def shifted(position: int, closing: bool) -> int:
        offset = 0  # output position minus source position after the units passed
        for start, end, out_start, out_end in boundaries:
            if position <= start:
                break
            if position < end:  # not met: marks inside a unit are placed
                return out_end if closing else out_start
            offset = out_end - end
        return position + offset

    for mark in _walk(run.marks):
        if id(mark) not in where:
            where[id(mark)] = (shifted(mark.start, False), shifted(mark.end, True))
    _emit(element, text, run.marks, where, 0, len(text))


def _emit(container, text: str, marks: list[Mark], where: dict, low: int, high: int) -> None:
    """Append text[low:high] to `container` with `marks` (siblings, any order) as nodes over their
    output ranges, clipped so that they neither overlap nor leave their parent."""
    cursor = low
    for mark in sorted(marks, key=lambda m: where[id(m)]):
        start, end = where[id(mark)]
        start = min(max(start, cursor), high)
        end = min(max(end, start), high)
        _append_text(container, text[cursor:start])
        if mark.kind == "wrap":
            node = mark.node.makeelement(mark.node.tag, mark.node.attrib)
            container.append(node)
            _emit(node, text, mark.inner, where, start, end)
        else:
            node = copy.deepcopy(mark.node)
            node.tail = None
            container.append(node)
        cursor = end
    _append_text(container, text[cursor:high])


def _append_text(container, text: str) -> None:
    text = text.translate(_NOT_XML)
    if not text:
        return
    if len(container):
        last = container[-1]
        last.tail = (last.tail or "") + text
    else:
        container.text = (container.text or "") + text
