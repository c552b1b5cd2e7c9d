#!/usr/bin/env python
"""The data path at scale: preparing a run on synthetic corpora of growing size, then re-running it.

  python scripts/bench_data.py                           200k, 1M and 4M pairs (~15 min on 2 cores)
  python scripts/bench_data.py --sizes 200000,1000000 --code ../old-checkout   another checkout's train.py
  python scripts/bench_data.py --smoke                   tiny sizes: checks that it runs (the tests use it)

Each corpus is a TSV whose lines join two random pairs of the embedded sample (sentences of about
book length, every line a new source). For each size it measures, each in a fresh process:
1. preparation plus one training step of a tiny model (`scripts/train.py configs/sample.yaml` with
   data.source=files): wall time, pairs/s, the peak resident memory of the process tree (sampled
   from /proc, children included), and the run folder's size on disk;
2. the same run resumed for one more step: wall time and peak memory, and (with this checkout's
   code) the time from the start of preparation to the first batch, imports excluded;
3. with this checkout's code, the resumed run trained on by 2 gloo processes (torchrun): the
   anonymous (private, not file-backed) memory of each rank at its peak.
Writes bench-data.json and prints a Markdown table.
"""
from __future__ import annotations

import argparse
import gzip
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "transformer_mt" / "data" / "sample" / "tatoeba-en-fr-sample.jsonl.gz"
# A tiny model, so that only the data path counts; the tokenizer and the rest as configs/sample.yaml.
MODEL = ["model.d_model=64", "model.n_heads=2", "model.encoder_layers=1", "model.decoder_layers=1",
         "model.d_ff=128", "tokenizer.vocab_size=8000", "train.precision=fp32", "train.valid_max_sentences=20",
         "train.log_every=1", "train.max_minutes=null"]


def synthetic_corpus(path: Path, pairs: int, seed: int = 0) -> Path:
    """`pairs` TSV lines, each two random sample pairs joined; no (first, second) choice repeats."""
    import numpy as np

    sample = []
    with gzip.open(SAMPLE, "rt", encoding="utf-8") as handle:
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


def _tree_rss(pid: int) -> int:
    """Resident bytes of `pid` and all its descendants (from /proc)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                parent = int(Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(parent, []).append(int(entry))
    total, stack = 0, [pid]
    while stack:
        current = stack.pop()
        total += _status_kib(current, "VmRSS:") * 1024
        stack += children.get(current, [])
    return total


def _status_kib(pid: int, field: str) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def _anonymous_bytes(pid: int) -> int:
    """Anonymous memory of one process: what it holds privately (file-backed pages, the memory-mapped
    corpus among them, are shared through the page cache and are not counted)."""
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Anonymous:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


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
    process = subprocess.Popen(command, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    peak, anonymous, done = [0], {}, threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], _tree_rss(process.pid))
            if watch_children:
                for child in _descendants(process.pid):
                    anonymous[child] = max(anonymous.get(child, 0), _anonymous_bytes(child))
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


def _descendants(pid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry))
    return found + [grand for child in found for grand in _descendants(child)]


def folder_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def first_batch_seconds(code: Path, run_args: list[str]) -> float:
    """Seconds from the start of preparation to the first collated batch of a prepared run, measured in a
    fresh process after its imports (this checkout's code only)."""
    script = ("import sys, time, json\n"
              "from transformer_mt.config import load_config\n"
              "from transformer_mt.training.setup import set_up_run\n"
              "from transformer_mt.data.batching import collate, epoch_batches\n"
              "config = load_config('configs/sample.yaml', sys.argv[1:])\n"
              "started = time.perf_counter()\n"
              "prepared = set_up_run(config, log=lambda *_: None)\n"
              "plan = epoch_batches(prepared.train_ids, config.train.batch_tokens, config.train.seed, 0)\n"
              "collate(prepared.train_ids, plan[0])\n"
              "print(json.dumps(time.perf_counter() - started))\n")
    result = subprocess.run([sys.executable, "-c", script, *run_args], cwd=code, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"first-batch timing failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


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
        result["first_batch_seconds"] = first_batch_seconds(code, [*run_args, "train.resume=true"])
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


# The two ways of preparing compared by --compare-datasets, each timed in a fresh process: stage 1 reads,
# cleans and hashes every pair; stage 2 encodes the cleaned pairs with a joint BPE (learnt beforehand,
# untimed). "streaming" is what preparation.py does; "datasets" is Hugging Face datasets end to end:
# load_dataset builds an Arrow cache, Dataset.map(batched=True, num_proc=2) does the per-pair work.
COMPARE = """
import json, sys, time
from pathlib import Path
import numpy as np
from transformer_mt.config import DataConfig, TokenizerConfig
from transformer_mt.data.corpus import clean_pair, iter_pairs
from transformer_mt.data.preparation import CHUNK, _batched
from transformer_mt.data.splitting import source_hashes
from transformer_mt.data.store import encode_texts
from transformer_mt.data.tokenizer import Tokenizer
corpus, work, way, stage = sys.argv[1], Path(sys.argv[2]), sys.argv[3], sys.argv[4]
cfg = DataConfig(source="files", files=[corpus])
tokenizer = Tokenizer.load(work / "bpe.json")
started = time.perf_counter()
if way == "streaming" and stage == "clean":
    with open(work / "clean.tsv", "w", encoding="utf-8") as out, open(work / "clean.hash", "wb") as hashes:
        for chunk in _batched(iter_pairs(cfg), CHUNK):
            cleaned = [p for p in (clean_pair(s, t, cfg) for s, t in chunk) if p]
            out.write("".join(f"{s}\\t{t}\\n" for s, t in cleaned))
            source_hashes([s for s, _ in cleaned], cfg.seed).tofile(hashes)
elif way == "streaming":
    with open(work / "clean.tsv", encoding="utf-8") as lines, open(work / "ids.bin", "wb") as out:
        for chunk in _batched((line[:-1].split("\\t") for line in lines), CHUNK):
            for side in (0, 1):
                encode_texts(tokenizer, [pair[side] for pair in chunk], 1023)[0].tofile(out)
else:
    import datasets
    datasets.disable_progress_bars()
    if stage == "clean":
        rows = datasets.load_dataset("csv", data_files=corpus, sep="\\t", column_names=["en", "fr"], quoting=3,
                                     keep_default_na=False, split="train", cache_dir=str(work / "hf"))
        def clean(batch):
            pairs = [clean_pair(s, t, cfg) for s, t in zip(batch["en"], batch["fr"])]
            kept = [p for p in pairs if p]
            return {"en": [s for s, _ in kept], "fr": [t for _, t in kept],
                    "hash": source_hashes([s for s, _ in kept], cfg.seed).view(np.int64).tolist()}
        rows.map(clean, batched=True, num_proc=2, remove_columns=rows.column_names).save_to_disk(str(work / "clean"))
    else:
        rows = datasets.load_from_disk(str(work / "clean"))
        def encode(batch):
            return {"src_ids": tokenizer.encode_batch(batch["en"]), "tgt_ids": tokenizer.encode_batch(batch["fr"])}
        rows.map(encode, batched=True, num_proc=2, remove_columns=rows.column_names,
                 cache_file_name=str(work / "encoded.arrow"))
print(json.dumps(time.perf_counter() - started))
"""


def compare_with_datasets(corpus: Path, work: Path) -> dict:
    """Seconds and peak memory of each stage, plain chunked streaming against `datasets` end to end."""
    from transformer_mt.config import DataConfig, TokenizerConfig
    from transformer_mt.data.corpus import iter_pairs
    from transformer_mt.data.tokenizer import Tokenizer

    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    sample = [text for _, pair in zip(range(100_000), iter_pairs(DataConfig(source="files", files=[str(corpus)])))
              for text in pair]
    Tokenizer.train(sample, TokenizerConfig().vocab_size).save(work / "bpe.json")
    results = {}
    for way in ("streaming", "datasets"):
        for stage in ("clean", "encode"):
            _log(f"comparing: {way}, {stage}")
            run = measure([sys.executable, "-c", COMPARE, str(corpus), str(work), way, stage], ROOT)
            results[f"{way}_{stage}"] = {"seconds": json.loads(run.output.strip().splitlines()[-1]),
                                         "peak_rss": run.peak_rss}
    shutil.rmtree(work, ignore_errors=True)
    return results


def _markdown(results: list[dict]) -> str:
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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="200000,1000000,4000000", help="corpus sizes in pairs, comma-separated")
    parser.add_argument("--smoke", action="store_true", help="one tiny corpus (3,000 pairs): checks that it runs")
    parser.add_argument("--code", default=str(ROOT), help="the checkout whose scripts/train.py to measure")
    parser.add_argument("--work", help="folder for the corpora and runs (default: a temporary one)")
    parser.add_argument("--output", default="bench-data.json")
    parser.add_argument("--compare-datasets", type=int, metavar="PAIRS",
                        help="instead: time preparing a corpus of PAIRS pairs with plain streaming and with datasets")
    args = parser.parse_args()
    sizes = [3000] if args.smoke else [int(s) for s in args.sizes.split(",")]
    code = Path(args.code).resolve()
    this_code = code == ROOT
    with tempfile.TemporaryDirectory() as scratch:
        work = Path(args.work or scratch)
        work.mkdir(parents=True, exist_ok=True)
        if args.compare_datasets:
            corpus = work / f"corpus-{args.compare_datasets}.tsv"
            if not corpus.is_file():
                synthetic_corpus(corpus, args.compare_datasets)
            comparison = compare_with_datasets(corpus, work / "compare")
            Path(args.output).write_text(json.dumps(comparison, indent=2))
            print(json.dumps(comparison, indent=2))
            return 0
        results = [bench_size(pairs, work, code, this_code) for pairs in sizes]
    report = {"machine": {"cpu": _cpu_model(), "cores": os.cpu_count(), "python": platform.python_version()},
              "code": _revision(code), "results": results}
    Path(args.output).write_text(json.dumps(report, indent=2))
    print(_markdown(results))
    return 0


def _revision(code: Path) -> str:
    result = subprocess.run(["git", "describe", "--always", "--dirty"], cwd=code, capture_output=True, text=True)
    return result.stdout.strip() or "unknown"


def _cpu_model() -> str:
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor()
    name = next((line.split(":", 1)[1].strip() for line in flags.splitlines() if line.startswith("model name")), "?")
    return f"{name} ({'AVX512-BF16' if 'avx512_bf16' in flags else 'AVX2'})"


def _log(message: str) -> None:
    print(f"[bench-data {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


if __name__ == "__main__":
    sys.exit(main())
