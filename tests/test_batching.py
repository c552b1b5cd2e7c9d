import torch

from transformer_mt.batching import collate, encode_cached, encode_pairs, epoch_batches, token_batches
from transformer_mt.config import TokenizerConfig
from transformer_mt.tokenizer import BOS, EOS, PAD, TokenizerPair


def corpus(sample_pairs):
    tokenizers = TokenizerPair.train(sample_pairs[:1000], TokenizerConfig(vocab_size=600))
    return encode_pairs(sample_pairs[:1000], tokenizers, 64), tokenizers


def test_teacher_forcing_shift(sample_pairs):
    ids, tokenizers = corpus(sample_pairs)
    batch = collate(ids, torch.tensor([3, 8]))
    target = tokenizers.tgt.encode(sample_pairs[3][1])
    assert batch.tgt_in[0, : len(target) + 1].tolist() == [BOS] + target
    assert batch.tgt_out[0, : len(target) + 1].tolist() == target + [EOS]
    assert batch.src[0, : ids.src_lengths[3]].tolist() == tokenizers.src.encode(sample_pairs[3][0]) + [EOS]
    assert batch.tgt_in.shape == batch.tgt_out.shape
    assert batch.n_tokens == int(ids.tgt_lengths[3] + ids.tgt_lengths[8])
    assert (batch.tgt_in == PAD).sum() == (batch.tgt_out == PAD).sum()


def test_token_batches_respect_the_cap_and_cover_every_pair_once(sample_pairs):
    ids, _ = corpus(sample_pairs)
    batches = epoch_batches(ids, 300, seed=1, epoch=0)
    seen = torch.cat(batches).sort().values
    assert seen.tolist() == list(range(len(ids)))
    longest = torch.maximum(ids.src_lengths, ids.tgt_lengths)
    assert all(len(b) * int(longest[b].max()) <= 300 for b in batches)
    assert epoch_batches(ids, 300, seed=1, epoch=0)[5].tolist() == batches[5].tolist()  # deterministic
    assert epoch_batches(ids, 300, seed=1, epoch=1)[5].tolist() != batches[5].tolist()  # epochs differ


def test_bucketing_reduces_padding(sample_pairs):
    ids, _ = corpus(sample_pairs)
    def pad_share(batches):
        pads = total = 0
        for b in batches:
            batch = collate(ids, b)
            pads += int((batch.src == PAD).sum() + (batch.tgt_out == PAD).sum())
            total += batch.src.numel() + batch.tgt_out.numel()
        return pads / total
    random_batches = list(torch.randperm(len(ids), generator=torch.Generator().manual_seed(0)).split(20))
    assert pad_share(token_batches(ids.src_lengths, ids.tgt_lengths, 400, torch.Generator().manual_seed(0))) \
        < 0.5 * pad_share(random_batches)


def test_ranks_get_disjoint_equal_shards(sample_pairs):
    ids, _ = corpus(sample_pairs)
    rank0, rank1 = (epoch_batches(ids, 300, seed=1, epoch=0, rank=r, world_size=2) for r in (0, 1))
    assert len(rank0) == len(rank1)
    assert not set(torch.cat(rank0).tolist()) & set(torch.cat(rank1).tolist())


def test_encoding_is_cached_on_disk(sample_pairs, tmp_path):
    tokenizers = TokenizerPair.train(sample_pairs[:300], TokenizerConfig(vocab_size=500))
    cache = tmp_path / "ids.pt"
    first = encode_cached(sample_pairs[:300], tokenizers, 64, cache)
    stamp = cache.stat().st_mtime_ns
    again = encode_cached(sample_pairs[:300], tokenizers, 64, cache)
    assert cache.stat().st_mtime_ns == stamp and torch.equal(first.tgt_ids, again.tgt_ids)
    changed = encode_cached(sample_pairs[:299], tokenizers, 64, cache)  # other text: encoded afresh
    assert len(changed) == 299
