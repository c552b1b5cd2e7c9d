"""Set up a run folder: split the corpus, train the tokenizers, encode the training data.

Nothing is written until the corpus has loaded, so a failed download never leaves a folder that
looks like a run; a folder holding checkpoints is never overwritten (resume or rename instead).
"""
from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import torch.distributed

from . import data
from .batching import EncodedCorpus, encode_cached
from .config import Config, from_dict, save_config
from .data import Splits
from .errors import StoppedByRank0, UserError
from .run import RunPaths
from .tokenizer import TokenizerPair


@dataclass
class Prepared:
    run: RunPaths
    splits: Splits
    tokenizers: TokenizerPair
    train_ids: EncodedCorpus
    resumed: bool


def prepare(config: Config, is_main: bool = True, log=print) -> Prepared:
    """Rank 0 (`is_main`) sets the folder up; other ranks read what it wrote."""
    run = RunPaths(Path(config.run.root) / config.run.name)
    resumed = run.has_checkpoints()
    if not is_main:
        splits, tokenizers = _load_prepared(run, config)
    elif resumed:
        if not config.train.resume:
            raise UserError(
                f"{run.root} already holds checkpoints: continue it with train.resume=true "
                f"(ARGS=\"train.resume=true\") or pick another run.name (ARGS=\"run.name=NEW\")"
            )
        _check_same_model(run, config)
        splits, tokenizers = _load_prepared(run, config)
        log(f"resuming {run.root}")
    else:
        if config.train.resume:
            log(f"nothing to resume in {run.root}: starting a new run")
        splits, tokenizers = _prepare_new(run, config, log)
    train_ids = encode_cached(splits.train, tokenizers, config.model.max_positions, run.encoded_train)
    return Prepared(run, splits, tokenizers, train_ids, resumed)


def prepare_on_every_rank(config: Config, rank: int, world_size: int) -> Prepared:
    """Rank 0 writes the run folder, then the other ranks read it. When rank 0 stops on bad input
    (a trained run in the way, a missing corpus), the others learn it from rank 0 and raise
    StoppedByRank0 instead of dying in a barrier: the error is printed once."""
    error, prepared = None, None
    if rank == 0:
        try:
            prepared = prepare(config)
        except UserError as err:
            error = err
    if world_size > 1:
        failed = [error is not None]
        torch.distributed.broadcast_object_list(failed, src=0)
        if rank != 0:
            if failed[0]:
                raise StoppedByRank0()
            prepared = prepare(config, is_main=False, log=lambda *_: None)
    if error is not None:
        raise error
    return prepared


def _prepare_new(run: RunPaths, config: Config, log) -> tuple[Splits, TokenizerPair]:
    log(f"loading corpus ({_describe(config)})")
    splits = data.prepare(config.data)
    log(f"pairs: train {len(splits.train)}, valid {len(splits.valid)}, test {len(splits.test)}")
    tokenizers = TokenizerPair.train(splits.train, config.tokenizer)
    log(f"BPE vocabulary: {tokenizers.src.vocab_size}" + ("" if tokenizers.joint else f" / {tokenizers.tgt.vocab_size}"))
    if run.root.exists():  # a folder from a run that never reached its first checkpoint
        shutil.rmtree(run.root)
    try:
        run.data.mkdir(parents=True)
    except OSError as err:
        raise UserError(f"cannot create the run folder {run.root}: {err.strerror}") from None
    save_config(config, run.config)
    tokenizers.save(run.src_tokenizer, run.tgt_tokenizer)
    for name in ("train", "valid", "test"):
        data.write_split(getattr(splits, name), *run.split_files(name, config.data.src_lang, config.data.tgt_lang))
    return splits, tokenizers


def _load_prepared(run: RunPaths, config: Config) -> tuple[Splits, TokenizerPair]:
    langs = (config.data.src_lang, config.data.tgt_lang)
    splits = Splits(*(data.read_split(*run.split_files(name, *langs)) for name in ("train", "valid", "test")))
    return splits, TokenizerPair.load(run.src_tokenizer, run.tgt_tokenizer, config.tokenizer.joint)


def _check_same_model(run: RunPaths, config: Config) -> None:
    import yaml

    saved = from_dict(yaml.safe_load(run.config.read_text()), origin=str(run.config))
    for section in ("data", "tokenizer", "model"):
        if getattr(saved, section) != getattr(config, section):
            raise UserError(f"cannot resume {run.root}: its {section} settings differ from this config's")
    if saved.train.optimizer != config.train.optimizer:  # its saved state would quietly keep the old rule
        raise UserError(f"cannot resume {run.root}: it was trained with train.optimizer={saved.train.optimizer}, "
                        f"this config says {config.train.optimizer}")


def _describe(config: Config) -> str:
    if config.data.source == "hub":
        return f"{config.data.dataset}, {config.data.dataset_config}"
    if config.data.source == "sample":
        return "embedded Tatoeba sample"
    return ", ".join(config.data.files)
