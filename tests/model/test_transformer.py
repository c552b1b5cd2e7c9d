import math

import pytest
import torch
import torch.nn.functional as F

from tests.helpers.models import naive_attention, tiny, tokens
from transformer_mt.data.batching import pad_batch
from transformer_mt.data.tokenizer import BOS, PAD
from transformer_mt.model.transformer import DecoderCache, attend, padding_mask, sinusoidal_positions


def test_positional_encoding_matches_formula():
    pe = sinusoidal_positions(20, 16)
    for pos in (0, 3, 19):
        for i in range(8):
            angle = pos / (10000 ** (2 * i / 16))
            assert pe[pos, 2 * i].item() == pytest.approx(math.sin(angle), abs=1e-5)
            assert pe[pos, 2 * i + 1].item() == pytest.approx(math.cos(angle), abs=1e-5)


def fused_heads(batch, length, heads=3, d=8, dtype=torch.float32):
    """q, k, v as the model makes them: non-contiguous head views of one fused projection."""
    qkv = torch.randn(batch, length, 3 * heads * d).to(dtype).requires_grad_()
    return qkv, [t.unflatten(-1, (heads, d)).transpose(1, 2) for t in qkv.chunk(3, -1)]


@pytest.mark.parametrize("need_weights", [False, True])
def test_attention_matches_naive_softmax(need_weights):
    q, k, v = (torch.randn(2, 3, 5, 8) for _ in range(3))
    keep = torch.ones(2, 1, 1, 5, dtype=torch.bool)
    keep[1, ..., 3:] = False
    out, weights = attend(q, k, v, keep, False, 0.0, need_weights)
    torch.testing.assert_close(out, naive_attention(q, k, v, keep), atol=1e-5, rtol=1e-5)
    out, _ = attend(q, k, v, None, True, 0.0, need_weights)
    torch.testing.assert_close(out, naive_attention(q, k, v, causal=True), atol=1e-5, rtol=1e-5)
    out, _ = attend(q, k, v, keep, True, 0.0, need_weights)
    torch.testing.assert_close(out, naive_attention(q, k, v, keep, causal=True), atol=1e-5, rtol=1e-5)
    if need_weights:
        assert torch.allclose(weights.sum(-1), torch.ones(2, 3, 5))


@pytest.mark.parametrize("causal", [False, True])
def test_attention_gradients_match_pytorch_sdpa(causal):
    """Training runs attend's own maths on CPU in fp32: its gradients must be SDPA's, for the strided
    head views the model passes, padded keys and (cross-attention) fewer queries than keys."""
    torch.manual_seed(0)
    qkv, (q, _, _) = fused_heads(2, 4 if not causal else 6)
    kv, (_, k, v) = fused_heads(2, 6)
    keep = torch.ones(2, 1, 1, 6, dtype=torch.bool)
    keep[0, ..., 4:] = False
    grad_out = torch.randn(2, 3, q.size(2), 8)
    grads = []
    for attention in (lambda: attend(q, k, v, keep, causal, 0.0, False)[0],
                      lambda: F.scaled_dot_product_attention(q, k, v, attn_mask=keep, is_causal=causal)):
        out = attention()
        grads.append((out, *torch.autograd.grad(out, (qkv, kv), grad_out)))
    for ours, reference in zip(*grads):
        torch.testing.assert_close(ours, reference, atol=1e-5, rtol=1e-5)


def test_attention_in_bf16_matches_fp32():
    """bf16 attention takes PyTorch's kernel when training and attend's maths when decoding a step."""
    torch.manual_seed(0)
    _, (q, k, v) = fused_heads(2, 5, dtype=torch.bfloat16)
    keep = torch.ones(2, 1, 1, 5, dtype=torch.bool)
    keep[1, ..., 3:] = False
    reference = naive_attention(q.float(), k.float(), v.float(), keep)
    torch.testing.assert_close(attend(q, k, v, keep, False, 0.0, False)[0].float(), reference, atol=2e-2, rtol=2e-2)
    with torch.no_grad():
        step = attend(q[:, :, :1], k, v, keep, False, 0.0, False, incremental=True)[0]
    torch.testing.assert_close(step.float(), reference[:, :, :1], atol=2e-2, rtol=2e-2)


@pytest.mark.parametrize("norm_first", [True, False])
def test_padding_never_influences_real_positions(norm_first):
    model = tiny(norm_first)
    src, tgt = tokens(1, 6), torch.cat([torch.full((1, 1), BOS), tokens(1, 4)], 1)
    alone = model(src, tgt)
    padded_src = torch.cat([src, torch.full((1, 3), PAD)], 1)
    padded_tgt = torch.cat([tgt, torch.full((1, 2), PAD)], 1)
    torch.testing.assert_close(model(padded_src, padded_tgt)[:, :5], alone, atol=1e-5, rtol=1e-5)
    # and inside a batch, next to a longer sentence
    batch_src = torch.cat([padded_src, tokens(1, 9)])
    batch_tgt = torch.cat([padded_tgt, tokens(1, 7)])
    torch.testing.assert_close(model(batch_src, batch_tgt)[:1, :5], alone, atol=1e-5, rtol=1e-5)


def test_encoder_runs_its_position_wise_layers_on_real_tokens_only():
    model = tiny()
    src = torch.cat([tokens(1, 6), torch.cat([tokens(1, 3), torch.full((1, 3), PAD)], 1)])
    rows = []
    for layer in model.encoder:
        layer.ffn.register_forward_hook(lambda module, inputs, output: rows.append(inputs[0].shape))
    memory, _, _ = model.encode(src)
    assert rows == [torch.Size([9, 32])] * 2
    assert memory.shape == (2, 6, 32) and not memory[1, 3:].any() and memory[1, :3].abs().min() > 0
    given = model.encode(src, src_index=(src != PAD).flatten().nonzero().squeeze(1))[0]
    assert torch.equal(given, memory)  # the positions as collation brings them: the same computation


def test_batch_gradients_equal_the_sum_of_each_sentences_gradients():
    """Backward through the packed encoder: a padded batch's loss is the sum of its sentences' losses."""
    model = tiny().train()
    lengths = [(7, 5), (3, 6), (5, 2)]
    pairs = [(tokens(1, s), torch.cat([torch.full((1, 1), BOS), tokens(1, t)], 1)) for s, t in lengths]

    def grads(src, tgt):
        model.zero_grad()
        logits = model(src, tgt[:, :-1])
        F.cross_entropy(logits.flatten(0, 1), tgt[:, 1:].flatten(), ignore_index=PAD, reduction="sum").backward()
        return [p.grad.clone() for p in model.parameters()]

    batch = grads(pad_batch([s[0].tolist() for s, _ in pairs]), pad_batch([t[0].tolist() for _, t in pairs]))
    alone = [grads(s, t) for s, t in pairs]
    for index, grad in enumerate(batch):
        torch.testing.assert_close(grad, sum(g[index] for g in alone), atol=1e-4, rtol=1e-4)


def test_decoder_never_sees_the_future():
    model = tiny()
    src, tgt = tokens(2, 6), tokens(2, 8)
    changed = tgt.clone()
    changed[:, 5:] = tokens(2, 3)
    a, b = model(src, tgt), model(src, changed)
    torch.testing.assert_close(a[:, :5], b[:, :5])
    assert not torch.allclose(a[:, 5:], b[:, 5:])


@pytest.mark.parametrize("norm_first", [True, False])
def test_incremental_decoding_equals_full_forward(norm_first):
    model = tiny(norm_first)
    src = tokens(3, 7)
    src[0, 4:] = PAD
    tgt = torch.cat([torch.full((3, 1), BOS), tokens(3, 6)], 1)
    full = F.log_softmax(model(src, tgt), -1)
    memory, mask, _ = model.encode(src)
    cache = DecoderCache()
    steps = [model.decode_step(tgt[:, t : t + 1], memory, mask, cache) for t in range(tgt.size(1))]
    torch.testing.assert_close(torch.stack(steps, 1), full, atol=1e-5, rtol=1e-5)
    assert cache.length == tgt.size(1)


@pytest.mark.parametrize("incremental", [False, True])
def test_beams_share_one_memory_row_per_sentence(incremental):
    """g decoder rows per sentence against one memory row equal the memory repeated g times."""
    model, g = tiny(), 3
    src = tokens(2, 7)
    src[1, 5:] = PAD
    tgt = torch.cat([torch.full((2 * g, 1), BOS), tokens(2 * g, 4)], 1)
    memory, mask, _ = model.encode(src)
    repeated = memory.repeat_interleave(g, 0), mask.repeat_interleave(g, 0)
    if incremental:
        shared_cache, repeated_cache = DecoderCache(), DecoderCache()
        shared = torch.stack([model.decode_step(tgt[:, t : t + 1], memory, mask, shared_cache) for t in range(5)], 1)
        expected = torch.stack([model.decode_step(tgt[:, t : t + 1], *repeated, repeated_cache) for t in range(5)], 1)
    else:
        shared, expected = model.decode(tgt, memory, mask)[0], model.decode(tgt, *repeated)[0]
    torch.testing.assert_close(shared, expected, atol=1e-5, rtol=1e-5)


def test_weight_tying():
    model = tiny(tie=True, shared=True)
    assert model.output.weight is model.tgt_embed.weight is model.src_embed.weight
    separate = tiny(tie=True, shared=False)
    assert separate.output.weight is separate.tgt_embed.weight
    assert separate.src_embed is not separate.tgt_embed
    untied = tiny(tie=False)
    assert untied.output.weight is not untied.tgt_embed.weight


def test_embeddings_are_scaled_and_padding_mask_shape():
    model = tiny()
    x = tokens(1, 3)
    expected = model.src_embed(x) * math.sqrt(32) + model.pe[:3]
    torch.testing.assert_close(model._embed(model.src_embed, x), expected)
    mask = padding_mask(torch.tensor([[5, 6, PAD]]))
    assert mask.shape == (1, 1, 1, 3) and mask.tolist() == [[[[True, True, False]]]]


def test_attention_maps_come_from_the_forward_pass():
    model = tiny()
    src, tgt = tokens(1, 5), tokens(1, 4)
    maps = model.attention_maps(src, tgt)
    assert len(maps.cross) == 2 and maps.cross[0].shape == (1, 4, 4, 5)
    torch.testing.assert_close(maps.cross[1].sum(-1), torch.ones(1, 4, 4))
    assert torch.all(maps.decoder_self[0][0, :, 0, 1:] == 0)  # causal: position 0 sees only itself
    assert not any(hasattr(m, "weights") for m in model.modules())  # nothing stored between calls
