"""Byte-level BPE tokenizers (HF `tokenizers`) with fixed special ids and exact detokenisation."""
from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from tokenizers import Regex, decoders, normalizers, pre_tokenizers
from tokenizers import Tokenizer as HFTokenizer
from tokenizers.models import BPE
from tokenizers.trainers import BpeTrainer

from ..config import TokenizerConfig
from ..errors import UserError

PAD, BOS, EOS, UNK = 0, 1, 2, 3
SPECIALS = ["<pad>", "<bos>", "<eos>", "<unk>"]  # ids 0..3, in this order


class Tokenizer:
    """One language side. Byte-level BPE never needs <unk>, so decode(encode(s)) == normalise(s)."""

    def __init__(self, hf: HFTokenizer):
        for index, token in enumerate(SPECIALS):
            if hf.token_to_id(token) != index:
                raise UserError(f"tokenizer has {token} at id {hf.token_to_id(token)}, expected {index}")
        hf.encode_special_tokens = True  # "<eos>" typed in a sentence is text, not the EOS token
        self.hf = hf

    @classmethod
    def train(cls, texts: Iterable[str], vocab_size: int, min_frequency: int = 2) -> "Tokenizer":
        hf = HFTokenizer(BPE(unk_token="<unk>"))
        # Same steps as data.normalise: NFKC folds the no-break/thin spaces, zero-width marks go.
        hf.normalizer = normalizers.Sequence([
            normalizers.NFKC(),
            normalizers.Replace(Regex("[\u200b\u200c\u200d\u2060\ufeff]"), ""),
            normalizers.Replace(Regex(r"\s+"), " "),
            normalizers.Strip(),
        ])
        hf.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=True)
        hf.decoder = decoders.ByteLevel()
        trainer = BpeTrainer(
            vocab_size=vocab_size,
            min_frequency=min_frequency,
            special_tokens=SPECIALS,
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
            show_progress=False,
        )
        hf.train_from_iterator(_batches(texts), trainer=trainer)
        return cls(hf)

    @classmethod
    def load(cls, path: Path) -> "Tokenizer":
        if not path.is_file():
            raise UserError(f"tokenizer not found: {path}")
        return cls(HFTokenizer.from_file(str(path)))

    def save(self, path: Path) -> None:
        self.hf.save(str(path))

    @property
    def vocab_size(self) -> int:
        return self.hf.get_vocab_size()

    def encode(self, text: str) -> list[int]:
        return self.hf.encode(text).ids

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        """Ids of many texts at once, in parallel (Rust threads); without the character offsets that
        plain encode_batch also computes, where the tokenizers version has encode_batch_fast."""
        encode = getattr(self.hf, "encode_batch_fast", self.hf.encode_batch)
        return [enc.ids for enc in encode(texts)]

    def encode_with_offsets(self, texts: list[str]) -> list[tuple[list[int], list[tuple[int, int]]]]:
        """Ids of many texts at once, and the characters of the text each token stands for."""
        return [(enc.ids, [tuple(span) for span in enc.offsets]) for enc in self.hf.encode_batch(texts)]

    def decode(self, ids: Iterable[int]) -> str:
        return self.hf.decode(list(ids), skip_special_tokens=True).strip()

    def tokens(self) -> list[str]:
        """Token strings by id (what CTranslate2 and transformers' vocabularies hold)."""
        return [self.hf.id_to_token(i) for i in range(self.vocab_size)]


def token_budget(max_positions: int) -> int:
    """Tokens a sequence keeps within the model's `max_positions` positions: one position goes to the
    EOS a source or a training target ends with, or to the BOS a decoder's input starts with. Training
    data, decoding inputs, search lengths and the server's notes all cut by this."""
    return max_positions - 1


def source_ids(ids: list[int], max_positions: int) -> list[int]:
    """A sentence's token ids as the encoder reads them when decoding: cut to the token budget, then EOS."""
    return ids[: token_budget(max_positions)] + [EOS]


def _batches(texts: Iterable[str], size: int = 10000) -> Iterator[list[str]]:
    batch: list[str] = []
    for text in texts:
        batch.append(text)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


@dataclass
class TokenizerPair:
    src: Tokenizer
    tgt: Tokenizer

    @property
    def joint(self) -> bool:
        return self.src is self.tgt

    @classmethod
    def train(cls, pairs: Iterable[tuple[str, str]], cfg: TokenizerConfig) -> "TokenizerPair":
        """Trained on (a sample of) the training split only, so held-out text never shapes the vocabulary.
        `pairs` is iterated once per tokenizer (twice for separate vocabularies): a list, or an object
        that streams the same pairs on every iteration."""
        if cfg.joint:
            joint = Tokenizer.train((t for pair in pairs for t in pair), cfg.vocab_size, cfg.min_frequency)
            return cls(joint, joint)
        src = Tokenizer.train((s for s, _ in pairs), cfg.vocab_size, cfg.min_frequency)
        tgt = Tokenizer.train((t for _, t in pairs), cfg.vocab_size, cfg.min_frequency)
        return cls(src, tgt)

    def save(self, src_path: Path, tgt_path: Path) -> None:
        self.src.save(src_path)
        self.tgt.save(tgt_path)

    @classmethod
    def load(cls, src_path: Path, tgt_path: Path, joint: bool) -> "TokenizerPair":
        src = Tokenizer.load(src_path)
        return cls(src, src if joint else Tokenizer.load(tgt_path))
