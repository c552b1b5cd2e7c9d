"""Where an inline tag goes in a translation, measured two ways (scripts/bench_tag_placement.py;
docs/serving.md, "Inline tags"): a tagged set built from a run's test split with a small lexicon, and
the placements of translating tagged words alone (Argos Translate's way) and of the model's alignment."""
from __future__ import annotations

import difflib

import torch

from ..data.tokenizer import BOS, source_ids
from ..decoding.pytorch import Translator
from ..serving.markup import Page
from ..serving.paragraphs import Paragraph
from ..serving.placement import EDGES, occurrences, place, words_of

LEXICON = {
    "cat": "chat", "dog": "chien", "house": "maison", "car": "voiture", "book": "livre", "water": "eau",
    "money": "argent", "school": "école", "father": "père", "mother": "mère", "brother": "frère",
    "sister": "sœur", "friend": "ami amie", "friends": "amis amies", "door": "porte", "room": "chambre pièce",
    "city": "ville", "time": "temps", "day": "jour", "night": "nuit", "morning": "matin", "work": "travail",
    "job": "travail boulot emploi", "letter": "lettre", "question": "question", "problem": "problème",
    "children": "enfants", "child": "enfant", "woman": "femme", "man": "homme", "girl": "fille",
    "boy": "garçon", "teacher": "professeur enseignant", "doctor": "médecin docteur", "dinner": "dîner",
    "breakfast": "petit-déjeuner", "tea": "thé", "coffee": "café", "bread": "pain", "wine": "vin",
    "train": "train", "station": "gare", "party": "fête soirée", "weather": "temps", "music": "musique",
    "picture": "photo image", "table": "table", "window": "fenêtre", "language": "langue", "English": "anglais",
    "French": "français", "beautiful": "beau belle", "happy": "heureux heureuse", "tired": "fatigué fatiguée",
    "busy": "occupé occupée", "hungry": "faim", "red": "rouge", "black": "noir noire", "white": "blanc blanche",
    "new": "nouveau nouvelle neuf", "old": "vieux vieille âgé", "big": "grand grande gros", "small":
    "petit petite", "tomorrow": "demain", "yesterday": "hier", "today": "aujourd'hui", "always": "toujours",
    "never": "jamais", "often": "souvent", "here": "ici", "hospital": "hôpital",
    "rain": "pluie", "snow": "neige", "river": "rivière fleuve", "sea": "mer", "mountain": "montagne",
    "phone": "téléphone", "computer": "ordinateur", "key": "clé clef", "name": "nom", "year": "an année",
    "week": "semaine", "police": "police", "game": "jeu match", "song": "chanson",
}


def tagged_set(sentences: list[str], translations: list[str]) -> list[tuple[str, str, str, tuple[int, int]]]:
    """(sentence, tagged word, translation, the French form's span) where each is found once."""
    found = []
    for sentence, translation in zip(sentences, translations):
        if len(Paragraph.of(sentence).sentences) != 1:  # the server would place a tag in one of them
            continue
        hits = [(w, span) for w in LEXICON if len(span := occurrences(sentence, w, 0,
                                                                                            len(sentence))) == 1]
        if len(hits) != 1:
            continue
        word = hits[0][0]
        forms = [span for form in LEXICON[word].split() for span in occurrences(translation, form, 0,
                                                                                  len(translation))]
        if len(forms) == 1:
            start, end = hits[0][1][0]
            found.append((sentence, sentence[start:end], translation, forms[0]))
    return found


def by_fragments(translator: Translator, cases) -> list[tuple[int, int]]:
    """Argos Translate's way: the tagged word translated alone, then found in the sentence's translation
    (its translation as a whole word, else the most similar window of words, else its share)."""
    placed = []
    for sentence, word, translation, _ in cases:
        alone = translator.translate([word])[0][0].text.strip(EDGES)
        found = occurrences(translation, alone, 0, len(translation)) if alone else []
        guess = sentence.index(word) / len(sentence) * len(translation)
        if found:
            placed.append(min(found, key=lambda f: abs(f[0] - guess)))
            continue
        words = words_of(translation, 0, len(translation))
        scored = [(difflib.SequenceMatcher(None, alone.casefold(), translation[a:b].casefold()).ratio(), (a, b))
                  for a, b in words]
        best = max(scored, default=(0.0, (0, 0)))
        placed.append(best[1] if best[0] >= 0.6 else min(words, key=lambda w: abs(w[0] - guess), default=(0, 0)))
    return placed


def by_alignment(translator: Translator, cases) -> list[tuple[int, int]]:
    """The server's way (placement.place over translator.align)."""
    placed = []
    for sentence, word, translation, _ in cases:
        unit = Page(sentence.replace(word, f"<b>{word}</b>", 1)).units[0]
        ids, spans = translator.tokenizers.src.encode_with_offsets([unit.text])[0]
        encoded = source_ids(ids, translator.max_positions)
        alignment = translator.align([encoded], [translation])[0]
        placed.append(place(unit.pieces, translation, alignment, spans)[0])
    return placed


@torch.no_grad()
def by_attention(translator: Translator, cases, layer: int | None) -> list[tuple[int, int]]:
    """One layer's cross-attention (None: the mean over all layers) averaged over heads."""
    src_tok, tgt_tok, model = translator.tokenizers.src.hf, translator.tokenizers.tgt.hf, translator.model
    placed = []
    for sentence, word, translation, _ in cases:
        source = src_tok.encode(sentence)
        start = sentence.index(word)
        tagged = {i for i, (a, b) in enumerate(source.offsets) if a < start + len(word) and start < b}
        target = tgt_tok.encode(translation)
        src = torch.tensor([source_ids(source.ids, translator.max_positions)])
        maps = model.attention_maps(src, torch.tensor([[BOS] + target.ids])).cross
        weights = (torch.stack([m[0].float().mean(0) for m in maps]).mean(0) if layer is None
                   else maps[layer][0].float().mean(0))
        aligned = weights[: len(target.ids)].argmax(-1).tolist()
        chars = [target.offsets[t] for t, s in enumerate(aligned) if s in tagged]
        words = [w for w in words_of(translation, 0, len(translation)) if any(w[0] < b and a < w[1] for a, b in chars)]
        placed.append((words[0][0], words[-1][1]) if words else (0, 0))
    return placed
