"""Prepare a run's corpus in bounded memory, whatever its size.

Streaming passes, each in chunks of CHUNK pairs:
1. read, normalise and filter every pair; write the cleaned text and a seeded hash of each source to
   work files, keeping in memory only the held-out candidates (the smallest source hashes so far);
2. with data.max_pairs, find over the hash file where the training subset ends (splitting.Subset);
3. learn BPE from a seeded sample of at most tokenizer.train_sentences training sentences;
4. encode the training pairs into the memory-mapped store (store.py), whose manifest comes last.
The work files go once the store is complete. A preparation killed half-way leaves a store without a
manifest, which the next run prepares again.
"""
from __future__ import annotations

import hashlib
import json
import shutil
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass
from itertools import islice
from pathlib import Path

import numpy as np
from tqdm import tqdm

from ..config import Config, CorpusConfig, DataConfig
from ..run_folder import RunPaths
from . import corpus
from .corpus import BadLines, DataError, Pair
from .splitting import (
    TEST,
    VALID,
    Cuts,
    Selection,
    SmallestDistinct,
    Subset,
    count_selected,
    hash_file,
    source_hashes,
)
from .store import FORMAT, Manifest, StoreWriter, encode_texts, id_dtype
from .tokenizer import TokenizerPair, token_budget

CHUNK = 20_000
Log = Callable[[str], None]


def inputs_fingerprint(config: Config) -> str:
    """What a prepared store depends on: the data and tokenizer settings, the model's positions, the
    store's format, and the corpus files' identity (path, size, modification time; not their text,
    which would mean reading it all). Not the corpora's weights: they change what epochs draw from the
    store, not the store."""
    data = asdict(config.data)
    corpora = data.pop("corpora")
    if config.data.mixed:
        data["corpora"] = [{key: value for key, value in c.items() if key != "weight"} for c in corpora]
        identity = [_corpus_identity(config.data.reading(c)) for c in config.data.mixture()]
    else:
        identity = _corpus_identity(config.data)
    payload = {"format": FORMAT, "data": data, "tokenizer": asdict(config.tokenizer),
               "max_positions": config.model.max_positions, "corpus": identity}
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def _corpus_identity(cfg: DataConfig) -> list:
    if cfg.source == "hub":
        folder = Path(cfg.dataset)  # a local dataset folder, or a hub name
        files = sorted(p for p in folder.rglob("*") if p.is_file()) if folder.is_dir() else []
        return [cfg.dataset, cfg.dataset_config, cfg.revision, *map(_file_identity, files)]
    return [_file_identity(path) for path in corpus.corpus_files(cfg)]


def _file_identity(path: Path) -> list:
    stat = path.stat()
    return [str(path.resolve()), stat.st_size, stat.st_mtime_ns]


def prepare_corpus(config: Config, run: RunPaths, tokenizers: TokenizerPair | None, log: Log) -> Manifest:
    """Write the run's held-out splits, its tokenizers (trained here unless given) and its training
    store: with data.corpora, every corpus scanned and split on its own, then encoded one after the
    other into the one store, whose manifest records each corpus's share of it."""
    work = run.data / ".work"
    for folder in (run.store, work):
        shutil.rmtree(folder, ignore_errors=True)
    work.mkdir(parents=True)
    inputs = inputs_fingerprint(config)
    data = config.data
    parts = [ScannedCorpus.read(data, corpus_, work / str(i), log) for i, corpus_ in enumerate(data.mixture())]
    _write_held_out(run, data, parts)
    held_out = _held_out_hashes(parts, data.seed) if len(parts) > 1 else None
    for part in parts:
        part.select(data.max_pairs, held_out)
    report = {key: sum(part.report[key] for part in parts) for key in parts[0].report}
    log(f"pairs: train {report['train']}, valid {report['valid']}, test {report['test']}")
    if tokenizers is None:
        sample = BpeSample(parts, config.tokenizer.train_sentences, report["train"], data.seed,
                           config.tokenizer.joint)
        tokenizers = _learn_bpe(config, run, sample, log)
        report["bpe_sentences"] = sample.sentences
    started = time.monotonic()
    writer = _encode(parts, tokenizers, config.model.max_positions, run.store, report["train"])
    log(f"encoded {report['train']} training pairs in {time.monotonic() - started:.0f} s")
    key = hashlib.sha256((inputs + tokenizers.src.hf.to_str() + tokenizers.tgt.hf.to_str()).encode()).hexdigest()
    corpora = [{"name": part.name, **part.report} for part in parts] if data.mixed else []
    manifest = writer.finish(inputs, key, report, corpora)
    shutil.rmtree(work)
    return manifest


@dataclass
class ScannedCorpus:
    """One corpus of the run, scanned into its own work files: its held-out pairs, and which of its
    pairs train (`selection`, once every corpus is scanned)."""
    name: str
    work: Path
    scan: "_Scan"
    selection: Selection | None = None

    @classmethod
    def read(cls, data: DataConfig, corpus_: CorpusConfig, work: Path, log: Log) -> "ScannedCorpus":
        work.mkdir()
        name = corpus_.name if data.mixed else None
        labelled = (lambda text: log(f"corpus {name}: {text}")) if name else log
        return cls(corpus_.name, work, _scan(data.reading(corpus_), work, labelled, name))

    def select(self, max_pairs: int | None, held_out: np.ndarray | None) -> None:
        hashes = hash_file(self.work / "clean.hash")
        subset = Subset.find(hashes, self.scan.cuts.test_max, max_pairs) if max_pairs else None
        self.selection = Selection(self.scan.cuts, subset, held_out)
        self.scan.report["train"] = count_selected(hashes, self.selection)
        if self.scan.report["train"] == 0:
            raise DataError(f"corpus {self.name} has no training pairs left once every corpus's held-out "
                            f"sentences are taken out")

    @property
    def report(self) -> dict[str, int]:
        return self.scan.report

    def held_out(self, split: int) -> list[Pair]:
        return [pair for s, pair in self.scan.heldout if s == split]


def _write_held_out(run: RunPaths, data: DataConfig, parts: list[ScannedCorpus]) -> None:
    """Each split for the whole run (corpus after corpus) and, with data.corpora, for each corpus."""
    langs = (data.src_lang, data.tgt_lang)
    for split, name in ((VALID, "valid"), (TEST, "test")):
        corpus.write_split([pair for part in parts for pair in part.held_out(split)], *run.split_files(name, *langs))
        for part in parts if data.mixed else []:
            files = run.corpus_split_files(part.name, name, *langs)
            files[0].parent.mkdir(parents=True, exist_ok=True)
            corpus.write_split(part.held_out(split), *files)


def _held_out_hashes(parts: list[ScannedCorpus], seed: int) -> np.ndarray:
    sources = [src for part in parts for _, (src, _) in part.scan.heldout]
    return np.unique(source_hashes(sources, seed))


def _learn_bpe(config: Config, run: RunPaths, sample: "BpeSample", log: Log) -> TokenizerPair:
    started = time.monotonic()
    tokenizers = TokenizerPair.train(sample, config.tokenizer)
    tokenizers.save(run.src_tokenizer, run.tgt_tokenizer)
    log(f"BPE vocabulary: {tokenizers.src.vocab_size}" + ("" if tokenizers.joint else f" / {tokenizers.tgt.vocab_size}")
        + f", learnt from {sample.sentences} sentences in {time.monotonic() - started:.0f} s")
    return tokenizers


@dataclass
class _Scan:
    kept: int  # pairs left after cleaning
    heldout: list[tuple[int, Pair]]  # (VALID or TEST, pair), in hash order
    cuts: Cuts
    report: dict[str, int]


def _scan(cfg: DataConfig, work: Path, log: Log, name: str | None = None) -> _Scan:
    """Pass 1: the cleaned pairs and their source hashes into work files; the held-out pairs. (`name`:
    the corpus's, for errors, when the run reads several.)"""
    who = f"corpus {name}" if name else "the corpus"
    bad, smallest = BadLines(cfg.skip_bad_lines), SmallestDistinct(cfg.valid_size + cfg.test_size)
    candidates: list[tuple[int, int, Pair]] = []  # (hash, position, pair) of pairs that may be held out
    read = kept = 0
    started = time.monotonic()
    with open(work / "clean.src", "w", encoding="utf-8") as src_out, \
            open(work / "clean.tgt", "w", encoding="utf-8") as tgt_out, open(work / "clean.hash", "wb") as hash_out, \
            _progress("reading", None) as progress:
        for chunk in batched(corpus.iter_pairs(cfg, bad), CHUNK):
            cleaned = [pair for pair in (corpus.clean_pair(s, t, cfg) for s, t in chunk) if pair is not None]
            hashes = source_hashes([s for s, _ in cleaned], cfg.seed)
            src_out.write("".join(s + "\n" for s, _ in cleaned))
            tgt_out.write("".join(t + "\n" for _, t in cleaned))
            hashes.tofile(hash_out)
            smallest.add(hashes)
            candidates = _candidates(candidates, cleaned, hashes, kept, smallest.limit)
            read, kept = read + len(chunk), kept + len(cleaned)
            progress.update(len(chunk))
    if kept == 0:
        raise DataError(f"{who} is empty after cleaning")
    if not smallest.more:
        raise DataError(f"{who} has {len(smallest.values)} distinct source sentences: too few for "
                        f"data.valid_size={cfg.valid_size} + data.test_size={cfg.test_size} plus training data")
    cuts = Cuts.of(smallest, cfg.valid_size)
    heldout = sorted(c for c in candidates if c[0] <= cuts.test_max)
    splits = cuts.split_of(np.array([h for h, _, _ in heldout], np.uint64)).tolist()
    if note := bad.summary():
        log(f"warning: {note}")
    log(f"read {read} pairs in {time.monotonic() - started:.0f} s: {kept} kept after cleaning")
    report = {"read": read, "kept": kept, "skipped_bad_lines": bad.count, "valid": splits.count(VALID),
              "test": splits.count(TEST)}
    return _Scan(kept, [(s, pair) for s, (_, _, pair) in zip(splits, heldout)], cuts, report)


def _candidates(candidates: list[tuple[int, int, Pair]], cleaned: list[Pair], hashes: np.ndarray, offset: int,
                limit: int | None) -> list[tuple[int, int, Pair]]:
    """The pairs whose source hash is still among the smallest (`limit`: the largest such hash, or
    None while fewer distinct sources than the held-out splits need have been seen)."""
    if limit is None:
        new = range(len(hashes))
    else:
        candidates = [c for c in candidates if c[0] <= limit]
        new = np.flatnonzero(hashes <= np.uint64(limit)).tolist()
    return candidates + [(int(hashes[i]), offset + i, cleaned[i]) for i in new]


def _clean_chunks(work: Path) -> Iterator[tuple[list[str], list[str], np.ndarray]]:
    """The cleaned corpus again, chunk by chunk: sources, targets and their hashes. (The hashes are read,
    not memory-mapped, so that the pass leaves no corpus-sized mapping resident.)"""
    with open(work / "clean.src", encoding="utf-8", newline="\n") as src, \
            open(work / "clean.tgt", encoding="utf-8", newline="\n") as tgt, open(work / "clean.hash", "rb") as hashes:
        while sources := [line[:-1] for line in islice(src, CHUNK)]:
            targets = [line[:-1] for line in islice(tgt, len(sources))]
            yield sources, targets, np.fromfile(hashes, dtype=np.uint64, count=len(sources))


def _training_chunks(part: ScannedCorpus) -> Iterator[tuple[list[str], list[str]]]:
    """The training pairs of each chunk of a cleaned corpus, as (sources, targets)."""
    mask = part.selection.masks()
    for sources, targets, hashes in _clean_chunks(part.work):
        keep = np.flatnonzero(mask(hashes)).tolist()
        yield [sources[i] for i in keep], [targets[i] for i in keep]


class BpeSample:
    """A seeded sample of at most `limit` training sentences, streamed from the corpora's work files:
    the same pairs on every iteration. With a joint vocabulary both sides of a pair count, so pairs are
    drawn at half the rate."""

    def __init__(self, parts: list[ScannedCorpus], limit: int, pairs: int, seed: int, joint: bool):
        self.parts, self.seed = parts, seed
        self.per_pair = 2 if joint else 1
        self.rate = min(1.0, limit / max(1, pairs * self.per_pair))
        self.pairs_limit = max(1, limit // self.per_pair)
        self.expected = min(self.pairs_limit, round(pairs * self.rate))
        self.sentences = 0  # counted by the last full iteration

    def _pairs(self) -> Iterator[Pair]:
        rng, left = np.random.default_rng(self.seed), self.pairs_limit
        for sources, targets in (chunk for part in self.parts for chunk in _training_chunks(part)):
            drawn = range(len(sources)) if self.rate == 1.0 else np.flatnonzero(
                rng.random(len(sources)) < self.rate).tolist()
            for i in drawn:
                if left == 0:
                    return
                left -= 1
                yield sources[i], targets[i]

    def __iter__(self) -> Iterator[Pair]:
        count = 0
        with _progress("BPE sample", self.expected) as progress:
            for count, pair in enumerate(self._pairs(), 1):
                yield pair
                if count % CHUNK == 0:
                    progress.update(CHUNK)
        self.sentences = count * self.per_pair


def _encode(parts: list[ScannedCorpus], tokenizers: TokenizerPair, max_len: int, store: Path,
            pairs: int) -> StoreWriter:
    """Pass 4: token ids of every training pair, corpus after corpus (cut so that EOS/BOS still fit the
    positions)."""
    writer = StoreWriter(store, id_dtype(max(tokenizers.src.vocab_size, tokenizers.tgt.vocab_size)))
    try:
        with _progress("encoding", pairs) as progress:
            for sources, targets in (chunk for part in parts for chunk in _training_chunks(part)):
                writer.add(encode_texts(tokenizers.src, sources, token_budget(max_len)),
                           encode_texts(tokenizers.tgt, targets, token_budget(max_len)))
                progress.update(len(sources))
    except BaseException:
        writer.abandon()
        raise
    return writer


def batched(items: Iterable, size: int) -> Iterator[list]:
    iterator = iter(items)
    while batch := list(islice(iterator, size)):
        yield batch


def _progress(stage: str, total: int | None) -> tqdm:
    return tqdm(total=total, desc=stage, unit=" pairs", unit_scale=True, mininterval=1.0, dynamic_ncols=True,
                leave=False)
