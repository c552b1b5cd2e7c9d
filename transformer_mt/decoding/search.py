"""Greedy and batched beam search over the model's incremental (key/value-cached) decoder.

The search only needs a model with `encode(src)` → (memory, mask, _), `decode_step(tokens, memory,
mask, cache)` → log-probabilities (B, V), and a cache with `reorder(index)`; tests drive it with a
hand-made model of fixed probabilities.
"""
from __future__ import annotations

import torch
from torch import Tensor

from ..config import DecodeConfig
from ..data.tokenizer import BOS, EOS, PAD
from ..model.transformer import DecoderCache
from .search_rules import Hypothesis, length_penalty, output_limit


def max_lengths(src: Tensor, a: float, b: int, limit: int) -> Tensor:
    """output_limit of each sentence of a padded batch, on its device."""
    src_len = (src != PAD).sum(1) - 1  # without the source EOS
    return torch.tensor([output_limit(n, a, b, limit) for n in src_len.tolist()], device=src.device)


def _step_logprobs(model, history: Tensor, memory: Tensor, mask: Tensor, cache: DecoderCache, step: int,
                   max_len: Tensor, cfg: DecodeConfig) -> Tensor:
    logprobs = model.decode_step(history[:, -1:], memory, mask, cache)
    eos = logprobs[:, EOS].clone()
    if step < cfg.min_len:
        logprobs[:, EOS] = float("-inf")
    forced = step >= max_len  # these rows must end now, with EOS's own probability (as fairseq)
    if bool(forced.any()):
        logprobs[forced] = float("-inf")
        logprobs[forced, EOS] = eos[forced]
    return logprobs


@torch.no_grad()
def greedy(model, src: Tensor, cfg: DecodeConfig, limit: int) -> list[Hypothesis]:
    memory, mask, _ = model.encode(src)
    max_len = max_lengths(src, cfg.max_len_a, cfg.max_len_b, limit)
    n = src.size(0)
    alive = torch.arange(n, device=src.device)  # original sentence of each remaining row
    history = torch.full((n, 1), BOS, dtype=torch.long, device=src.device)
    scores = torch.zeros(n, device=src.device)
    results: list[Hypothesis | None] = [None] * n
    cache = DecoderCache()
    for step in range(int(max_len.max()) + 1):
        logprobs = _step_logprobs(model, history, memory, mask, cache, step, max_len[alive], cfg)
        best, token = logprobs.max(dim=-1)
        scores = scores + best
        history = torch.cat([history, token.unsqueeze(1)], dim=1)
        done = token == EOS
        if bool(done.any()):
            for row, tokens, score in zip(alive[done].tolist(), history[done, 1:-1].tolist(), scores[done].tolist()):
                results[row] = Hypothesis(tokens, score, score)
            keep = (~done).nonzero().squeeze(1)
            if keep.numel() == 0:
                break
            alive, history, scores = alive[keep], history[keep], scores[keep]
            memory, mask = memory.index_select(0, keep), mask.index_select(0, keep)
            cache.reorder(keep, keep)
    return results


@torch.no_grad()
def beam_search(model, src: Tensor, cfg: DecodeConfig, limit: int, nbest: int = 1) -> list[list[Hypothesis]]:
    """Batched beam search; returns up to `nbest` hypotheses per sentence, best first.

    Each step takes the top 2k of the k·V extensions: EOS among the first k finishes a hypothesis,
    the best k others continue. A sentence leaves the batch once k hypotheses are final. The memory
    stays one row per sentence (the decoder shares it among that sentence's beams).
    """
    k, n, device = cfg.beam_size, src.size(0), src.device
    memory, mask, _ = model.encode(src)
    max_len = max_lengths(src, cfg.max_len_a, cfg.max_len_b, limit)
    sentence = torch.arange(n, device=device)  # original sentence of each alive block of beams
    scores = torch.zeros(n, k, device=device)
    scores[:, 1:] = float("-inf")  # all beams start identical: expand only the first
    width = 1  # rows per sentence in `history` and the cache: the k beams are one row until step 1
    history = torch.full((n, 1), BOS, dtype=torch.long, device=device)
    finished: list[list[Hypothesis]] = [[] for _ in range(n)]
    cache = DecoderCache()
    for step in range(int(max_len.max()) + 1):
        logprobs = _step_logprobs(model, history, memory, mask, cache, step,
                                  max_len[sentence].repeat_interleave(width), cfg)
        vocab = logprobs.size(1)
        candidates = (scores.unsqueeze(2) + logprobs.view(-1, width, vocab)).view(-1, k * vocab)
        top_scores, top_index = candidates.topk(min(2 * k, k * vocab), dim=1)
        # Row of `history` each candidate extends (while width is 1, every beam is that one row).
        top_row, top_token = top_index // vocab % width, top_index % vocab
        is_eos = top_token == EOS
        _finish(finished, sentence, history, top_scores, top_row, top_token, is_eos, k, width, step, cfg)
        # The k best extensions that are not EOS continue (topk is sorted, so keep the order).
        rank = is_eos.long() * (2 * k) + torch.arange(top_index.size(1), device=device)
        keep_col = rank.argsort(dim=1)[:, :k]
        scores = top_scores.gather(1, keep_col)
        row = top_row.gather(1, keep_col)
        token = top_token.gather(1, keep_col)
        alive = [len(finished[s]) < k for s in sentence.tolist()]
        if not any(alive):
            break
        blocks = torch.tensor(alive, device=device).nonzero().squeeze(1)
        rows = (blocks.unsqueeze(1) * width + row[blocks]).view(-1)  # source row of each new beam
        history = torch.cat([history.index_select(0, rows), token[blocks].view(-1, 1)], dim=1)
        scores, width = scores[blocks], k
        if blocks.numel() < sentence.numel():  # some sentences are done: drop their memory too
            sentence, memory, mask = sentence[blocks], memory[blocks], mask[blocks]
            cache.reorder(rows, blocks)
        else:
            cache.reorder(rows)
    return [sorted(hyps, key=lambda h: -h.score)[:nbest] for hyps in finished]


def _finish(finished: list[list[Hypothesis]], sentence: Tensor, history: Tensor, top_scores: Tensor,
            top_row: Tensor, top_token: Tensor, is_eos: Tensor, k: int, width: int, step: int,
            cfg: DecodeConfig) -> None:
    """Store the EOS extensions ranked within the first k as final, length-normalised hypotheses. All of
    them: when a sentence's k-th and (k+1)-th finish at the same step, the n-best list is chosen from
    every finished hypothesis (as CTranslate2 does), not from the first k to arrive."""
    block, col = is_eos[:, :k].nonzero(as_tuple=True)
    if block.numel() == 0:
        return
    penalty = length_penalty(step + 1, cfg.length_penalty, cfg.alpha)  # tokens + EOS
    rows = (block * width + top_row[block, col]).tolist()
    owners = sentence[block].tolist()
    for owner, row, score in zip(owners, rows, top_scores[block, col].tolist()):
        if score == float("-inf"):
            continue
        finished[owner].append(Hypothesis(history[row, 1:].tolist(), score / penalty, score))
