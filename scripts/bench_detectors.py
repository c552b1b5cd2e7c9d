#!/usr/bin/env python
"""Which language detector `/detect` and `source: auto` use, measured (docs/serving.md, "Language
detection"): English and French test sentences and their first 1-5 words, and sentences of five other
languages, through each candidate restricted to English and French (as the server restricts it) and
to seven languages; accuracy and microseconds per call. Prints a Markdown table.

  pip install py3langid lingua-language-detector langdetect
  python scripts/bench_detectors.py --pairs runs/sample/data/test
"""
from __future__ import annotations

import argparse
import importlib
import time
from importlib.metadata import version
from pathlib import Path

from transformer_mt.benchmark.languages import OTHERS, short_inputs
from transformer_mt.cli import main_guard
from transformer_mt.errors import UserError

SEVEN = ["en", "fr", "de", "es", "it", "pt", "nl"]


def _load(name: str):
    try:
        return importlib.import_module(name)
    except ImportError:
        raise UserError(f"this needs {name}: pip install py3langid lingua-language-detector langdetect") from None


def py3langid(codes: list[str]):
    langid = _load("py3langid.langid")
    identifier = langid.LanguageIdentifier.from_modelpath(Path(langid.MODEL_DIR) / langid.MODEL_FILE, norm_probs=True)
    identifier.set_languages(codes)
    return lambda text: identifier.classify(text)[0]


def lingua(codes: list[str]):
    module = _load("lingua")
    languages = [module.Language.from_iso_code_639_1(getattr(module.IsoCode639_1, c.upper())) for c in codes]
    detector = module.LanguageDetectorBuilder.from_languages(*languages).with_preloaded_language_models().build()

    def detect(text: str) -> str:
        found = detector.detect_language_of(text)
        return found.iso_code_639_1.name.lower() if found else "?"
    return detect


def langdetect(codes: list[str]):
    factory_module = _load("langdetect.detector_factory")
    factory = factory_module.DetectorFactory()
    directory = Path(factory_module.PROFILES_DIRECTORY)
    factory.load_json_profile([(directory / code).read_text(encoding="utf-8") for code in codes])
    factory.set_seed(0)

    def detect(text: str) -> str:
        detector = factory.create()
        detector.append(text)
        try:
            return detector.detect()
        except Exception:  # langdetect raises on text with no letters it knows
            return "?"
    return detect


def measure(detect, sets: dict[str, tuple[list[str], str]]) -> dict:
    found = {}
    for name, (texts, language) in sets.items():
        right = sum(detect(t) == language for t in texts) if language != "not en" else \
            sum(detect(t) != "en" for t in texts)
        found[name] = 100 * right / len(texts)
    texts = [t for texts, _ in sets.values() for t in texts]
    started = time.perf_counter()
    for text in texts:
        detect(text)
    found["us"] = (time.perf_counter() - started) / len(texts) * 1e6
    return found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pairs", default="runs/sample/data/test", help="PREFIX.en and PREFIX.fr, line by line")
    args = parser.parse_args()
    texts = {}
    for side in ("en", "fr"):
        path = Path(f"{args.pairs}.{side}")
        if not path.is_file():
            raise UserError(f"{path} not found: name a run's test split, e.g. --pairs runs/sample/data/test")
        texts[side] = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    others = [s for sentences in OTHERS.values() for s in sentences]
    sets = {"en sentences": (texts["en"], "en"), "fr sentences": (texts["fr"], "fr"),
            "en 1-5 words": (short_inputs(texts["en"]), "en"), "fr 1-5 words": (short_inputs(texts["fr"]), "fr"),
            "other languages not taken for en": (others, "not en")}
    print("| detector | candidates | " + " | ".join(f"{n} ({len(t):,}) %" for n, (t, _) in sets.items())
          + " | µs per call |\n|---|---|" + "---|" * (len(sets) + 1))
    for name, build in (("py3langid", py3langid), ("lingua", lingua), ("langdetect", langdetect)):
        package = {"py3langid": "py3langid", "lingua": "lingua-language-detector", "langdetect": "langdetect"}[name]
        for codes in (["en", "fr"], SEVEN):
            found = measure(build(codes), sets)
            print(f"| {name} {version(package)} | {', '.join(codes)} | "
                  + " | ".join(f"{found[n]:.1f}" for n in sets) + f" | {found['us']:.0f} |")
    return 0


if __name__ == "__main__":
    main_guard(main)
