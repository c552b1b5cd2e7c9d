import pytest
import sacrebleu

from transformer_mt.decoding.scores import corpus_scores

HYPS = ["Le chat est sur le tapis.", "Il fait beau aujourd'hui !", "Je ne sais pas.", "", "Bonjour, monde"]
REFS_A = ["Le chat est assis sur le tapis.", "Il fait beau aujourd'hui.", "Je ne le sais pas.", "Rien.",
          "Bonjour le monde"]
REFS_B = ["Un chat est sur le tapis.", "Aujourd'hui il fait beau !", "Je l'ignore.", "Rien du tout.", "Salut, monde"]


def reference(hyps, refs):
    bleu = sacrebleu.corpus_bleu(hyps, refs, tokenize="13a", smooth_method="none").score
    chrf = sacrebleu.corpus_chrf(hyps, refs).score
    return bleu, chrf


@pytest.mark.parametrize("hyps, refs", [
    (HYPS, [REFS_A]),
    (HYPS, [REFS_A, REFS_B]),  # multiple references
    (["", "", ""], [["a b c", "d e", "f"]]),  # empty hypotheses
    (["zzz", "Le chat."], [["abc", "Le chat dort."]]),  # a hypothesis sharing no character
    (REFS_A, [REFS_A]),  # perfect
])
def test_bleu_and_chrf_equal_sacrebleu(hyps, refs):
    ours = corpus_scores(hyps, refs)
    bleu, chrf = reference(hyps, refs)
    assert ours.bleu == pytest.approx(bleu, abs=0.01)
    assert ours.chrf == pytest.approx(chrf, abs=0.01)
    assert f"nrefs:{len(refs)}" in ours.signature and "tok:13a" in ours.signature
