"""Corpus BLEU and chrF on detokenised text, through torchmetrics' sacreBLEU implementation.

torchmetrics is imported when a score is first computed, not with this module: it loads every metric
family it has (audio, image, ...), which takes seconds and tens of MB that a training process that
never validates (a DDP rank other than 0) should not pay.
"""
from __future__ import annotations

from dataclasses import dataclass

CHAR_ORDER = 6


@dataclass
class Scores:
    bleu: float
    chrf: float
    signature: str


def corpus_scores(hypotheses: list[str], references: list[list[str]]) -> Scores:
    """`references[i]` holds every reference stream's i-th sentence (sacrebleu's layout).

    BLEU: 13a tokenisation, mixed case, no smoothing (sacrebleu smooth_method="none"); chrF:
    character 6-grams, β=2, no word n-grams. Both equal the sacrebleu package's (tests/decoding/test_scores.py).
    """
    import torchmetrics
    from torchmetrics.text import SacreBLEUScore

    per_sentence = [list(refs) for refs in zip(*references)]
    bleu = SacreBLEUScore(tokenize="13a", smooth=False)(hypotheses, per_sentence)
    signature = (f"nrefs:{len(references)}|case:mixed|eff:no|tok:13a|smooth:none|chrF:c6w0b2"
                 f"|torchmetrics:{torchmetrics.__version__}")
    return Scores(bleu=float(bleu) * 100, chrf=_chrf(hypotheses, per_sentence) * 100, signature=signature)


def _chrf(hypotheses: list[str], per_sentence: list[list[str]], beta: float = 2.0) -> float:
    """torchmetrics counts the character n-grams; the score is combined as sacreBLEU 2.x does."""
    from torchmetrics.text import CHRFScore

    metric = CHRFScore(n_char_order=CHAR_ORDER, n_word_order=0, beta=beta)
    metric.update(hypotheses, per_sentence)
    # torchmetrics (1.x) leaves out the reference n-grams of a sentence whose output matches no
    # reference at all (an empty translation, say), which inflates chrF; sacreBLEU counts its
    # first reference. Add those counts back: a reference of L non-space characters has
    # max(0, L - n + 1) character n-grams.
    missing = [0] * CHAR_ORDER
    for hyp, refs in zip(hypotheses, per_sentence):
        hyp_chars = set("".join(hyp.split()))
        if all(not hyp_chars & set("".join(ref.split())) for ref in refs):
            length = len("".join(refs[0].split()))
            for n in range(1, CHAR_ORDER + 1):
                missing[n - 1] += max(0, length - n + 1)
    precision = recall = 0.0
    effective_order = 0
    for n in range(1, CHAR_ORDER + 1):
        hyp_ngrams = float(getattr(metric, f"total_preds_char_{n}_grams"))
        ref_ngrams = float(getattr(metric, f"total_target_char_{n}_grams")) + missing[n - 1]
        matches = float(getattr(metric, f"total_matching_char_{n}_grams"))
        # sacreBLEU 2.x averages precision and recall over the orders present in both sides
        # (torchmetrics' own compute() averages per-order F-scores, sacreBLEU's eps_smoothing).
        if hyp_ngrams > 0 and ref_ngrams > 0:
            precision += matches / hyp_ngrams
            recall += matches / ref_ngrams
            effective_order += 1
    if effective_order == 0 or precision + recall == 0:
        return 0.0
    precision, recall = precision / effective_order, recall / effective_order
    factor = beta ** 2
    return (1 + factor) * precision * recall / (factor * precision + recall)
