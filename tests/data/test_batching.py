import numpy as np
import pytest
import torch
from torch.nn.utils.rnn import pad_sequence

from transformer_mt.config import TokenizerConfig
from transformer_mt.data.batching import Shapes, collate, epoch_batches, token_batches
from transformer_mt.data.store import EncodedCorpus, StoreWriter, encode_pairs, encode_texts, open_store, read_manifest
from transformer_mt.data.tokenizer import BOS, EOS, PAD, TokenizerPair


@pytest.fixture(scope="module")
def encoded(sample_pairs):
    tokenizers = TokenizerPair.train(sample_pairs[:1000], TokenizerConfig(vocab_size=600))
    return encode_pairs(sample_pairs[:1000], tokenizers, 64), tokenizers


def test_teacher_forcing_shift(encoded, sample_pairs):
    ids, tokenizers = encoded
    batch = collate(ids, torch.tensor([3, 8]))
    target = tokenizers.tgt.encode(sample_pairs[3][1])
    assert batch.tgt_in[0, : len(target) + 1].tolist() == [BOS] + target
    assert batch.tgt_out[0, : len(target) + 1].tolist() == target + [EOS]
    source = tokenizers.src.encode(sample_pairs[3][0])
    assert batch.src[0, : len(source) + 1].tolist() == source + [EOS]
    assert batch.tgt_in.shape == batch.tgt_out.shape
    assert batch.n_tokens == len(target) + 1 + len(tokenizers.tgt.encode(sample_pairs[8][1])) + 1
    assert (batch.tgt_in == PAD).sum() == (batch.tgt_out == PAD).sum()


def reference_collate(corpus, indices):
    """One sequence at a time with pad_sequence: what collate's vectorised gather must equal."""
    def pad(seqs):
        return pad_sequence([torch.tensor(s, dtype=torch.long) for s in seqs], batch_first=True, padding_value=PAD)
    src = [corpus.src(i).tolist() + [EOS] for i in indices]
    tgt = [corpus.tgt(i).tolist() for i in indices]
    return pad(src), pad([[BOS] + t for t in tgt]), pad([t + [EOS] for t in tgt])


def write_store(ids, folder, chunk=300):
    """`ids` written as preparation writes a store, in chunks; the writer, not yet finished."""
    writer = StoreWriter(folder, np.dtype(np.uint16))
    for start in range(0, len(ids), chunk):
        pairs = range(start, min(len(ids), start + chunk))
        writer.add(*[(np.concatenate([side(i) for i in pairs]), np.array([len(side(i)) for i in pairs]))
                     for side in (ids.src, ids.tgt)])
    return writer


def test_collate_equals_padding_each_sequence_on_a_memory_mapped_store(encoded, tmp_path):
    ids, _ = encoded
    stored = open_store(tmp_path / "store", write_store(ids, tmp_path / "store").finish("inputs", "key", {}))
    assert isinstance(stored.src_ids, np.memmap) and len(stored) == len(ids)
    for indices in ([5], [0, 999, 17, 300, 301], list(range(40, 90))):
        batch = collate(stored, np.array(indices))
        for got, want in zip((batch.src, batch.tgt_in, batch.tgt_out), reference_collate(ids, indices)):
            assert torch.equal(got, want)
        # where the model's encoder finds the real tokens, found here so that a GPU need not wait for it
        assert torch.equal(batch.src_index, (batch.src != PAD).flatten().nonzero().squeeze(1))


def test_a_store_without_its_manifest_or_with_a_short_file_is_not_complete(encoded, tmp_path):
    ids, _ = encoded
    writer = write_store(ids, tmp_path / "s")
    assert read_manifest(tmp_path / "s") is None  # manifest not written yet: cut short
    writer.finish("i", "k", {})
    assert read_manifest(tmp_path / "s").pairs == len(ids)
    with open(tmp_path / "s" / "tgt.ids", "r+b") as handle:
        handle.truncate(10)
    assert read_manifest(tmp_path / "s") is None


def test_encode_texts_cuts_each_sequence_and_keeps_small_ids_small(encoded, sample_pairs):
    _, tokenizers = encoded
    texts = [s for s, _ in sample_pairs[:50]]
    flat, lengths = encode_texts(tokenizers.src, texts, 5)
    full = tokenizers.src.encode_batch(texts)
    assert lengths.tolist() == [min(5, len(x)) for x in full]
    assert flat.tolist() == [t for x in full for t in x[:5]] and flat.dtype == np.uint16


def test_token_batches_respect_the_cap_and_cover_every_pair_once(encoded):
    ids, _ = encoded
    batches = epoch_batches(ids, 300, seed=1, epoch=0)
    seen = np.sort(np.concatenate(list(batches)))
    assert seen.tolist() == list(range(len(ids)))
    src, tgt = ids.lengths(np.arange(len(ids)))
    longest = np.maximum(src, tgt)
    assert all(len(b) * int(longest[b].max()) <= 300 for b in batches)
    assert epoch_batches(ids, 300, seed=1, epoch=0)[5].tolist() == batches[5].tolist()  # deterministic
    assert epoch_batches(ids, 300, seed=1, epoch=1)[5].tolist() != batches[5].tolist()  # epochs differ


def reference_plan(src_lengths, tgt_lengths, batch_tokens, generator, pool_batches=100):
    """Shuffle, sort pools by (target, source) length, cut greedily, shuffle the batches: one tensor per
    batch, written out plainly."""
    n = len(src_lengths)
    longest = torch.maximum(src_lengths, tgt_lengths)
    order = torch.randperm(n, generator=generator)
    pool = max(1, int(pool_batches * batch_tokens / max(1.0, longest.double().mean().item())))
    batches = []
    for start in range(0, n, pool):
        chunk = order[start : start + pool]
        chunk = chunk[torch.argsort(src_lengths[chunk], stable=True)]
        chunk = chunk[torch.argsort(tgt_lengths[chunk], stable=True)]
        current, widest = [], 0
        for index in chunk.tolist():
            if current and max(widest, int(longest[index])) * (len(current) + 1) > batch_tokens:
                batches.append(current)
                current, widest = [], 0
            current.append(index)
            widest = max(widest, int(longest[index]))
        batches.append(current)
    return [batches[i] for i in torch.randperm(len(batches), generator=generator).tolist()]


@pytest.mark.parametrize("batch_tokens", [60, 300, 2000])
def test_the_plan_is_the_plain_shuffle_sort_and_cut(encoded, batch_tokens):
    ids, _ = encoded
    src, tgt = (torch.from_numpy(x) for x in ids.lengths(np.arange(len(ids))))
    want = reference_plan(src, tgt, batch_tokens, torch.Generator().manual_seed(9))
    got = token_batches(ids, batch_tokens, torch.Generator().manual_seed(9))
    assert [b.tolist() for b in got] == want


def test_bucketing_reduces_padding(encoded):
    ids, _ = encoded
    def pad_share(batches):
        pads = total = 0
        for b in batches:
            batch = collate(ids, b)
            pads += int((batch.src == PAD).sum() + (batch.tgt_out == PAD).sum())
            total += batch.src.numel() + batch.tgt_out.numel()
        return pads / total
    random_batches = list(torch.randperm(len(ids), generator=torch.Generator().manual_seed(0)).split(20))
    assert pad_share(token_batches(ids, 400, torch.Generator().manual_seed(0))) < 0.5 * pad_share(random_batches)


def test_ranks_get_disjoint_equal_shards(encoded):
    ids, _ = encoded
    rank0, rank1 = (epoch_batches(ids, 300, seed=1, epoch=0, rank=r, world_size=2) for r in (0, 1))
    assert len(rank0) == len(rank1)
    assert not set(np.concatenate(list(rank0)).tolist()) & set(np.concatenate(list(rank1)).tolist())


def test_the_plan_of_a_large_corpus_holds_one_int32_per_pair():
    n = 3_000_000
    rng = np.random.default_rng(0)
    offsets = np.concatenate([[0], np.cumsum(rng.integers(1, 40, n))]).astype(np.int64)
    ids = np.zeros(int(offsets[-1]), np.uint16)
    plan = token_batches(EncodedCorpus(ids, offsets, ids, offsets), 4096, torch.Generator().manual_seed(0))
    assert plan.order.dtype == np.int32 and plan.order.nbytes == 4 * n
    assert plan.bounds.nbytes + plan.sequence.nbytes < 0.05 * plan.order.nbytes


@pytest.mark.parametrize("shapes", [Shapes(4, 1), Shapes(1, 16), Shapes(8, 64)])
def test_rounded_batches_hold_the_same_tokens_in_rounded_shapes(encoded, shapes):
    ids, _ = encoded
    for indices in ([5], [0, 999, 17, 300, 301], list(range(40, 90))):
        batch, plain = collate(ids, np.array(indices), shapes), collate(ids, np.array(indices))
        for got, want in zip(batch.tensors()[:3], plain.tensors()[:3]):
            assert got.size(1) % shapes.length_multiple == 0 and got.size(1) - want.size(1) < shapes.length_multiple
            assert torch.equal(got[:, : want.size(1)], want) and bool((got[:, want.size(1):] == PAD).all())
        rows, real = batch.src_index, (batch.src != PAD).flatten().nonzero().squeeze(1)
        assert len(rows) == min(batch.src.numel(), -(-len(real) // shapes.row_multiple) * shapes.row_multiple)
        assert bool((rows[1:] > rows[:-1]).all()) and set(real.tolist()) <= set(rows.tolist())


def test_a_rounded_plan_serves_every_pair_once_within_the_cap_in_rounded_widths(encoded):
    ids, _ = encoded
    shapes = Shapes(length_multiple=8)
    plan = epoch_batches(ids, 300, seed=1, epoch=0, shapes=shapes)
    served = np.concatenate(list(plan))
    assert sorted(served.tolist()) == list(range(len(ids)))
    for indices in plan:
        batch = collate(ids, indices, shapes)
        # the cap counts the longest side without its EOS/BOS column, as the unrounded plan does
        assert len(indices) == 1 or len(indices) * (max(batch.src.size(1), batch.tgt_out.size(1)) - 1) <= 300
    assert [b.tolist() for b in epoch_batches(ids, 300, seed=1, epoch=0, shapes=shapes)] == [b.tolist() for b in plan]
    widths = {collate(ids, b, shapes).tgt_out.size(1) for b in plan}
    assert len(widths) < len({collate(ids, b).tgt_out.size(1) for b in epoch_batches(ids, 300, seed=1, epoch=0)})
