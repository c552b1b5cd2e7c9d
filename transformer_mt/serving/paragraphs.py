"""Text of any length → its sentences, and their translations → the text again, with its line breaks
and the spacing between sentences kept. The splitter is Wikimedia's sentencex (measured against two
others in docs/serving.md)."""
from __future__ import annotations

import re
from dataclasses import dataclass

import sentencex

_LINE_BREAK = re.compile(r"(\r\n|\n|\r)")


@dataclass
class Paragraph:
    """A text as sentences and what lies between them (spacing, line breaks), in order."""
    parts: list[str | int]  # str: kept as it is; int: the index of a sentence in `sentences`
    sentences: list[str]

    @classmethod
    def of(cls, text: str) -> "Paragraph":
        parts: list[str | int] = []
        sentences: list[str] = []
        for line in _LINE_BREAK.split(text):
            if _LINE_BREAK.fullmatch(line) or not line.strip():
                parts.append(line)
                continue
            position = 0
            for piece in sentencex.segment("en", line):
                sentence = piece.strip()
                if not sentence:
                    continue
                start = line.index(sentence, position)
                parts.append(line[position:start])
                parts.append(len(sentences))
                sentences.append(sentence)
                position = start + len(sentence)
            parts.append(line[position:])
        return cls([p for p in parts if p != ""], sentences)

    def join(self, translations: list[str]) -> str:
        """The text with sentence i replaced by translations[i]."""
        return "".join(translations[p] if isinstance(p, int) else p for p in self.parts)
