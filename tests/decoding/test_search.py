import math

import pytest
import torch
import torch.nn.functional as F

from transformer_mt.benchmark.systems import FullPrefixDecoder
from transformer_mt.config import DecodeConfig, ModelConfig
from transformer_mt.data.tokenizer import BOS, EOS, PAD
from transformer_mt.decoding.search import beam_search, greedy, max_lengths
from transformer_mt.decoding.search_rules import length_penalty, output_limit
from transformer_mt.model.transformer import DecoderCache, LayerCache, Transformer

A, B = 4, 5
VOCAB = 6


class TableModel:
    """A 'model' whose next-token probabilities are a hand-set function of the prefix."""

    def __init__(self, table):
        self.table = table  # prefix tuple (without BOS) → {token: probability}

    def encode(self, src):
        return torch.zeros(src.size(0), src.size(1), 1), (src != PAD)[:, None, None, :], []

    def decode_step(self, tokens, memory, mask, cache: DecoderCache):
        if not cache.layers:
            cache.layers = [LayerCache()]
        layer = cache.layers[0]  # the prefix rides in the cache, so beam reordering moves it along
        new = tokens.float().view(-1, 1, 1, 1)
        layer.self_k = new if layer.self_k is None else torch.cat([layer.self_k, new], 2)
        out = torch.full((tokens.size(0), VOCAB), float("-inf"))
        for row in range(tokens.size(0)):
            prefix = tuple(int(t) for t in layer.self_k[row, 0, 1:, 0].tolist())
            for token, p in self.table.get(prefix, {EOS: 1.0}).items():
                out[row, token] = math.log(p)
        return out


SRC = torch.tensor([[A, A, A, EOS]])


def test_beam_finds_a_better_sequence_than_greedy():
    model = TableModel({(): {A: 0.6, B: 0.4}, (A,): {EOS: 0.4, A: 0.3, B: 0.3}, (B,): {EOS: 0.9, A: 0.1}})
    cfg = DecodeConfig(beam_size=2, alpha=0.0, max_len_b=5)
    g = greedy(model, SRC, cfg, limit=10)[0]
    assert g.tokens == [A] and g.logprob == pytest.approx(math.log(0.24))
    best = beam_search(model, SRC, cfg, limit=10)[0][0]
    assert best.tokens == [B] and best.logprob == pytest.approx(math.log(0.36))
    assert best.logprob > g.logprob


@pytest.mark.parametrize("kind", ["gnmt", "power"])
def test_length_penalty_pushes_towards_longer_output(kind):
    # After A, EOS ranks third: not final (as in fairseq), so A A can still finish.
    model = TableModel({(): {EOS: 0.5, A: 0.5}, (A,): {A: 0.9, B: 0.07, EOS: 0.03}, (A, A): {EOS: 0.9, A: 0.1}})
    short = beam_search(model, SRC, DecodeConfig(beam_size=2, alpha=0.0, length_penalty=kind), 10)[0][0]
    assert short.tokens == []  # raw probability 0.5 beats 0.405
    long = beam_search(model, SRC, DecodeConfig(beam_size=2, alpha=2.0, length_penalty=kind), 10)[0][0]
    assert long.tokens == [A, A]
    assert long.score == pytest.approx(math.log(0.405) / length_penalty(3, kind, 2.0))


def test_length_penalty_formulas():
    assert length_penalty(7, "gnmt", 0.6) == pytest.approx(((5 + 7) / 6) ** 0.6)
    assert length_penalty(7, "power", 0.6) == pytest.approx(7 ** 0.6)
    assert length_penalty(7, "gnmt", 0.0) == 1.0


def test_the_output_limit_is_a_times_the_source_plus_b_within_one_and_the_models_limit():
    # As the decimals read, where binary floats land just above: 55.00000000000001 (float64), 30.000001 (float32).
    assert output_limit(50, 1.1, 0, 1000) == 55 and output_limit(25, 1.2, 0, 1000) == 30
    assert output_limit(3, 1.5, 2, 100) == 7  # 6.5 → 7
    assert output_limit(0, 0.0, 0, 100) == 1 and output_limit(200, 1.5, 10, 63) == 63
    src = torch.full((2, 26), A)
    src[0, 2:], src[0, 1], src[1, 25] = PAD, EOS, EOS  # 1 and 25 source tokens
    limits = max_lengths(src, 1.2, 0, 100)
    assert limits.dtype == torch.long and limits.tolist() == [2, 30]


def test_nbest_is_sorted_and_max_and_min_len_hold():
    model = TableModel({(): {A: 0.5, B: 0.3, EOS: 0.2}})
    hyps = beam_search(model, SRC, DecodeConfig(beam_size=3, alpha=0.0), 10, nbest=3)[0]
    assert len(hyps) == 3 and [h.score for h in hyps] == sorted((h.score for h in hyps), reverse=True)
    looping = TableModel({(): {A: 0.9, EOS: 0.1}} | {(A,) * n: {A: 0.9, EOS: 0.1} for n in range(1, 30)})
    cfg = DecodeConfig(beam_size=2, max_len_a=1.0, max_len_b=2, alpha=0.0)
    assert int(max_lengths(SRC, 1.0, 2, 100)) == 5  # 3 source tokens + 2
    assert len(greedy(looping, SRC, cfg, 100)[0].tokens) == 5
    assert all(len(h.tokens) <= 5 for h in beam_search(looping, SRC, cfg, 100)[0])
    eager = TableModel({(): {EOS: 0.9, A: 0.1}, (A,): {EOS: 0.9, A: 0.1}, (A, A): {EOS: 0.9, A: 0.1}})
    assert greedy(eager, SRC, DecodeConfig(min_len=2), 100)[0].tokens == [A, A]


def random_model(seed=0) -> Transformer:
    torch.manual_seed(seed)
    cfg = ModelConfig(d_model=32, n_heads=4, encoder_layers=2, decoder_layers=2, d_ff=64, dropout=0.0,
                      max_positions=64)
    return Transformer(cfg, 40, 40, shared_vocab=True).eval()


def batch_of_sources():
    src = torch.randint(4, 40, (5, 9))
    for row, length in enumerate([9, 3, 6, 1, 4]):
        src[row, length:] = PAD
        src[row, length - 1] = EOS
    return src


def test_beam_size_one_equals_greedy():
    model, src = random_model(), batch_of_sources()
    cfg = DecodeConfig(beam_size=1, alpha=0.0, max_len_a=1.2, max_len_b=3)
    for g, b in zip(greedy(model, src, cfg, 60), beam_search(model, src, cfg, 60)):
        assert b[0].tokens == g.tokens
        assert b[0].logprob == pytest.approx(g.logprob, abs=1e-4)


@torch.no_grad()
def full_recompute_greedy(model, src, max_len):
    """Reference: every step re-runs the whole decoder over the prefix (no cache)."""
    out = []
    for row in range(src.size(0)):
        s = src[row : row + 1, : int((src[row] != PAD).sum())]
        prefix, score = [BOS], 0.0
        for _ in range(int(max_len[row]) + 1):
            logp = F.log_softmax(model(s, torch.tensor([prefix]))[0, -1], -1)
            if len(prefix) - 1 == int(max_len[row]):
                token = EOS
            else:
                token = int(logp.argmax())
            score += float(logp[token])
            if token == EOS:
                break
            prefix.append(token)
        out.append((prefix[1:], score))
    return out


def test_cached_greedy_equals_full_recompute():
    model, src = random_model(1), batch_of_sources()
    cfg = DecodeConfig(beam_size=1, max_len_a=1.0, max_len_b=4)
    reference = full_recompute_greedy(model, src, max_lengths(src, 1.0, 4, 60))
    for hyp, (tokens, score) in zip(greedy(model, src, cfg, 60), reference):
        assert hyp.tokens == tokens
        assert hyp.logprob == pytest.approx(score, abs=1e-4)


@torch.no_grad()
def full_recompute_beam(model, src_row, k, max_len, alpha):
    """Reference: one sentence, python lists, the whole decoder re-run for every beam at every step."""
    beams, finished = [([], 0.0)], []
    for step in range(max_len + 1):
        candidates = []
        for index, (prefix, score) in enumerate(beams):
            logp = F.log_softmax(model(src_row, torch.tensor([[BOS] + prefix]))[0, -1], -1)
            if step == max_len:  # only EOS may follow
                logp = torch.full_like(logp, float("-inf")).index_fill(0, torch.tensor([EOS]), float(logp[EOS]))
            candidates += [(score + float(lp), index, token) for token, lp in enumerate(logp.tolist())]
        candidates.sort(key=lambda c: -c[0])
        top = candidates[: 2 * k]
        for total, index, token in top[:k]:
            if token == EOS and len(finished) < k:
                finished.append((beams[index][0], total / length_penalty(step + 1, "gnmt", alpha)))
        if len(finished) >= k:
            break
        beams = [(beams[index][0] + [token], total) for total, index, token in top if token != EOS][:k]
    return sorted(finished, key=lambda f: -f[1])


def test_beam_search_equals_a_full_recompute_reference():
    model, src = random_model(4), batch_of_sources()
    cfg = DecodeConfig(beam_size=3, alpha=0.6, max_len_a=1.0, max_len_b=3)
    limits = max_lengths(src, 1.0, 3, 60)
    for row, hyps in enumerate(beam_search(model, src, cfg, 60, nbest=3)):
        alone = src[row : row + 1, : int((src[row] != PAD).sum())]
        reference = full_recompute_beam(model, alone, 3, int(limits[row]), 0.6)
        assert [h.tokens for h in hyps] == [tokens for tokens, _ in reference]
        assert [h.score for h in hyps] == pytest.approx([score for _, score in reference], abs=1e-4)


def test_beam_search_batch_equals_one_by_one():
    model, src = random_model(2), batch_of_sources()
    cfg = DecodeConfig(beam_size=4, max_len_a=1.0, max_len_b=4)
    batched = beam_search(model, src, cfg, 60, nbest=2)
    for row in range(src.size(0)):
        alone = beam_search(model, src[row : row + 1, : int((src[row] != PAD).sum())], cfg, 60, nbest=2)[0]
        assert [h.tokens for h in alone] == [h.tokens for h in batched[row]]
        assert [h.score for h in alone] == pytest.approx([h.score for h in batched[row]], abs=1e-4)


@pytest.mark.parametrize("beam_size", [1, 3])
def test_uncached_search_gives_the_same_hypotheses(beam_size):
    model, src = random_model(3), batch_of_sources()
    cfg = DecodeConfig(beam_size=beam_size, max_len_a=1.0, max_len_b=4)
    if beam_size == 1:
        pairs = zip(greedy(model, src, cfg, 60), greedy(FullPrefixDecoder(model), src, cfg, 60))
    else:
        pairs = zip(beam_search(model, src, cfg, 60, nbest=beam_size),
                    beam_search(FullPrefixDecoder(model), src, cfg, 60, nbest=beam_size))
    for a, b in pairs:
        a, b = ([a], [b]) if beam_size == 1 else (a, b)
        assert [h.tokens for h in a] == [h.tokens for h in b]
        assert [h.score for h in a] == pytest.approx([h.score for h in b], abs=1e-4)


def test_output_length_never_exceeds_the_model_positions():
    torch.manual_seed(0)
    cfg = ModelConfig(d_model=32, n_heads=4, encoder_layers=1, decoder_layers=1, d_ff=64, dropout=0.0,
                      max_positions=8)
    model = Transformer(cfg, 40, 40, shared_vocab=True).eval()
    src = torch.randint(4, 40, (2, 8))
    search = DecodeConfig(beam_size=2, max_len_a=3.0, max_len_b=10)  # asks for far more than 8 positions
    assert all(len(h.tokens) <= model.max_output_len for h in greedy(model, src, search, model.max_output_len))
    assert all(len(h.tokens) <= 7 for hyps in beam_search(model, src, search, model.max_output_len) for h in hyps)


def test_nbest_is_chosen_from_every_hypothesis_that_finished_at_the_last_step():
    """() finishes first; then [B] and [A] finish together, three for a beam of two. Under a strong length
    penalty [A] outranks (): keeping only the first two to arrive would have returned () instead."""
    model = TableModel({(): {EOS: 0.4, A: 0.35, B: 0.25}, (A,): {EOS: 0.6, A: 0.4}, (B,): {EOS: 0.9, A: 0.1}})
    hyps = beam_search(model, SRC, DecodeConfig(beam_size=2, alpha=2.0, length_penalty="power"), 10, nbest=2)[0]
    assert [h.tokens for h in hyps] == [[B], [A]]
    assert hyps[1].score == pytest.approx(math.log(0.35 * 0.6) / 2 ** 2.0)
