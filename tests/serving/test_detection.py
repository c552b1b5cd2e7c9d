"""Language detection among English and French, at the accuracy measured for the chosen detector
(docs/serving.md: 99.7 % of test sentences, 96.5 % of their first 1-5 words; some margin for this
smaller set), and the short inputs detectors are known to get wrong."""
import pytest

from transformer_mt.benchmark.languages import short_inputs
from transformer_mt.serving.detection import Detected, Detector


@pytest.fixture(scope="module")
def detector():
    return Detector()


def accuracy(detector, texts: list[str], language: str) -> float:
    return sum(detector.best(t, "?").language == language for t in texts) / len(texts)


def test_sentences_and_their_first_words_are_detected_as_measured(detector, sample_pairs):
    english, french = [e for e, _ in sample_pairs[:600]], [f for _, f in sample_pairs[:600]]
    assert accuracy(detector, english, "en") >= 0.98 and accuracy(detector, french, "fr") >= 0.98
    assert accuracy(detector, short_inputs(english[:200]), "en") >= 0.93
    assert accuracy(detector, short_inputs(french[:200]), "fr") >= 0.93


def test_short_inputs_of_known_trouble_and_texts_without_a_clue(detector):
    assert detector.best("hello handsome", "?").language == "en"  # LibreTranslate#902: "Bengali"
    assert detector.best("Bonjour", "?").language == "fr"
    ranked = detector.rank("I am hungry.")
    assert [d.language for d in ranked] == ["en", "fr"]
    assert sum(d.confidence for d in ranked) == pytest.approx(100, abs=0.2)
    assert detector.rank("12345 😀") == [] and detector.best("", "en") == Detected("en", 0.0)
