"""The benchmark's data, prepared as a training run prepares it."""
from __future__ import annotations

import statistics
import tempfile

import torch

from ..config import Config, DataConfig, ModelConfig, RunConfig, TokenizerConfig
from ..data.batching import Batch, collate, epoch_batches, pad_batch, padding_share, token_batches
from ..data.corpus import read_held_out
from ..data.tokenizer import source_ids
from ..training.setup import set_up_run
from .records import Padding


class Workload:
    """Training pairs (memory-mapped from a temporary run folder, kept while the benchmark runs), test
    sentences to decode, and the model size: the quick start's on a CPU, Transformer-base with
    configs/base.yaml's 16k vocabulary on a GPU."""

    def __init__(self, smoke: bool, device: torch.device):
        self._folder = tempfile.TemporaryDirectory()
        gpu = device.type == "cuda" and not smoke
        config = Config(run=RunConfig(name="bench", root=self._folder.name),
                        data=DataConfig(source="sample", max_pairs=3000 if smoke else 40000, valid_size=300,
                                        test_size=300),
                        tokenizer=TokenizerConfig(vocab_size=1000 if smoke else 16000 if gpu else 8000),
                        model=ModelConfig(max_positions=256))
        prepared = set_up_run(config, log=lambda *_: None)
        self.tokenizers, self.train_ids = prepared.tokenizers, prepared.train_ids
        self.vocab = self.tokenizers.src.vocab_size
        test = read_held_out(prepared.run, "test", config.data)
        self.sources = [s for s, _ in test][: 16 if smoke else 256]
        if smoke:
            self.model_cfg = ModelConfig(d_model=64, n_heads=4, encoder_layers=2, decoder_layers=2, d_ff=256,
                                         dropout=0.0)
        elif gpu:
            self.model_cfg = ModelConfig(dropout=0.0)  # Transformer-base: d 512, 8 heads, 6+6 layers, FFN 2048
        else:
            self.model_cfg = ModelConfig(d_model=256, n_heads=4, encoder_layers=3, decoder_layers=3, d_ff=1024,
                                         dropout=0.0)
        self.device = device

    def token_batches(self, batch_tokens: int, count: int) -> list[Batch]:
        """Ours: length-bucketed, capped by tokens."""
        plan = epoch_batches(self.train_ids, batch_tokens, seed=1, epoch=0)
        return [collate(self.train_ids, plan[i]).to(self.device) for i in range(min(count, len(plan)))]

    def hf_batches(self, sentences: int, count: int) -> list[Batch]:
        """What a Hugging Face user gets by default: random order, fixed sentences, padded to the longest."""
        order = torch.randperm(len(self.train_ids), generator=torch.Generator().manual_seed(1))
        return [collate(self.train_ids, b).to(self.device) for b in order.split(sentences)[:count]]

    def decode_batches(self, batch_size: int) -> list[torch.Tensor]:
        encoded = [source_ids(ids,
                              self.model_cfg.max_positions) for ids in self.tokenizers.src.encode_batch(self.sources)]
        order = sorted(range(len(encoded)), key=lambda i: len(encoded[i]))
        return [pad_batch([encoded[i] for i in order[start : start + batch_size]], self.device)
                for start in range(0, len(order), batch_size)]

    def padding(self, batch_tokens: int) -> Padding:
        """Padding shares of our batches and of random ones with as many sentences."""
        ids = self.train_ids
        bucketed = list(token_batches(ids, batch_tokens, torch.Generator().manual_seed(0)))
        sentences = max(1, round(sum(len(b) for b in bucketed) / len(bucketed)))
        shuffled = list(torch.randperm(len(ids), generator=torch.Generator().manual_seed(0)).split(sentences))
        share = lambda batches: statistics.mean(padding_share(collate(ids, b)) for b in batches[:200])  # noqa: E731
        return Padding(share(shuffled), share(bucketed), sentences)
