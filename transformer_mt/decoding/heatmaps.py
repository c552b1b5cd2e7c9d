"""Attention heatmaps (cross-attention per decoder layer, averaged over heads) as matplotlib figures.

matplotlib is optional (`pip install -e .[plot]`, which `make install` does): without it the
trainer skips the TensorBoard image and `translate.py --attention` says what to install.
"""
from __future__ import annotations

import importlib.util

import torch

from ..config import DecodeConfig
from ..data.tokenizer import BOS, EOS, TokenizerPair, source_ids
from ..model.transformer import Transformer
from .search import greedy


def figures_available() -> bool:
    return importlib.util.find_spec("matplotlib") is not None


@torch.no_grad()
def cross_attention_figure(model: Transformer, tokenizers: TokenizerPair, sentence: str, device: torch.device,
                           self_attention: bool = False):
    """Translate `sentence` greedily, then plot the attention of one forward pass over that output."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    was_training = model.training
    model.eval()
    src_ids = source_ids(tokenizers.src.encode(sentence), model.cfg.max_positions)
    src = torch.tensor([src_ids], device=device)
    hyp = greedy(model, src, DecodeConfig(beam_size=1), model.max_output_len)[0].tokens
    tgt_in = torch.tensor([[BOS] + hyp], device=device)
    maps = model.attention_maps(src, tgt_in)
    model.train(was_training)
    src_labels = _labels(tokenizers.src, src_ids)
    tgt_labels = _labels(tokenizers.tgt, hyp + [EOS])  # row t: attention while predicting token t
    rows = [("cross", maps.cross, src_labels)] + ([("self", maps.decoder_self, ["<bos>"] + tgt_labels[:-1])]
                                                  if self_attention else [])
    layers = len(maps.cross)
    fig, axes = plt.subplots(len(rows), layers, figsize=(3.2 * layers + 1, 3.2 * len(rows) + 0.6), squeeze=False)
    for r, (kind, per_layer, columns) in enumerate(rows):
        for layer, weights in enumerate(per_layer):
            ax = axes[r][layer]
            ax.imshow(weights[0].float().mean(0).cpu().numpy(), cmap="viridis", aspect="auto", vmin=0.0)
            ax.set_title(f"{kind} layer {layer + 1}", fontsize=9)
            ax.set_xticks(range(len(columns)), columns, rotation=90, fontsize=7)
            ax.set_yticks(range(len(tgt_labels)), tgt_labels, fontsize=7)
    fig.tight_layout()
    return fig


def _labels(tokenizer, ids: list[int]) -> list[str]:
    """Readable token labels: a leading space shows as ▁ (byte-level pieces decode to text)."""
    labels = []
    for token_id in ids:
        text = tokenizer.hf.decode([token_id], skip_special_tokens=False)
        text = "".join(c if c.isprintable() or c == " " else "\ufffd" for c in text)  # control bytes
        labels.append("▁" + text[1:] if text.startswith(" ") else text)
    return labels
