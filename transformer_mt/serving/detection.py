"""Which language a text is in, among the languages this server knows (English and French), as
LibreTranslate restricts detection to the languages it has models for. The detector is lingua's
(measured against py3langid and langdetect in docs/serving.md, "Language detection")."""
from __future__ import annotations

from dataclasses import dataclass

import lingua

LANGUAGES = {"en": "English", "fr": "French"}


@dataclass(frozen=True)
class Detected:
    language: str  # a code of LANGUAGES
    confidence: float  # 0 to 100

    def json(self) -> dict:
        return {"confidence": self.confidence, "language": self.language}


class Detector:
    def __init__(self, codes: tuple[str, ...] = tuple(LANGUAGES)):
        languages = [lingua.Language.from_iso_code_639_1(getattr(lingua.IsoCode639_1, c.upper())) for c in codes]
        builder = lingua.LanguageDetectorBuilder.from_languages(*languages)
        self._lingua = builder.with_preloaded_language_models().build()

    def rank(self, text: str) -> list[Detected]:
        """Each language that may be the text's, best first; none for a text without letters."""
        values = self._lingua.compute_language_confidence_values(text)
        return [Detected(v.language.iso_code_639_1.name.lower(), round(100 * v.value, 1)) for v in values
                if v.value > 0]

    def best(self, text: str, fallback: str) -> Detected:
        """The likeliest language; `fallback` at confidence 0 for a text that gives no clue (digits,
        emoji, nothing)."""
        ranked = self.rank(text)
        return ranked[0] if ranked else Detected(fallback, 0.0)
