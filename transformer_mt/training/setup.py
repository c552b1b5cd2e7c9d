"""Set up a run folder: its config, held-out splits, tokenizers and encoded training corpus.

A folder holding checkpoints is never overwritten (resume or rename instead); one whose corpus was
prepared from the same inputs is reused as it is; anything else is prepared anew, and a preparation
that fails or is interrupted leaves no run folder behind.
"""
from __future__ import annotations

import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

from ..config import Config, DataConfig, from_dict, load_config, save_config
from ..data import corpus
from ..data.corpus import Pair
from ..data.mixing import Mixture
from ..data.preparation import inputs_fingerprint, prepare_corpus
from ..data.store import EncodedCorpus, open_store, read_manifest
from ..data.tokenizer import TokenizerPair
from ..errors import StoppedByRank0, UserError
from ..model import checkpoint
from ..run_folder import RunPaths, read_lineage, write_lineage
from .distributed import Distributed
from .parent import Parent, Start, tokenizer_fit


@dataclass
class PreparedRun:
    run: RunPaths
    tokenizers: TokenizerPair
    train_ids: EncodedCorpus  # memory-mapped from the run folder
    valid: list[Pair]
    corpus_key: str  # the store's manifest key, recorded in checkpoints
    resumed: bool
    mixture: Mixture | None = None  # data.corpora: how epochs draw from the store's corpora
    valid_by_corpus: dict[str, list[Pair]] = field(default_factory=dict)  # data.corpora: each one's split


def set_up_run(config: Config, is_main: bool = True, log=print, start: Start | None = None) -> PreparedRun:
    """Rank 0 (`is_main`) sets the folder up; other ranks open what it wrote. A run that `start`s from
    a parent (fine-tuning) reads its corpus with the parent's tokenizers, copied into its folder."""
    run = RunPaths(Path(config.run.root) / config.run.name)
    if not is_main:
        return _open(run, config)
    if run.has_checkpoints():
        if not config.train.resume:
            raise UserError(
                f"{run.root} already holds checkpoints: continue it with train.resume=true "
                f"(ARGS=\"train.resume=true\") or pick another run.name (ARGS=\"run.name=NEW\")"
            )
        _check_same_model(run, config)
        if read_manifest(run.store) is None:  # deleted, or cut short: encode again with the run's tokenizers
            log(f"the prepared corpus in {run.store} is missing or incomplete: preparing it again")
            tokenizers = TokenizerPair.load(run.src_tokenizer, run.tgt_tokenizer, config.tokenizer.joint)
            _cleaning_up_on_failure(run.store, lambda: prepare_corpus(config, run, tokenizers, log))
        log(f"resuming {run.root}")
    else:
        if config.train.resume:
            log(f"nothing to resume in {run.root}: starting a new run")
        manifest = read_manifest(run.store)
        if manifest is not None and manifest.inputs == inputs_fingerprint(config) and _same_start(run, start):
            log(f"reusing the corpus prepared in {run.data} ({manifest.pairs} training pairs)")
            save_config(config, run.config)
            if start is not None:  # the same parent's tokenizers; perhaps another of its checkpoints
                write_lineage(run, start.lineage)
        else:
            _prepare_new(run, config, log, start)
    prepared = _open(run, config)
    if prepared.mixture is not None:
        log(prepared.mixture.summary())
    return prepared


def set_up_run_on_every_rank(config: Config, rank: int, world_size: int, poll_seconds: float = 0.5,
                             start: Start | None = None) -> PreparedRun:
    """Rank 0 prepares the run folder while the other ranks wait, then they open what it wrote.

    They wait by polling a key on the process group's store, not in a collective: preparing a large
    corpus can take longer than any collective's timeout (NCCL's is 10 minutes). When rank 0 stops on
    bad input (a trained run in the way, a missing corpus), the others learn it from the key and raise
    StoppedByRank0 instead of dying in a barrier: the error is printed once."""
    if world_size == 1:
        return set_up_run(config, start=start)
    store = Distributed.store()
    key = f"transformer_mt/prepared/{os.environ.get('TORCHELASTIC_RESTART_COUNT', '0')}"
    if rank == 0:
        outcome = "failed"
        try:
            prepared = set_up_run(config, start=start)
            outcome = "ready"
        finally:
            store.set(key, outcome)
        return prepared
    while not store.check([key]):
        time.sleep(poll_seconds)
    if store.get(key) != b"ready":
        raise StoppedByRank0()
    return set_up_run(config, is_main=False, log=lambda *_: None)


def _prepare_new(run: RunPaths, config: Config, log, start: Start | None) -> None:
    for source in config.data.mixture():  # a missing corpus file is an error before any folder is made
        if source.source != "hub":
            corpus.corpus_files(config.data.reading(source))
    log(f"preparing the corpus ({_describe(config)})")
    if run.root.exists():  # a folder from a run that never reached its first checkpoint
        shutil.rmtree(run.root)
    try:
        run.data.mkdir(parents=True)
    except OSError as err:
        raise UserError(f"cannot create the run folder {run.root}: {err.strerror}") from None

    def build() -> None:
        save_config(config, run.config)
        if start is None:
            prepare_corpus(config, run, None, log)
            return
        start.parent.copy_tokenizers(run)
        write_lineage(run, start.lineage)
        tokenizers = TokenizerPair.load(run.src_tokenizer, run.tgt_tokenizer, config.tokenizer.joint)
        prepare_corpus(config, run, tokenizers, log)
        log(tokenizer_fit(start.parent, run, tokenizers, config.data))

    _cleaning_up_on_failure(run.root, build)


def _same_start(run: RunPaths, start: Start | None) -> bool:
    """Whether a prepared folder was prepared for this start: from scratch, or with this parent's tokenizers."""
    if start is None:
        return read_lineage(run) is None
    return read_lineage(run) is not None and start.parent.same_tokenizers(run)


def load_start(parent: Parent) -> Start:
    """The parent's checkpoint, read into CPU memory and checked against its run folder: a damaged
    checkpoint, or one holding another model than its folder's config and tokenizers describe, is one
    line before anything is written."""
    state = checkpoint.load(parent.checkpoint)
    saved = from_dict(state["config"], origin=str(parent.checkpoint))
    tokenizers = TokenizerPair.load(parent.run.src_tokenizer, parent.run.tgt_tokenizer, state["vocab"]["joint"])
    sizes = (tokenizers.src.vocab_size, tokenizers.tgt.vocab_size, parent.config.tokenizer.joint)
    if saved.model != parent.config.model or sizes != (state["vocab"]["src"], state["vocab"]["tgt"],
                                                         state["vocab"]["joint"]):
        raise UserError(f"train.init_from: {parent.checkpoint} holds another model or vocabulary than its run "
                        f"folder {parent.run.root} describes")
    return Start(parent, state, parent.lineage(state["state"]["step"]))


def _cleaning_up_on_failure(folder: Path, work) -> None:
    """Run `work`; if it fails or is interrupted, remove `folder`, so that nothing half-made remains."""
    try:
        work()
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise


def _open(run: RunPaths, config: Config) -> PreparedRun:
    manifest = read_manifest(run.store)
    if manifest is None:
        raise UserError(f"the prepared corpus in {run.store} is missing or incomplete")
    tokenizers = TokenizerPair.load(run.src_tokenizer, run.tgt_tokenizer, config.tokenizer.joint)
    valid = corpus.read_held_out(run, "valid", config.data)
    prepared = PreparedRun(run, tokenizers, open_store(run.store, manifest), valid, manifest.key,
                           run.has_checkpoints())
    if config.data.mixed:
        corpora = config.data.mixture()
        sizes = manifest.corpus_sizes()
        if list(sizes) != [c.name for c in corpora]:
            raise UserError(f"the prepared corpus in {run.store} holds other corpora than data.corpora names")
        prepared.mixture = Mixture(tuple(sizes.values()), tuple(c.weight for c in corpora), tuple(sizes))
        prepared.valid_by_corpus = {c.name: corpus.read_held_out(run, "valid", config.data, c.name) for c in corpora}
    return prepared


def _check_same_model(run: RunPaths, config: Config) -> None:
    saved = load_config(run.config)
    for section in ("data", "tokenizer", "model"):
        if getattr(saved, section) != getattr(config, section):
            raise UserError(f"cannot resume {run.root}: its {section} settings differ from this config's")
    if saved.train.optimizer != config.train.optimizer:  # its saved state would quietly keep the old rule
        raise UserError(f"cannot resume {run.root}: it was trained with train.optimizer={saved.train.optimizer}, "
                        f"this config says {config.train.optimizer}")


def _describe(config: Config) -> str:
    return "; ".join(_describe_one(config.data.reading(source)) + (f" × {source.weight:g}" if config.data.mixed else "")
                     for source in config.data.mixture())


def _describe_one(data: DataConfig) -> str:
    if data.source == "hub":
        return f"{data.dataset}, {data.dataset_config}"
    if data.source == "sample":
        return "embedded Tatoeba sample"
    return ", ".join(data.files)
