"""Small, fast training setups shared by the trainer tests (and the DDP worker processes), and tiny
run folders holding one checkpoint of a random model, for the export, serving and decoding tests."""
import gzip
import json
from pathlib import Path

import torch

from transformer_mt.config import Config, DataConfig, ModelConfig, RunConfig, TokenizerConfig, TrainConfig, save_config
from transformer_mt.data.corpus import sample_corpus_path
from transformer_mt.data.tokenizer import TokenizerPair
from transformer_mt.model import checkpoint as ckpt
from transformer_mt.model.transformer import Transformer
from transformer_mt.run_folder import RunPaths


def write_jsonl(path: Path, pairs) -> Path:
    """(en, fr) pairs as opus_books-format JSONL."""
    with open(path, "w", encoding="utf-8") as handle:
        for i, (en, fr) in enumerate(pairs):
            handle.write(json.dumps({"id": str(i), "translation": {"en": en, "fr": fr}}, ensure_ascii=False) + "\n")
    return path


def small_corpus(path: Path, count: int = 400) -> Path:
    """The first `count` pairs of the embedded sample, as opus_books-format JSONL."""
    pairs = []
    with gzip.open(sample_corpus_path(), "rt", encoding="utf-8") as handle:
        for line in handle:
            item = json.loads(line)["translation"]
            pairs.append((item["en"], item["fr"]))
            if len(pairs) == count:
                break
    return write_jsonl(path, pairs)


def small_config(root: Path, corpus: Path, name: str, dropout: float = 0.1, model: ModelConfig | None = None,
                 **train) -> Config:
    options = dict(precision="fp32", batch_tokens=300, lr=0.002, warmup_steps=10, max_steps=20, log_every=5,
                   valid_every=1000, checkpoint_every=5, valid_max_sentences=5, seed=3)
    options.update(train)
    return Config(
        run=RunConfig(name=name, root=str(root / "runs")),
        data=DataConfig(source="files", files=[str(corpus)], valid_size=10, test_size=10),
        tokenizer=TokenizerConfig(vocab_size=400),
        model=model or ModelConfig(d_model=32, n_heads=2, encoder_layers=1, decoder_layers=1, d_ff=64,
                                   dropout=dropout, max_positions=64),
        train=TrainConfig(**options),
    )


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
