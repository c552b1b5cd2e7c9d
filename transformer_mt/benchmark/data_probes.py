"""Measurements of the data path that must run in a fresh process, after their imports:
`python -m transformer_mt.benchmark.data_probes first-batch OVERRIDES...` and
`python -m transformer_mt.benchmark.data_probes prepare-stage CORPUS WORK WAY STAGE`. Each prints the
seconds it measured as its last line (JSON), for benchmark/data_scale.py."""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np

from ..config import DataConfig, load_config
from ..data.batching import collate, epoch_batches
from ..data.corpus import clean_pair, iter_pairs
from ..data.preparation import CHUNK, batched
from ..data.splitting import source_hashes
from ..data.store import encode_texts
from ..data.tokenizer import Tokenizer
from ..training.setup import set_up_run
from .machine import ROOT


def first_batch_seconds(overrides: list[str]) -> float:
    """From the start of preparation (a prepared run: opening it) to its first collated batch."""
    config = load_config(ROOT / "configs" / "sample.yaml", overrides)
    started = time.perf_counter()
    prepared = set_up_run(config, log=lambda *_: None)
    plan = epoch_batches(prepared.train_ids, config.train.batch_tokens, config.train.seed, 0)
    collate(prepared.train_ids, plan[0])
    return time.perf_counter() - started


def prepare_stage(corpus: str, work: Path, way: str, stage: str) -> float:
    """One stage of preparing `corpus` one way: "clean" reads, cleans and hashes every pair; "encode"
    encodes the cleaned pairs with the joint BPE in WORK/bpe.json (learnt beforehand, untimed).
    "streaming" is what data/preparation.py does; "datasets" is Hugging Face datasets end to end."""
    cfg = DataConfig(source="files", files=[corpus])
    tokenizer = Tokenizer.load(work / "bpe.json")
    started = time.perf_counter()
    if way == "streaming":
        (_stream_clean if stage == "clean" else _stream_encode)(cfg, work, tokenizer)
    else:
        (_datasets_clean if stage == "clean" else _datasets_encode)(cfg, work, tokenizer)
    return time.perf_counter() - started


def _stream_clean(cfg: DataConfig, work: Path, tokenizer: Tokenizer) -> None:
    with open(work / "clean.tsv", "w", encoding="utf-8") as out, open(work / "clean.hash", "wb") as hashes:
        for chunk in batched(iter_pairs(cfg), CHUNK):
            cleaned = [p for p in (clean_pair(s, t, cfg) for s, t in chunk) if p]
            out.write("".join(f"{s}\t{t}\n" for s, t in cleaned))
            source_hashes([s for s, _ in cleaned], cfg.seed).tofile(hashes)


def _stream_encode(cfg: DataConfig, work: Path, tokenizer: Tokenizer) -> None:
    with open(work / "clean.tsv", encoding="utf-8") as lines, open(work / "ids.bin", "wb") as out:
        for chunk in batched((line[:-1].split("\t") for line in lines), CHUNK):
            for side in (0, 1):
                encode_texts(tokenizer, [pair[side] for pair in chunk], 1023)[0].tofile(out)


def _datasets_clean(cfg: DataConfig, work: Path, tokenizer: Tokenizer) -> None:
    """load_dataset builds an Arrow cache; Dataset.map(batched=True, num_proc=2) does the per-pair work."""
    import datasets

    datasets.disable_progress_bars()
    rows = datasets.load_dataset("csv", data_files=cfg.files[0], sep="\t", column_names=["en", "fr"], quoting=3,
                                 keep_default_na=False, split="train", cache_dir=str(work / "hf"))

    def clean(batch):
        kept = [p for p in (clean_pair(s, t, cfg) for s, t in zip(batch["en"], batch["fr"])) if p]
        return {"en": [s for s, _ in kept], "fr": [t for _, t in kept],
                "hash": source_hashes([s for s, _ in kept], cfg.seed).view(np.int64).tolist()}

    rows.map(clean, batched=True, num_proc=2, remove_columns=rows.column_names).save_to_disk(str(work / "clean"))


def _datasets_encode(cfg: DataConfig, work: Path, tokenizer: Tokenizer) -> None:
    import datasets

    datasets.disable_progress_bars()
    rows = datasets.load_from_disk(str(work / "clean"))

    def encode(batch):
        return {"src_ids": tokenizer.encode_batch(batch["en"]), "tgt_ids": tokenizer.encode_batch(batch["fr"])}

    rows.map(encode, batched=True, num_proc=2, remove_columns=rows.column_names,
             cache_file_name=str(work / "encoded.arrow"))


def main(argv: list[str]) -> None:
    if argv[0] == "first-batch":
        seconds = first_batch_seconds(argv[1:])
    else:
        corpus, work, way, stage = argv[1:5]
        seconds = prepare_stage(corpus, Path(work), way, stage)
    print(json.dumps(seconds))


if __name__ == "__main__":
    main(sys.argv[1:])
