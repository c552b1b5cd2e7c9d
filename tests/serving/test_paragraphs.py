"""Sentence splitting for the server (serving/paragraphs.py): every character of a text is either in
a sentence or kept as it is between them."""
import random

import pytest

from transformer_mt.serving.paragraphs import Paragraph


def test_a_paragraph_is_split_at_its_sentences_and_lines():
    text = "Mr. Smith came at 3.30 today. He was late!\n\nWhy?  Nobody knows.\r\n"
    paragraph = Paragraph.of(text)
    assert paragraph.sentences == ["Mr. Smith came at 3.30 today.", "He was late!", "Why?", "Nobody knows."]
    assert paragraph.join([s.upper() for s in paragraph.sentences]) == text.upper()
    assert paragraph.join(["A", "B", "C", "D"]) == "A B\n\nC  D\r\n"


@pytest.mark.parametrize("text", ["", "   ", "\n", "\n\n \n", "one", "  spaced out  "])
def test_blank_and_short_texts_keep_their_layout(text):
    paragraph = Paragraph.of(text)
    assert paragraph.join(paragraph.sentences) == text
    assert len(paragraph.sentences) == (1 if text.strip() else 0)


def test_joining_the_sentences_themselves_gives_back_any_text(sample_pairs):
    rng = random.Random(0)
    for _ in range(200):
        pieces = [rng.choice([s for s, _ in sample_pairs[:300]]) for _ in range(rng.randint(1, 6))]
        text = "".join(p + rng.choice([" ", "  ", "\n", "\r\n", "\n\n", "\t"]) for p in pieces)
        paragraph = Paragraph.of(text)
        assert paragraph.join(paragraph.sentences) == text
        assert all(s == s.strip() and s for s in paragraph.sentences)
