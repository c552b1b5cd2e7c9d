"""Tiny run folders for the export tests, and the checks every export format must pass."""
from pathlib import Path
from typing import Callable

import pytest
import torch

from transformer_mt.config import Config, ModelConfig, RunConfig, TokenizerConfig, save_config
from transformer_mt.data.tokenizer import TokenizerPair
from transformer_mt.errors import UserError
from transformer_mt.model import checkpoint as ckpt
from transformer_mt.model.transformer import Transformer
from transformer_mt.run_folder import RunPaths


def tiny_run(root: Path, pairs, joint: bool = True, **model) -> RunPaths:
    """A run folder holding one checkpoint of a random tiny model, its norms and biases random too, so
    that a weight mapped to the wrong place shows."""
    config = Config(run=RunConfig(name="tiny", root=str(root)), tokenizer=TokenizerConfig(vocab_size=300, joint=joint),
                    model=ModelConfig(d_model=32, n_heads=4, encoder_layers=2, decoder_layers=2, d_ff=64, dropout=0.0,
                                      max_positions=48, **model))
    tokenizers = TokenizerPair.train(pairs, config.tokenizer)
    torch.manual_seed(0)
    net = Transformer(config.model, tokenizers.src.vocab_size, tokenizers.tgt.vocab_size, shared_vocab=joint)
    with torch.no_grad():
        for name, parameter in net.named_parameters():
            if parameter.dim() == 1:  # biases and norms start at 0 and 1
                parameter.add_(torch.randn_like(parameter) * 0.2)
    run = RunPaths(root / "tiny")
    run.checkpoints.mkdir(parents=True)
    save_config(config, run.config)
    tokenizers.save(run.src_tokenizer, run.tgt_tokenizer)
    ckpt.save_atomic({"model": net.state_dict(), "config": config.to_dict(), "state": {"step": 7},
                      "vocab": {"src": tokenizers.src.vocab_size, "tgt": tokenizers.tgt.vocab_size, "joint": joint}},
                     run.last)
    return run


def check_force_and_failure(root: Path, export: Callable[[Path, bool], object], finished: Callable[[Path], bool],
                            monkeypatch, writer: type, method: str) -> None:
    """An existing non-empty folder is replaced only with force; a write that fails (writer.method
    raising disk full) leaves neither a half-made folder nor its staging folder under root."""
    out = root / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(UserError, match="exists and is not empty: pass --force"):
        export(out, False)
    export(out, True)
    assert finished(out) and not (out / "keep.txt").exists()

    def disk_full(self, *args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(writer, method, disk_full)
    with pytest.raises(UserError, match=r"cannot write the export .*fresh: No space left on device"):
        export(root / "fresh", False)
    assert sorted(p.name for p in root.iterdir()) == ["out", "tiny"]
