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

from ..config import Config, DataConfig
from ..run_folder import RunPaths
from . import corpus
from .corpus import BadLines, DataError, Pair
from .splitting import TEST, VALID, Cuts, Selection, SmallestDistinct, Subset, hash_file, source_hashes
from .store import FORMAT, Manifest, StoreWriter, encode_texts, id_dtype
from .tokenizer import TokenizerPair, token_budget

CHUNK = 20_000
Log = Callable[[str], None]


def inputs_fingerprint(config: Config) -> str:
    """What a prepared store depends on: the data and tokenizer settings, the model's positions, the
    store's format, and the corpus files' identity (path, size, modification time; not their text,
    which would mean reading it all)."""
    payload = {"format": FORMAT, "data": asdict(config.data), "tokenizer": asdict(config.tokenizer),
               "max_positions": config.model.max_positions, "corpus": _corpus_identity(config.data)}
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
    """Write the run's held-out splits, its tokenizers (trained here unless given) and its training store."""
    work = run.data / ".work"
    for folder in (run.store, work):
        shutil.rmtree(folder, ignore_errors=True)
    work.mkdir(parents=True)
    inputs = inputs_fingerprint(config)
    scan = _scan(config.data, work, log)
    langs = (config.data.src_lang, config.data.tgt_lang)
    for split, name in ((VALID, "valid"), (TEST, "test")):
        corpus.write_split([pair for s, pair in scan.heldout if s == split], *run.split_files(name, *langs))
    max_pairs = config.data.max_pairs
    subset = Subset.find(hash_file(work / "clean.hash"), scan.cuts.test_max, max_pairs) if max_pairs else None
    selection = Selection(scan.cuts, subset)
    report = scan.report
    report["train"] = min(scan.kept - len(scan.heldout), max_pairs or scan.kept)
    log(f"pairs: train {report['train']}, valid {report['valid']}, test {report['test']}")
    if tokenizers is None:
        sample = BpeSample(work, selection, config.tokenizer.train_sentences, report["train"], config.data.seed,
                           config.tokenizer.joint)
        tokenizers = _learn_bpe(config, run, sample, log)
        report["bpe_sentences"] = sample.sentences
    started = time.monotonic()
    writer = _encode(work, selection, tokenizers, config.model.max_positions, run.store, report["train"])
    log(f"encoded {report['train']} training pairs in {time.monotonic() - started:.0f} s")
    key = hashlib.sha256((inputs + tokenizers.src.hf.to_str() + tokenizers.tgt.hf.to_str()).encode()).hexdigest()
    manifest = writer.finish(inputs, key, report)
    shutil.rmtree(work)
    return manifest


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


def _scan(cfg: DataConfig, work: Path, log: Log) -> _Scan:
    """Pass 1: the cleaned pairs and their source hashes into work files; the held-out pairs."""
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
        raise DataError("the corpus is empty after cleaning")
    if not smallest.more:
        raise DataError(f"corpus has {len(smallest.values)} distinct source sentences: too few for "
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


def _training_chunks(work: Path, selection: Selection) -> Iterator[tuple[list[str], list[str]]]:
    """The training pairs of each chunk of the cleaned corpus, as (sources, targets)."""
    mask = selection.masks()
    for sources, targets, hashes in _clean_chunks(work):
        keep = np.flatnonzero(mask(hashes)).tolist()
        yield [sources[i] for i in keep], [targets[i] for i in keep]


class BpeSample:
    """A seeded sample of at most `limit` training sentences, streamed from the work files: the same
    pairs on every iteration. With a joint vocabulary both sides of a pair count, so pairs are drawn at
    half the rate."""

    def __init__(self, work: Path, selection: Selection, limit: int, pairs: int, seed: int, joint: bool):
        self.work, self.selection, self.seed = work, selection, seed
        self.per_pair = 2 if joint else 1
        self.rate = min(1.0, limit / max(1, pairs * self.per_pair))
        self.pairs_limit = max(1, limit // self.per_pair)
        self.expected = min(self.pairs_limit, round(pairs * self.rate))
        self.sentences = 0  # counted by the last full iteration

    def _pairs(self) -> Iterator[Pair]:
        rng, left = np.random.default_rng(self.seed), self.pairs_limit
        for sources, targets in _training_chunks(self.work, self.selection):
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


def _encode(work: Path, selection: Selection, tokenizers: TokenizerPair, max_len: int, store: Path,
            pairs: int) -> StoreWriter:
    """Pass 4: token ids of every training pair (cut so that EOS/BOS still fit the positions)."""
    writer = StoreWriter(store, id_dtype(max(tokenizers.src.vocab_size, tokenizers.tgt.vocab_size)))
    try:
        with _progress("encoding", pairs) as progress:
            for sources, targets in _training_chunks(work, selection):
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
