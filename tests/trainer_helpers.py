"""Small, fast training setups shared by the trainer tests (and the DDP worker processes)."""
from pathlib import Path

from tests.conftest import write_jsonl
from transformer_mt.config import Config, DataConfig, ModelConfig, RunConfig, TokenizerConfig, TrainConfig
from transformer_mt.data.corpus import sample_corpus_path


def small_corpus(path: Path, count: int = 400) -> Path:
    import gzip
    import json

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
