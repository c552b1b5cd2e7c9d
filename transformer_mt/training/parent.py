"""The run a fine-tuning starts from (train.init_from): where it is, what of its config the new run
must take over, and the lineage the new run records. No PyTorch here, so that a bad parent is
answered before it loads; the weights themselves are read by the trainer (docs/finetuning.md)."""
from __future__ import annotations

import dataclasses
import hashlib
import shutil
from dataclasses import dataclass
from pathlib import Path

from ..config import Config, ConfigError, DataConfig, load_config
from ..data.corpus import read_held_out
from ..data.tokenizer import Tokenizer, TokenizerPair
from ..errors import UserError
from ..run_folder import RunPaths, open_run, read_lineage

# Tokenizer settings that decide the vocabulary a parent's model was trained on.
VOCABULARY_KEYS = ("vocab_size", "joint")
FIT_WARNING = 1.25  # tokens per word on the new corpus over the parent's own: above it, say it fits badly


@dataclass(frozen=True)
class Parent:
    run: RunPaths
    checkpoint: Path
    config: Config  # the parent's, as its run folder records it

    def lineage(self, step: int) -> dict:
        """What the child records: the parent's folder and checkpoint (with its sha256 and step), and
        the parent's own lineage, if it was fine-tuned from another run."""
        return {"run": str(self.run.root.resolve()), "checkpoint": str(self.checkpoint.resolve()),
                "sha256": file_sha256(self.checkpoint), "step": step, "parent": read_lineage(self.run)}

    def copy_tokenizers(self, run: RunPaths) -> None:
        """The parent's tokenizer files, byte for byte: the child reads text exactly as the parent did."""
        shutil.copyfile(self.run.src_tokenizer, run.src_tokenizer)
        shutil.copyfile(self.run.tgt_tokenizer, run.tgt_tokenizer)

    def same_tokenizers(self, run: RunPaths) -> bool:
        return all(mine.is_file() and mine.read_bytes() == theirs.read_bytes()
                   for mine, theirs in ((run.src_tokenizer, self.run.src_tokenizer),
                                        (run.tgt_tokenizer, self.run.tgt_tokenizer)))


def find_parent(init_from: str) -> Parent:
    """train.init_from: a run folder (its best.pt, else last.pt) or a checkpoint file in a run folder's
    checkpoints/. Checked before anything loads or is written."""
    path = Path(init_from)
    if path.is_dir():
        try:
            run = open_run(path)
            checkpoint = run.default_checkpoint()
        except UserError as err:
            raise UserError(f"train.init_from: {err}") from None
    elif path.is_file():
        try:
            run = open_run(path.resolve().parent.parent)
        except UserError:
            raise UserError(f"train.init_from: {path} is not in a run folder's checkpoints/ (its tokenizers "
                            f"and config are needed)") from None
        checkpoint = path
    else:
        raise UserError(f"train.init_from: {path} is neither a run folder nor a checkpoint file")
    for tokenizer in (run.src_tokenizer, run.tgt_tokenizer):
        if not tokenizer.is_file():
            raise UserError(f"train.init_from: {run.root} has no {tokenizer.name}")
    try:
        config = load_config(run.config)
    except ConfigError as err:
        raise UserError(f"train.init_from: {run.config} cannot be read ({err})") from None
    return Parent(run, checkpoint, config)


@dataclass(frozen=True)
class Start:
    """Where a new run starts: the parent, its checkpoint as loaded (weights, optimiser, schedule and
    counters, in CPU memory) and the lineage the run records."""
    parent: Parent
    state: dict
    lineage: dict


def adopt(config: Config, given: set[str]) -> tuple[Config, Parent | None]:
    """`config` with the model and tokenizer sections of the run it fine-tunes, and that parent (None
    when the run resumes: then its own folder already says what it is). A setting the user gave
    (`given`, dotted keys) that contradicts them is refused, naming the key."""
    run = RunPaths(Path(config.run.root) / config.run.name)
    if config.train.resume and run.has_checkpoints():
        return _take_over(config, load_config(run.config), str(run.root), given), None
    parent = find_parent(config.train.init_from)
    return _take_over(config, parent.config, f"the parent {parent.run.root}", given), parent


def _take_over(config: Config, source: Config, name: str, given: set[str]) -> Config:
    for section, keys in (("model", [f.name for f in dataclasses.fields(source.model)]),
                          ("tokenizer", VOCABULARY_KEYS)):
        for key in keys:
            mine, theirs = getattr(getattr(config, section), key), getattr(getattr(source, section), key)
            if f"{section}.{key}" in given and mine != theirs:
                raise UserError(f"{section}.{key} is {mine!r} but {name} was trained with {theirs!r}: a "
                                f"fine-tuned model keeps its parent's (leave {section}.{key} out)")
    return dataclasses.replace(config, model=source.model, tokenizer=source.tokenizer)


def tokenizer_fit(parent: Parent, run: RunPaths, tokenizers: TokenizerPair, data: DataConfig) -> str:
    """How finely the parent's tokenizers cut this corpus (each of data.corpora) against the parent's own,
    in tokens per word on each side's validation split, with a warning when they cut one much finer (an
    ill-fitting vocabulary: longer sequences, rarer pieces, a slower and weaker adaptation)."""
    theirs = read_held_out(parent.run, "valid", parent.config.data)
    corpora = [c.name for c in data.mixture()] if data.mixed else [None]
    lines, worst = [], 1.0
    for corpus in corpora:
        mine, parts = read_held_out(run, "valid", data, corpus), []
        for side, tokenizer, lang in ((0, tokenizers.src, data.src_lang), (1, tokenizers.tgt, data.tgt_lang)):
            here = tokens_per_word(tokenizer, [pair[side] for pair in mine])
            there = tokens_per_word(tokenizer, [pair[side] for pair in theirs]) if theirs else None
            parts.append(f"{lang} {here:.2f}" + (f" (parent's corpus {there:.2f})" if there else ""))
            worst = max(worst, here / there if there else 1.0)
        lines.append((f"corpus {corpus}: " if corpus else "") + ", ".join(parts))
    note = "the parent's tokenizers on this corpus: tokens per word " + "; ".join(lines)
    if worst > FIT_WARNING:
        note += (f"\nwarning: they cut this corpus {worst - 1:.0%} finer than the parent's own: expect a slower, "
                 f"weaker adaptation (or train from scratch, with a BPE of its own)")
    return note


def tokens_per_word(tokenizer: Tokenizer, texts: list[str]) -> float:
    words = sum(len(text.split()) for text in texts)
    return sum(len(ids) for ids in tokenizer.encode_batch(texts)) / max(1, words)


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
