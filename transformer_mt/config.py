"""Typed configuration: nested dataclasses built once from YAML (plus `key.sub=value` overrides).

Unknown keys and wrong types are errors that name the key and where it came from, so a typo never
silently trains the wrong model.
"""
from __future__ import annotations

import dataclasses
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Union

import yaml

from .errors import UserError


class ConfigError(UserError):
    """A config that cannot be used; `key` and `problem` are set when one value is at fault, so that a
    caller that took the value from elsewhere (a command-line flag) can name that instead."""

    def __init__(self, message: str, key: str | None = None, problem: str | None = None):
        super().__init__(message)
        self.key, self.problem = key, problem

    @classmethod
    def of_value(cls, key: str, problem: str) -> "ConfigError":
        return cls(f"{key}: {problem}", key, problem)


# The byte-level BPE starts from 4 special tokens and 256 byte symbols (tokenizer.py): a smaller
# vocab_size would silently be this one.
MIN_VOCAB = 260
# PyTorch's scaled-dot-product attention kernels, by the names train.sdpa_backends takes.
SDPA_BACKENDS = ("flash", "efficient", "cudnn", "math")


@dataclass
class RunConfig:
    name: str = ""  # empty: the config file's stem
    root: str = "runs"


_SOURCE_DEFAULTS = {"source": "hub", "dataset": "Helsinki-NLP/opus_books", "dataset_config": "en-fr",
                    "revision": None, "files": []}
_NAME = re.compile(r"[A-Za-z0-9_-]{1,40}")
_LIST_ITEM = re.compile(r"[a-z_.]*\[\]\.")


@dataclass
class CorpusConfig:
    """One corpus of data.corpora: where it is read from (the keys of a single-corpus data section),
    its sampling weight and the name its held-out splits and validation scores go by."""
    source: str = "files"  # hub | files | sample
    dataset: str = _SOURCE_DEFAULTS["dataset"]
    dataset_config: str = _SOURCE_DEFAULTS["dataset_config"]
    revision: str | None = None
    files: list[str] = field(default_factory=list)
    weight: float = 1.0  # share of each epoch's pairs: weight / the sum of the weights
    name: str = ""  # empty: from the source (sample, the dataset's or the first file's name)

    def __post_init__(self) -> None:
        _choice("data.corpora[].source", self.source, ("hub", "files", "sample"))
        if self.source == "files" and not self.files:
            raise ConfigError("data.corpora[].files: must list at least one file when its source is 'files'")
        _positive("data.corpora[]", self, "weight")
        if self.weight == float("inf"):
            raise ConfigError.of_value("data.corpora[].weight", "must be finite")
        if self.name and not _NAME.fullmatch(self.name):
            raise ConfigError.of_value("data.corpora[].name", f"{self.name!r}: use 1-40 letters, digits, _ or -")

    def default_name(self) -> str:
        if self.name:
            return self.name
        if self.source == "sample":
            return "sample"
        stem = Path(self.dataset).name if self.source == "hub" else Path(self.files[0]).name.split(".")[0]
        return re.sub(r"[^A-Za-z0-9_-]", "-", stem)[:40] or "corpus"


@dataclass
class DataConfig:
    source: str = "hub"  # hub | files | sample
    dataset: str = "Helsinki-NLP/opus_books"  # hub name, or a local dataset folder
    dataset_config: str = "en-fr"
    revision: str | None = None
    files: list[str] = field(default_factory=list)  # .jsonl[.gz] / .tsv / two aligned text files
    # Several corpora, each with a weight (docs/data-at-scale.md, "Several corpora"): each entry takes the
    # five keys above; the other data.* settings apply to every corpus. Empty: the one corpus above.
    corpora: list[CorpusConfig] = field(default_factory=list)
    src_lang: str = "en"
    tgt_lang: str = "fr"
    max_words: int = 128  # drop pairs with a side longer than this (whitespace words)
    max_length_ratio: float = 3.0  # drop pairs whose character lengths differ more than this
    max_pairs: int | None = None  # cap on the training pairs (a random subset, whole source groups)
    valid_size: int = 1000  # distinct source sentences per held-out split
    test_size: int = 1000
    seed: int = 1234  # the split and the subset: a seeded hash of each source sentence
    skip_bad_lines: bool = False  # skip (and count) unreadable corpus lines instead of stopping at the first

    def __post_init__(self) -> None:
        _choice("data.source", self.source, ("hub", "files", "sample"))
        if self.corpora:
            for key, default in _SOURCE_DEFAULTS.items():
                if getattr(self, key) != default:
                    raise ConfigError.of_value(f"data.{key}", "with data.corpora, say it inside each corpus entry")
            names = [c.default_name() for c in self.corpora]
            if len(set(names)) < len(names):
                raise ConfigError.of_value("data.corpora", f"two corpora share a name ({', '.join(names)}): "
                                                           "give each a distinct name")
        elif self.source == "files" and not self.files:
            raise ConfigError("data.files: must list at least one file when data.source is 'files'")
        _at_least("data", self, 1, "max_words", "max_pairs", "valid_size", "test_size")
        _at_least("data", self, 1.0, "max_length_ratio")

    @property
    def mixed(self) -> bool:
        """Whether the run reads data.corpora (per-corpus splits and scores) rather than one corpus."""
        return bool(self.corpora)

    def mixture(self) -> list[CorpusConfig]:
        """The run's corpora, named, in order: data.corpora, or the one corpus the data section names."""
        if not self.corpora:
            one = CorpusConfig(self.source, self.dataset, self.dataset_config, self.revision, list(self.files))
            return [dataclasses.replace(one, name=one.default_name())]
        return [dataclasses.replace(c, name=c.default_name()) for c in self.corpora]

    def reading(self, corpus: CorpusConfig) -> "DataConfig":
        """This data section as if `corpus` were its only corpus: what the readers of one corpus take."""
        return dataclasses.replace(self, source=corpus.source, dataset=corpus.dataset,
                                   dataset_config=corpus.dataset_config, revision=corpus.revision,
                                   files=list(corpus.files), corpora=[])


@dataclass
class TokenizerConfig:
    vocab_size: int = 8000
    joint: bool = True  # one vocabulary for both languages (enables tying all embeddings)
    min_frequency: int = 2
    train_sentences: int = 2_000_000  # BPE learns from a seeded sample of at most this many training sentences

    def __post_init__(self) -> None:
        _at_least("tokenizer", self, MIN_VOCAB, "vocab_size")
        _at_least("tokenizer", self, 0, "min_frequency")
        _at_least("tokenizer", self, 1, "train_sentences")


@dataclass
class ModelConfig:
    d_model: int = 512
    n_heads: int = 8
    encoder_layers: int = 6
    decoder_layers: int = 6
    d_ff: int = 2048
    dropout: float = 0.1
    attention_dropout: float = 0.0
    norm_first: bool = True  # pre-norm (stable without long warm-up); False = the paper's post-norm
    tie_embeddings: bool = True
    max_positions: int = 1024

    def __post_init__(self) -> None:
        _at_least("model", self, 1, "d_model", "n_heads", "encoder_layers", "decoder_layers", "d_ff")
        _at_least("model", self, 2, "max_positions")  # a token and <eos>
        _fraction("model", self, "dropout", "attention_dropout")
        if self.d_model % 2:
            raise ConfigError(f"model.d_model ({self.d_model}) must be even (sine and cosine positions)")
        if self.d_model % self.n_heads:
            raise ConfigError(f"model.d_model ({self.d_model}) must be divisible by model.n_heads ({self.n_heads})")


@dataclass
class TrainConfig:
    device: str = "auto"  # auto | cpu | cuda
    precision: str = "auto"  # auto | fp32 | bf16 | fp16
    tf32: bool = True  # fp32 on CUDA: matmuls on TF32 tensor cores (10-bit mantissa inputs, fp32 sums)
    seed: int = 1234
    batch_tokens: int = 8192  # padded tokens per batch side (src or tgt), per rank
    # Rounding of batch shapes, so that kernels built per shape are built less often (batching.Shapes):
    length_multiple: int = 1  # batch lengths padded up to a multiple
    row_multiple: int | None = None  # the encoder's rows padded up to a multiple; None: auto (device.row_multiple)
    accumulate: int = 1
    lr: float = 7e-4  # peak learning rate, reached after the warm-up
    warmup_steps: int = 4000
    adam_betas: list[float] = field(default_factory=lambda: [0.9, 0.98])
    adam_eps: float = 1e-9
    optimizer: str = "adam"  # adam (weight decay added to the gradient, L2) | adamw (decay applied to the weights)
    weight_decay: float = 0.0
    clip_norm: float = 1.0  # 0 = no clipping (the gradient norm is still logged)
    label_smoothing: float = 0.1
    max_steps: int | None = None
    max_epochs: int | None = 100
    max_minutes: float | None = None  # wall-clock budget: save and stop cleanly when spent
    log_every: int = 50
    valid_every: int = 1000  # steps between validations (also at the end)
    valid_max_sentences: int = 500
    checkpoint_every: int = 1000
    keep_last: int = 3
    patience: int | None = None  # stop after this many validations without a better BLEU
    nonfinite: str = "stop"  # stop | skip
    compile: bool = False
    resume: bool = False
    num_threads: int | None = None
    # CUDA only: the fused attention kernels PyTorch may choose from (flash, efficient, cudnn, math);
    # null lets it dispatch as it would (docs/gpu-check.md). CPU attention always runs the math kernel.
    sdpa_backends: list[str] | None = None
    collective_timeout_s: float | None = None  # DDP: a collective waiting longer fails; null: PyTorch's default
    # Fine-tuning (docs/finetuning.md): a run folder (its best.pt, else last.pt) or a checkpoint file whose
    # weights, model settings and tokenizers this run starts from; null: a model trained from scratch.
    init_from: str | None = None
    init_keep: list[str] = field(default_factory=list)  # of the parent's: optimizer, schedule, best

    def __post_init__(self) -> None:
        _choice("train.device", self.device, ("auto", "cpu", "cuda"))
        for backend in self.sdpa_backends or []:
            _choice("train.sdpa_backends", backend, SDPA_BACKENDS)
        for kept in self.init_keep:
            _choice("train.init_keep", kept, ("optimizer", "schedule", "best"))
        if self.init_keep and not self.init_from:
            raise ConfigError.of_value("train.init_keep", "keeps parts of a parent: set train.init_from too")
        if self.sdpa_backends is not None and not self.sdpa_backends:
            raise ConfigError.of_value("train.sdpa_backends", "name at least one kernel, or null for PyTorch's choice")
        _choice("train.precision", self.precision, ("auto", "fp32", "bf16", "fp16"))
        _choice("train.nonfinite", self.nonfinite, ("stop", "skip"))
        _choice("train.optimizer", self.optimizer, ("adam", "adamw"))
        if len(self.adam_betas) != 2:
            raise ConfigError("train.adam_betas: expected two numbers")
        _at_least("train", self, 1, "batch_tokens", "length_multiple", "row_multiple", "accumulate", "warmup_steps",
                  "max_steps", "max_epochs",
                  "log_every", "valid_every", "valid_max_sentences", "checkpoint_every", "keep_last", "patience",
                  "num_threads")
        _at_least("train", self, 0.0, "weight_decay", "clip_norm")
        # adam_eps = 0 would divide 0 by 0 for any parameter whose gradient is zero (the <pad> embedding).
        _positive("train", self, "lr", "adam_eps", "max_minutes", "collective_timeout_s")
        _fraction("train", self, "label_smoothing")
        if not all(0.0 <= beta < 1.0 for beta in self.adam_betas):
            raise ConfigError(f"train.adam_betas: each must be in [0, 1), got {self.adam_betas}")


@dataclass
class DecodeConfig:
    beam_size: int = 4
    length_penalty: str = "gnmt"  # gnmt: ((5+len)/6)^alpha | power: len^alpha
    alpha: float = 0.6
    max_len_a: float = 1.5
    max_len_b: int = 10
    min_len: int = 0
    batch_size: int = 64  # sentences per decoding batch

    def __post_init__(self) -> None:
        _choice("decode.length_penalty", self.length_penalty, ("gnmt", "power"))
        _at_least("decode", self, 1, "beam_size", "batch_size")
        _at_least("decode", self, 0, "max_len_a", "max_len_b", "min_len")


@dataclass
class Config:
    run: RunConfig = field(default_factory=RunConfig)
    data: DataConfig = field(default_factory=DataConfig)
    tokenizer: TokenizerConfig = field(default_factory=TokenizerConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    decode: DecodeConfig = field(default_factory=DecodeConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _choice(key: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ConfigError.of_value(key, f"{value!r} is not one of {', '.join(allowed)}")


def _at_least(section: str, obj: Any, minimum: float, *names: str) -> None:
    """Range checks, so a bad number is one clear line here and not a traceback deep in training.
    None (an unset optional value) passes."""
    for name in names:
        value = getattr(obj, name)
        if value is not None and not value >= minimum:  # `not >=` also catches NaN
            raise ConfigError.of_value(f"{section}.{name}", f"must be at least {minimum}, got {value}")


def _positive(section: str, obj: Any, *names: str) -> None:
    for name in names:
        value = getattr(obj, name)
        if value is not None and not value > 0:
            raise ConfigError.of_value(f"{section}.{name}", f"must be greater than 0, got {value}")


def _fraction(section: str, obj: Any, *names: str) -> None:
    for name in names:
        value = getattr(obj, name)
        if not 0.0 <= value < 1.0:
            raise ConfigError.of_value(f"{section}.{name}", f"must be in [0, 1), got {value}")


def load_config(path: str | Path, overrides: list[str] | None = None) -> Config:
    """Read a YAML config, apply `key.sub=value` overrides and build the typed Config."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark else ""
        raise ConfigError(f"{path}: not valid YAML{where}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping of sections at the top level")
    config = from_dict(raw, origin=str(path))
    config = apply_overrides(config, overrides or [])
    if not config.run.name:
        config.run.name = path.stem
    return config


def given_keys(path: str | Path, overrides: list[str] | None = None) -> set[str]:
    """The dotted keys a config file and its overrides set (not left to their defaults); read after
    load_config has checked them."""
    raw = yaml.safe_load(Path(path).read_text()) or {}
    keys = {f"{section}.{key}" for section, values in raw.items() if isinstance(values, dict) for key in values}
    return keys | {item.partition("=")[0].strip() for item in overrides or []}


def apply_overrides(config: Config, overrides: list[str]) -> Config:
    raw = config.to_dict()
    for item in overrides:
        key, sep, text = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"override {item!r}: expected key.sub=value")
        *parents, leaf = key.strip().split(".")
        node = raw
        for part in parents:
            if not isinstance(node.get(part), dict):
                raise ConfigError(f"override {item!r}: unknown key {key!r}")
            node = node[part]
        if leaf not in node:
            raise ConfigError(f"override {item!r}: unknown key {key!r}")
        try:
            node[leaf] = yaml.safe_load(text) if text.strip() else None
        except yaml.YAMLError:
            node[leaf] = text
    return from_dict(raw, origin="command line")


def from_dict(raw: dict[str, Any], origin: str = "config") -> Config:
    return _build(Config, raw, prefix="", origin=origin)


def _build(cls: type, raw: Any, prefix: str, origin: str) -> Any:
    if not isinstance(raw, dict):
        raise ConfigError(f"{origin}: {prefix.rstrip('.') or 'config'} must be a mapping")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    for key in raw:
        if key not in names:
            raise ConfigError(f"{origin}: unknown key '{prefix}{key}'")
    values = {}
    for key, value in raw.items():
        kind = hints[key]
        if dataclasses.is_dataclass(kind):
            values[key] = _build(kind, value, f"{prefix}{key}.", origin)
        else:
            values[key] = _coerce(value, kind, f"{prefix}{key}", origin)
    try:
        return cls(**values)
    except ConfigError as err:
        # An item of a list of sections (data.corpora[]) names itself without its index: add it.
        raise ConfigError(f"{origin}: {_LIST_ITEM.sub(prefix, str(err))}") from None


def _coerce(value: Any, kind: Any, key: str, origin: str) -> Any:
    """Check `value` against the annotation `kind`; ints are accepted where floats are expected."""
    origin_type = typing.get_origin(kind)
    if origin_type in (Union, types.UnionType):
        options = typing.get_args(kind)
        if value is None and type(None) in options:
            return None
        for option in options:
            if option is type(None):
                continue
            try:
                return _coerce(value, option, key, origin)
            except ConfigError:
                pass
        raise _type_error(value, kind, key, origin)
    if origin_type is list:
        (item_kind,) = typing.get_args(kind)
        if not isinstance(value, list):
            raise _type_error(value, kind, key, origin)
        return [_coerce(v, item_kind, f"{key}[{i}]", origin) for i, v in enumerate(value)]
    if dataclasses.is_dataclass(kind):
        return _build(kind, value, f"{key}.", origin)
    if kind is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if kind is int and isinstance(value, int) and not isinstance(value, bool):
        return value
    if kind in (str, bool) and isinstance(value, kind):
        return value
    raise _type_error(value, kind, key, origin)


def _type_error(value: Any, kind: Any, key: str, origin: str) -> ConfigError:
    name = getattr(kind, "__name__", None) or str(kind).replace("typing.", "")
    return ConfigError(f"{origin}: {key} must be {name}, got {value!r}")


def save_config(config: Config, path: Path) -> None:
    path.write_text(yaml.safe_dump(config.to_dict(), sort_keys=False))
