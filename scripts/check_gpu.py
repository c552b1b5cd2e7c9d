#!/usr/bin/env python
"""The CUDA check, as one command on a machine with a GPU and no network (make check-gpu):

  1. the CUDA tests (tests/test_cuda.py);
  2. the GPU's bf16 matmul peak (8192^3);
  3. configs/base.yaml (Transformer-base, bf16, 12,000-token batches) trained for --minutes on the
     embedded sample (opus_books-format JSONL, through data.source=files): target tokens/s, MFU
     against that peak, peak GPU memory, validation BLEU;
  4. scripts/bench.py --device cuda, stopped after --bench-seconds.
Everything goes into --output (results.json, log.txt, bench.json); it takes about 9 minutes.

It uses the PyTorch installed there (never reinstalls it). A Python package it lacks can come as wheels
in .whl/ (pip download them beforehand: docs/gpu-check.md): they are installed into OUTPUT/site first.
--device cpu --smoke checks the plumbing on a CPU (configs/tiny.yaml, no bench; the tests use it).
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NEEDED = ("torch", "numpy", "tokenizers", "yaml", "tqdm", "tensorboard", "torchmetrics")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output", default=os.environ.get("OUT") or "check-gpu", help="results folder")
    parser.add_argument("--minutes", type=float, default=2.5, help="training time of configs/base.yaml")
    parser.add_argument("--bench-seconds", type=int, default=150, help="cap on scripts/bench.py (0: skip it)")
    parser.add_argument("--wheels", default=str(ROOT / ".whl"), help="wheels of packages the machine lacks")
    parser.add_argument("--device", default="cuda", choices=("cuda", "cpu"))
    parser.add_argument("--smoke", action="store_true", help="configs/tiny.yaml for a few seconds (with --device cpu)")
    args = parser.parse_args()
    out = Path(args.output).resolve()
    out.mkdir(parents=True, exist_ok=True)
    check = Check(out)
    env = check.environment(Path(args.wheels))
    import torch

    if args.device == "cuda" and not torch.cuda.is_available():
        check.fail("no CUDA GPU is visible: run this on a machine with one (or --device cpu --smoke)")
        return 2
    check.step("tests", lambda: check.tests(env))
    peak = check.step("matmul", lambda: check.matmul_peak(args.device, 512 if args.smoke else 8192))
    check.step("training", lambda: check.training(env, args.device, args.minutes, args.smoke, peak))
    if args.bench_seconds > 0:
        check.step("bench", lambda: check.bench(env, args.device, args.bench_seconds))
    check.write()
    print(json.dumps(check.results, indent=1))
    return 0 if all(v.get("ok", True) for v in check.results.values() if isinstance(v, dict)) else 1


class Check:
    def __init__(self, out: Path):
        self.out, self.results = out, {"started": time.strftime("%Y-%m-%d %H:%M:%S")}
        self.log = open(out / "log.txt", "w", encoding="utf-8")

    def environment(self, wheels: Path) -> dict[str, str]:
        """The environment of every step: this checkout on PYTHONPATH, and the wheels in `wheels`
        installed into OUTPUT/site first if a package is missing."""
        paths = [str(ROOT)]
        missing = [name for name in NEEDED if importlib.util.find_spec(name) is None]
        if missing and any(wheels.glob("*.whl")):
            site = self.out / "site"
            self.run([sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps", "--no-compile",
                      "--target", str(site), *map(str, sorted(wheels.glob("*.whl")))], dict(os.environ), 300)
            paths.append(str(site))
        sys.path[:0] = paths
        importlib.invalidate_caches()
        self.results["missing_packages"] = [name for name in NEEDED if importlib.util.find_spec(name) is None]
        if self.results["missing_packages"]:
            self.fail(f"missing Python packages {self.results['missing_packages']}: pip download their wheels "
                      "into .whl/ first (docs/gpu-check.md)")
            raise SystemExit(2)
        return {**os.environ, "PYTHONPATH": os.pathsep.join(paths), "PYTHONUNBUFFERED": "1"}

    def step(self, name: str, work):
        started = time.monotonic()
        try:
            value = work()
            self.results[name] = {"ok": True, **(value if isinstance(value, dict) else {"value": value})}
        except Exception as err:  # a failed step is recorded, and the next ones still run
            self.results[name] = {"ok": False, "error": f"{type(err).__name__}: {err}"}
            value = None
        self.results[name]["seconds"] = round(time.monotonic() - started, 1)
        self.write()
        return value

    def run(self, command: list[str], env: dict[str, str], timeout: float) -> subprocess.CompletedProcess:
        self.log.write(f"\n$ {' '.join(command)}\n")
        self.log.flush()
        try:
            result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired as err:
            self.log.write(_text(err.stdout) + _text(err.stderr) + f"\n(stopped after {timeout} s)\n")
            raise
        self.log.write(result.stdout + result.stderr)
        self.log.flush()
        return result

    def tests(self, env: dict[str, str]) -> dict:
        result = self.run([sys.executable, "-m", "pytest", "-q", "-rA", "tests/test_cuda.py"], env, 300)
        counts = {kind: int(n) for n, kind in re.findall(r"(\d+) (passed|failed|skipped|error)", result.stdout)}
        if result.returncode not in (0, 5) or counts.get("failed") or counts.get("error"):
            raise RuntimeError(f"tests/test_cuda.py: {counts or result.stdout[-500:]}")
        return counts

    @staticmethod
    def matmul_peak(device: str, size: int) -> float:
        """bf16 TFLOP/s of a size^3 matrix product, the best of 10 after warm-up."""
        import torch

        a, b = (torch.randn(size, size, device=device, dtype=torch.bfloat16) for _ in range(2))
        best = float("inf")
        for repeat in range(13):
            sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
            sync()
            started = time.perf_counter()
            a @ b
            sync()
            if repeat >= 3:
                best = min(best, time.perf_counter() - started)
        return 2 * size**3 / best / 1e12

    def training(self, env: dict[str, str], device: str, minutes: float, smoke: bool, peak: float | None) -> dict:
        from transformer_mt.data import sample_corpus_path

        config = "configs/tiny.yaml" if smoke else "configs/base.yaml"
        overrides = [f"run.root={self.out / 'runs'}", "run.name=check", "data.source=files",
                     f"data.files=[{sample_corpus_path()}]", f"train.device={device}", f"train.max_minutes={minutes}",
                     "train.max_steps=null", "train.log_every=20", "train.valid_every=100000", "train.resume=false"]
        if not smoke:
            overrides += ["train.precision=bf16", "train.batch_tokens=12000", "train.warmup_steps=400",
                          "train.valid_max_sentences=300"]
        result = self.run([sys.executable, "scripts/train.py", config, *overrides], env, minutes * 60 + 240)
        if result.returncode != 0:
            raise RuntimeError((result.stderr.strip().splitlines() or ["train.py failed"])[-1])
        return self._training_figures(self.out / "runs" / "check", peak)

    @staticmethod
    def _training_figures(run: Path, peak: float | None) -> dict:
        from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

        from transformer_mt.benchmark.flops import training_flops_per_token
        from transformer_mt.config import load_config
        from transformer_mt.store import open_store, read_manifest
        from transformer_mt.tokenizer import Tokenizer

        events = EventAccumulator(str(run)).Reload()
        scalars = {tag: [e.value for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]}
        rates = scalars.get("train/tokens_per_sec", [])[1:] or scalars.get("train/tokens_per_sec", [0.0])
        tokens_per_second = sorted(rates)[len(rates) // 2]
        config = load_config(run / "config.yaml")
        store = open_store(run / "data" / "train", read_manifest(run / "data" / "train"))
        src_len = store.src_offsets[-1] / len(store) + 1
        tgt_len = store.tgt_offsets[-1] / len(store) + 1
        vocab = Tokenizer.load(run / "tokenizer-tgt.json").vocab_size
        flops = training_flops_per_token(config.model, vocab, float(src_len), float(tgt_len))
        figures = {"target_tokens_per_second": tokens_per_second, "training_flops_per_token": flops,
                   "steps": int(max(events.Scalars("train/loss"), key=lambda e: e.step).step)
                   if "train/loss" in scalars else 0,
                   "valid_bleu": (scalars.get("valid/bleu") or [None])[-1],
                   "peak_gpu_memory_gb": max(scalars.get("train/gpu_memory_gb") or [0.0])}
        if peak:
            figures["mfu_vs_measured_bf16_peak"] = tokens_per_second * flops / (peak * 1e12)
        return figures

    def bench(self, env: dict[str, str], device: str, seconds: int) -> dict:
        output = self.out / "bench.json"
        result = self.run([sys.executable, "scripts/bench.py", "--device", device, "--train-minutes", "0",
                           "--output", str(output)], env, seconds)
        if result.returncode != 0:
            raise RuntimeError((result.stderr.strip().splitlines() or ["bench.py failed"])[-1])
        return {"ratios": json.loads(output.read_text()).get("ratios", {})}

    def fail(self, message: str) -> None:
        self.results["error"] = message
        self.write()
        print(f"error: {message}", file=sys.stderr)

    def write(self) -> None:
        (self.out / "results.json").write_text(json.dumps(self.results, indent=1))


def _text(value) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else (value or "")


if __name__ == "__main__":
    sys.exit(main())
