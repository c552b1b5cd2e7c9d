"""The data path at scale (scripts/bench_data.py): preparing a run on synthetic corpora of growing size,
then re-running it.

Each corpus is a TSV whose lines join two random pairs of the embedded sample (sentences of about book
length, every line a new source). For each size, each in a fresh process:
1. preparation plus one training step of a tiny model (`scripts/train.py configs/sample.yaml` with
   data.source=files): wall time, pairs/s, the peak resident memory of the process tree (sampled from
   /proc, children included), and the run folder's size on disk;
2. the same run resumed for one more step: wall time and peak memory, and (with this checkout's code)
   the time from the start of preparation to the first batch, imports excluded (`data_probes`);
3. with this checkout's code, the resumed run trained on by 2 gloo processes (torchrun): the anonymous
   (private, not file-backed) memory of each rank at its peak.
`compare_with_datasets` times plain chunked streaming against Hugging Face datasets end to end.
"""
from __future__ import annotations

import gzip
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from ..config import DataConfig, TokenizerConfig
from ..data.corpus import iter_pairs, sample_corpus_path
from ..data.tokenizer import Tokenizer
from .machine import ROOT, anonymous_bytes, descendants, log_stamped, tree_resident_bytes

# A tiny model, so that only the data path counts; the tokenizer and the rest as configs/sample.yaml.
MODEL = ["model.d_model=64", "model.n_heads=2", "model.encoder_layers=1", "model.decoder_layers=1",
         "model.d_ff=128", "tokenizer.vocab_size=8000", "train.precision=fp32", "train.valid_max_sentences=20",
         "train.log_every=1", "train.max_minutes=null"]
PROBES = "transformer_mt.benchmark.data_probes"  # run with python -m, in a fresh process each


def synthetic_corpus(path: Path, pairs: int, seed: int = 0) -> Path:
    """`pairs` TSV lines, each two random sample pairs joined; no (first, second) choice repeats."""
    import numpy as np

    sample = []
    with gzip.open(sample_corpus_path(), "rt", encoding="utf-8") as handle:
        for line in handle:
            item = json.loads(line)["translation"]
            sample.append((item["en"].replace("\t", " "), item["fr"].replace("\t", " ")))
    size = len(sample)
    rng = np.random.default_rng(seed)
    codes = rng.integers(0, size * size, int(pairs * 1.01) + 100)
    _, first = np.unique(codes, return_index=True)
    codes = codes[np.sort(first)][:pairs]  # distinct choices, still in random order
    tmp = path.with_suffix(".tmp")
    with open(tmp, "w", encoding="utf-8", buffering=1 << 20) as out:
        for a, b in zip((codes // size).tolist(), (codes % size).tolist()):
            out.write(f"{sample[a][0]} {sample[b][0]}\t{sample[a][1]} {sample[b][1]}\n")
    tmp.replace(path)
    return path


@dataclass
class Measured:
    seconds: float
    peak_rss: int
    output: str
    per_process_anonymous: dict[int, int]


def measure(command: list[str], cwd: Path, watch_children: bool = False) -> Measured:
    """Run `command`, sampling the memory of its process tree every 50 ms; raises on failure."""
    # The package of the checkout measured, not the one installed in the environment.
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONPATH": str(cwd)}
    started = time.perf_counter()
    process = subprocess.Popen(command, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True)
    peak, anonymous, done = [0], {}, threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], tree_resident_bytes(process.pid))
            if watch_children:
                for child in descendants(process.pid):
                    anonymous[child] = max(anonymous.get(child, 0), anonymous_bytes(child))
            done.wait(0.05)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    output, _ = process.communicate()
    seconds = time.perf_counter() - started
    done.set()
    sampler.join()
    if process.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed ({process.returncode}):\n{output[-3000:]}")
    return Measured(seconds, peak[0], output, anonymous)


def folder_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def bench_size(pairs: int, work: Path, code: Path, this_code: bool) -> dict:
    corpus = work / f"corpus-{pairs}.tsv"
    if not corpus.is_file():
        _log(f"writing a {pairs:,}-pair corpus")
        synthetic_corpus(corpus, pairs)
    root = work / "runs"
    name = f"p{pairs}"
    shutil.rmtree(root / name, ignore_errors=True)
    run_args = [f"run.root={root}", f"run.name={name}", "data.source=files", f"data.files=[{corpus}]", *MODEL]
    train = [sys.executable, "scripts/train.py", "configs/sample.yaml", *run_args]
    _log(f"{pairs:,} pairs: preparing and training one step")
    first = measure([*train, "train.max_steps=1"], code)
    run_bytes = folder_bytes(root / name)
    _log(f"{pairs:,} pairs: resuming for one more step")
    again = measure([*train, "train.max_steps=2", "train.resume=true"], code)
    stages = [line.split("\r")[-1] for line in first.output.splitlines()]
    result = {"pairs": pairs, "prepare_seconds": first.seconds, "pairs_per_second": pairs / first.seconds,
              "prepare_stages": [line for line in stages if line.startswith(("read ", "BPE ", "encoded "))],
              "prepare_peak_rss": first.peak_rss, "run_folder_bytes": run_bytes, "rerun_seconds": again.seconds,
              "rerun_peak_rss": again.peak_rss}
    if this_code:
        result["first_batch_seconds"] = _probe(code, "first-batch", *run_args, "train.resume=true")
        _log(f"{pairs:,} pairs: 2 gloo processes, 10 more steps")
        torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                    "scripts/train.py", "configs/sample.yaml", *run_args, "train.max_steps=12", "train.resume=true",
                    "train.num_threads=1"]
        ddp = measure(torchrun, code, watch_children=True)
        ranks = sorted(ddp.per_process_anonymous.values())[-2:]  # the two workers: the largest two
        result["ddp_rank_anonymous"] = ranks
        result["ddp_rank_anonymous_limit"] = int(0.5e9 + 8 * pairs)
    shutil.rmtree(root / name, ignore_errors=True)
    return result


def compare_with_datasets(corpus: Path, work: Path) -> dict:
    """Seconds and peak memory of each stage, plain chunked streaming against `datasets` end to end."""
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    sample = [text for _, pair in zip(range(100_000), iter_pairs(DataConfig(source="files", files=[str(corpus)])))
              for text in pair]
    Tokenizer.train(sample, TokenizerConfig().vocab_size).save(work / "bpe.json")
    results = {}
    for way in ("streaming", "datasets"):
        for stage in ("clean", "encode"):
            _log(f"comparing: {way}, {stage}")
            run = measure([sys.executable, "-m", PROBES, "prepare-stage", str(corpus), str(work), way, stage], ROOT)
            results[f"{way}_{stage}"] = {"seconds": json.loads(run.output.strip().splitlines()[-1]),
                                         "peak_rss": run.peak_rss}
    shutil.rmtree(work, ignore_errors=True)
    return results


def markdown(results: list[dict]) -> str:
    gb = lambda b: f"{b / 1e9:.2f} GB"  # noqa: E731
    rows = ["| pairs | prepare + 1 step | pairs/s | peak RSS | run folder | re-run | re-run peak RSS "
            "| first batch (re-run) | private memory per rank (2 gloo) |", "|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        ranks = " / ".join(gb(b) for b in r.get("ddp_rank_anonymous", [])) or "–"
        first = f"{r['first_batch_seconds']:.2f} s" if "first_batch_seconds" in r else "–"
        rows.append(f"| {r['pairs']:,} | {r['prepare_seconds']:.1f} s | {r['pairs_per_second']:,.0f} | "
                    f"{gb(r['prepare_peak_rss'])} | {r['run_folder_bytes'] / 1e6:.0f} MB | "
                    f"{r['rerun_seconds']:.1f} s | "
                    f"{gb(r['rerun_peak_rss'])} | {first} | {ranks} |")
    return "\n".join(rows)


def _probe(code: Path, *args: str) -> float:
    """Seconds a `data_probes` measurement reports, run with `code`'s package in a fresh process."""
    result = subprocess.run([sys.executable, "-m", PROBES, *args], cwd=code, capture_output=True, text=True,
                            env={**os.environ, "PYTHONPATH": str(code)})
    if result.returncode != 0:
        raise RuntimeError(f"{PROBES} {args[0]} failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def _log(message: str) -> None:
    log_stamped("bench-data", message)
