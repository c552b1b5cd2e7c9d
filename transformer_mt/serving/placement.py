"""Where an inline tag goes in a sentence's translation, within its parent tag's place and clear of its
siblings: round its own words where the translation holds them unchanged (names, numbers, code), else
round the words whose tokens attend most to the tagged source words (the decoder's cross-attention:
translator.align). A piece that passes through untranslated (`<code>`, `translate="no"`) replaces as
many words as it holds; a piece with no words (an image, a comment) or none aligned goes to the same
share of the translation as it held of the source. Measured against translating each
tagged piece alone and finding it in the translation (Argos Translate's way) in docs/serving.md
("Inline tags"), where the alignment came out ahead."""
from __future__ import annotations

import string
from dataclasses import dataclass

from ..decoding.translator import Alignment

EDGES = string.punctuation + string.whitespace + "«»“”„‘’¿¡…\u00a0\u202f"


@dataclass(frozen=True)
class Piece:
    """A mark as placement sees it: its text (whitespace collapsed), its characters in the unit's text,
    its share of its parent's (0 to 1), whether it passes through untranslated, its children."""
    text: str
    chars: tuple[int, int]
    start: float
    end: float
    verbatim: bool
    inner: tuple["Piece", ...] = ()


def place(pieces: list[Piece], translation: str, alignment: Alignment | None,
          source_spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Each piece's (start, end) in `translation`, parents before their children, siblings in order.
    `source_spans`: the characters of each source token in the unit's text (the EOS: none)."""
    placed: list[tuple[int, int]] = []
    _place_all(pieces, _Context(translation, alignment, source_spans), 0, len(translation), placed)
    return placed


@dataclass
class _Context:
    translation: str
    alignment: Alignment | None
    source_spans: list[tuple[int, int]]


def _place_all(pieces, context: _Context, low: int, high: int, placed: list) -> None:
    taken: list[tuple[int, int]] = []
    for piece in pieces:
        where = _place(piece, context, low, high, taken)
        taken.append(where)
        placed.append(where)
        _place_all(piece.inner, context, where[0], where[1], placed)


def _place(piece: Piece, context: _Context, low: int, high: int, taken: list) -> tuple[int, int]:
    text = context.translation
    if not piece.text:
        guess = low + piece.start * (high - low)
        point = min(_word_starts(text, low, high), key=lambda p: abs(p - guess))
        return point, point
    found = [f for f in occurrences(text, piece.text, low, high) if not _overlaps(f, taken)]
    if found:
        guess = low + piece.start * (high - low)
        return min(found, key=lambda f: abs(f[0] - guess))
    aligned = _aligned(piece, context, low, high, taken)
    return aligned or _share(text, piece, low, high, taken)


def _aligned(piece: Piece, context: _Context, low: int, high: int, taken: list) -> tuple[int, int] | None:
    """The words of translation[low:high], clear of `taken`, from the first to the last that holds a
    token aligned to one of the piece's source tokens."""
    if context.alignment is None:
        return None
    first, last = piece.chars
    sources = {i for i, (a, b) in enumerate(context.source_spans) if a < last and first < b}
    targets = [span for span, source in zip(context.alignment.target_spans, context.alignment.source_of)
               if source in sources]
    words = [w for w in words_of(context.translation, low, high) if not _overlaps(w, taken)]
    hits = [sum(w[0] < b and a < w[1] for a, b in targets) for w in words]
    if not any(hits):
        return None
    if piece.verbatim:  # it replaces the words it covers: as many as it holds, where most tokens align
        size = min(len(piece.text.split()), len(words))
        first = max(range(len(words) - size + 1), key=lambda i: sum(hits[i : i + size]))
        return words[first][0], words[first + size - 1][1]
    chosen = [w for w, hit in zip(words, hits) if hit]
    return chosen[0][0], chosen[-1][1]


def occurrences(text: str, want: str, low: int, high: int) -> list[tuple[int, int]]:
    """Where `want` stands in text[low:high] as whole words (case ignored)."""
    haystack, needle, found = text.casefold(), want.casefold(), []
    if len(haystack) != len(text):  # a case fold that changes lengths (ß → ss): match as typed
        haystack, needle = text, want
    at = haystack.find(needle, low, high)
    while at >= 0:
        end = at + len(needle)
        if (at == 0 or not text[at - 1].isalnum()) and (end == len(text) or not text[end].isalnum()):
            found.append((at, end))
        at = haystack.find(needle, at + 1, high)
    return found


def words_of(text: str, low: int, high: int) -> list[tuple[int, int]]:
    """(start, end) of each word of text[low:high], its edge punctuation left out."""
    found, position = [], low
    for word in text[low:high].split():
        start = text.index(word, position)
        position = start + len(word)
        inner = word.strip(EDGES)
        if inner:
            offset = word.index(inner)
            found.append((start + offset, start + offset + len(inner)))
    return found


def _share(text: str, piece: Piece, low: int, high: int, taken: list) -> tuple[int, int]:
    """The words of text[low:high] clear of `taken`, over the same share of them as the piece held of
    its source."""
    words = [w for w in words_of(text, low, high) if not _overlaps(w, taken)]
    if not words:
        return high, high
    first = min(int(piece.start * len(words)), len(words) - 1)
    last = max(first, min(len(words) - 1, int(piece.end * len(words) - 1e-9)))
    return words[first][0], words[last][1]


def _overlaps(span: tuple[int, int], taken: list[tuple[int, int]]) -> bool:
    return any(span[0] < e and s < span[1] for s, e in taken)


def _word_starts(text: str, low: int, high: int) -> list[int]:
    return [low] + [i for i in range(low + 1, high) if text[i - 1] == " " and text[i] != " "] + [high]
