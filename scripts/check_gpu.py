#!/usr/bin/env python
"""The CUDA check, as one command on a machine with a GPU and no network (make check-gpu):

  1. the CUDA tests (tests/test_cuda.py): every one must run and pass;
  2. the GPU's bf16 matmul peak (the best of 8192^3 and 16384^3);
  3. configs/base.yaml (Transformer-base, bf16, 12,000-token batches) trained for --minutes on the
     embedded sample (opus_books-format JSONL, through data.source=files): target tokens/s, MFU
     against the measured peak and the datasheet's, peak GPU memory, validation BLEU;
  4. scripts/bench.py --device cuda, stopped after --bench-seconds (it keeps what it measured so far).
Everything goes into --output (results.json, log.txt, bench.json), each stage's results as it ends.
Each stage has a time cap and all fit in --budget-minutes (8); a stage's processes run in their own
process group, killed with it at the cap.

It uses the PyTorch installed there (never reinstalls it). A package it lacks can come as a wheel in
.whl/ (pip download beforehand: docs/gpu-check.md): only the wheels of distributions the machine does
not have are installed, into OUTPUT/site.
--device cpu --smoke checks the plumbing on a CPU (configs/tiny.yaml, no bench; the tests use it).
"""
from __future__ import annotations

import argparse
import contextlib
import importlib.metadata
import importlib.util
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# Import name → distribution: what the check needs, and what the bench's peer needs.
NEEDED = {"torch": "torch", "numpy": "numpy", "tokenizers": "tokenizers", "yaml": "PyYAML", "tqdm": "tqdm",
          "tensorboard": "tensorboard", "torchmetrics": "torchmetrics", "pytest": "pytest"}
BENCH_NEEDS = {"transformers": "transformers"}
TESTS_SECONDS, BENCH_SECONDS_MAX, TRAINING_STARTUP_SECONDS = 180, 120, 75
# Dense bf16 tensor-core TFLOP/s from NVIDIA's datasheets (without sparsity), by a part of the name
# torch.cuda.get_device_name gives; the first match wins (so "H100 PCIe" before "H100").
DATASHEET_BF16_TFLOPS = (("H100 PCIe", 756.0), ("H100 NVL", 835.0), ("GH200", 989.0), ("H200", 989.0),
                         ("H100", 989.0), ("A100", 312.0), ("L40S", 362.0), ("L40", 181.0), ("L4", 121.0),
                         ("A10", 125.0))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output", default=os.environ.get("OUT") or "check-gpu", help="results folder")
    parser.add_argument("--minutes", type=float, default=2.0, help="training time of configs/base.yaml")
    parser.add_argument("--bench-seconds", type=int, default=90, help="cap on scripts/bench.py (0: skip it)")
    parser.add_argument("--budget-minutes", type=float, default=8.0, help="the whole check's time cap")
    parser.add_argument("--wheels", default=str(ROOT / ".whl"), help="wheels of packages the machine lacks")
    parser.add_argument("--device", default="cuda", choices=("cuda", "cpu"))
    parser.add_argument("--smoke", action="store_true", help="configs/tiny.yaml for a few seconds (with --device cpu)")
    args = parser.parse_args()
    out = Path(args.output).resolve()
    out.mkdir(parents=True, exist_ok=True)
    check = Check(out, time.monotonic() + args.budget_minutes * 60)
    env = check.environment(Path(args.wheels), args.device)
    import torch

    if args.device == "cuda" and not torch.cuda.is_available():
        check.fail("no CUDA GPU is visible: run this on a machine with one (or --device cpu --smoke)")
        return 2
    check.step("tests", lambda: check.tests(env, args.device))
    peak = check.step("matmul", lambda: check.matmul_peak(args.device, (512,) if args.smoke else (8192, 16384)))
    check.step("training", lambda: check.training(env, args.device, args.minutes, args.smoke, peak))
    if args.bench_seconds > 0:
        check.step("bench", lambda: check.bench(env, args.device, min(args.bench_seconds, BENCH_SECONDS_MAX)))
    check.write()
    print(json.dumps(check.results, indent=1))
    return 0 if all(v.get("ok", True) for v in check.results.values() if isinstance(v, dict)) else 1


class Check:
    def __init__(self, out: Path, deadline: float):
        self.out, self.deadline = out, deadline
        self.results = {"started": time.strftime("%Y-%m-%d %H:%M:%S")}
        self.log = open(out / "log.txt", "w", encoding="utf-8")

    def environment(self, wheels: Path, device: str) -> dict[str, str]:
        """The environment of every step: this checkout first on PYTHONPATH (before what was there),
        then OUTPUT/site with the wheels of distributions the machine lacks. On --device cpu the GPU
        is hidden, so that the CUDA tests skip as on a machine without one."""
        paths = [str(ROOT)]
        lacking = [dist for dist in {**NEEDED, **BENCH_NEEDS}.values() if not _installed(dist)]
        chosen = wheels_to_install(wheels)
        if lacking and chosen:
            site = self.out / "site"
            self.run([sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps", "--no-compile",
                      "--target", str(site), *map(str, chosen)], dict(os.environ), 120)
            paths.append(str(site))
        self.results["wheels_installed"] = [w.name for w in chosen] if lacking else []
        sys.path[:0] = paths
        importlib.invalidate_caches()
        self.results["missing_packages"] = [name for name in NEEDED if importlib.util.find_spec(name) is None]
        self.results["missing_for_bench_peer"] = [n for n in BENCH_NEEDS if importlib.util.find_spec(n) is None]
        if self.results["missing_packages"]:
            self.fail(f"missing Python packages {self.results['missing_packages']}: pip download their wheels "
                      "into .whl/ first (docs/gpu-check.md)")
            raise SystemExit(2)
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(paths + _split(os.environ.get("PYTHONPATH"))),
               "PYTHONUNBUFFERED": "1",
               "CUBLAS_WORKSPACE_CONFIG": ":4096:8"}  # read when cuBLAS starts: the resume test's determinism
        if device == "cpu":
            env["CUDA_VISIBLE_DEVICES"] = ""
        return env

    def step(self, name: str, work):
        started = time.monotonic()
        try:
            if self.seconds_left() < 5:
                raise TimeoutError("not run: the check's --budget-minutes were spent")
            value = work()
            self.results[name] = {"ok": True, **(value if isinstance(value, dict) else {"value": value})}
        except Exception as err:  # a failed step is recorded, and the next ones still run
            self.results[name] = {"ok": False, "error": f"{type(err).__name__}: {err}"}
            value = None
        self.results[name]["seconds"] = round(time.monotonic() - started, 1)
        self.write()
        return value

    def seconds_left(self) -> float:
        return self.deadline - time.monotonic()

    def run(self, command: list[str], env: dict[str, str], cap: float) -> subprocess.CompletedProcess:
        """`command` in its own process group, stopped with all its children (torchrun's workers, the
        bench's) at `cap` seconds or the check's deadline, whichever comes first."""
        timeout = max(1.0, min(cap, self.seconds_left()))
        self.log.write(f"\n$ {' '.join(command)}\n")
        self.log.flush()
        process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                   text=True, start_new_session=True)
        try:
            stdout, stderr = process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            stdout, stderr = _stop_group(process)
            self.log.write(stdout + stderr + f"\n(stopped after {timeout:.0f} s)\n")
            self.log.flush()
            raise subprocess.TimeoutExpired(command, timeout) from None
        self.log.write(stdout + stderr)
        self.log.flush()
        return subprocess.CompletedProcess(command, process.returncode, stdout, stderr)

    def tests(self, env: dict[str, str], device: str) -> dict:
        """On CUDA every test of tests/test_cuda.py must run and pass (none skipped, none missing); on
        --device cpu they all skip, and that is the plumbing checked."""
        result = self.run([sys.executable, "-m", "pytest", "-q", "-rA", "-p", "no:cacheprovider",
                           "tests/test_cuda.py"], env, TESTS_SECONDS)
        counts = {kind: int(n) for n, kind in re.findall(r"(\d+) (passed|failed|skipped|errors?)", result.stdout)}
        bad = counts.get("failed") or counts.get("error") or counts.get("errors")
        if device == "cuda" and (bad or counts.get("skipped") or not counts.get("passed") or result.returncode):
            raise RuntimeError(f"tests/test_cuda.py: every CUDA test must run and pass, got {counts or result.stdout[-500:]}")
        if device == "cpu" and (bad or result.returncode not in (0, 5)):
            raise RuntimeError(f"tests/test_cuda.py: {counts or result.stdout[-500:]}")
        return counts

    @staticmethod
    def matmul_peak(device: str, sizes: tuple[int, ...]) -> dict:
        """bf16 TFLOP/s of size^3 matrix products, the best of 10 after warm-up at the best size, and
        the datasheet's dense bf16 peak where the GPU is one we know."""
        import torch

        best = max(_matmul_tflops(device, size) for size in sizes)
        name = torch.cuda.get_device_name() if device == "cuda" else "cpu"
        datasheet = next((tflops for part, tflops in DATASHEET_BF16_TFLOPS if part in name), None)
        return {"value": best, "device_name": name, "sizes": list(sizes), "datasheet_bf16_tflops": datasheet}

    def training(self, env: dict[str, str], device: str, minutes: float, smoke: bool, peak: dict | None) -> dict:
        from transformer_mt.data import sample_corpus_path

        config = "configs/tiny.yaml" if smoke else "configs/base.yaml"
        overrides = [f"run.root={self.out / 'runs'}", "run.name=check", "data.source=files",
                     f"data.files=[{sample_corpus_path()}]", f"train.device={device}", f"train.max_minutes={minutes}",
                     "train.max_steps=null", f"train.log_every={2 if smoke else 20}", "train.valid_every=100000",
                     "train.resume=false"]  # smoke: seconds of training on a busy CPU still log a rate
        if not smoke:
            overrides += ["train.precision=bf16", "train.batch_tokens=12000", "train.warmup_steps=400",
                          "train.valid_max_sentences=300"]
        result = self.run([sys.executable, "scripts/train.py", config, *overrides], env,
                          minutes * 60 + TRAINING_STARTUP_SECONDS)
        if result.returncode != 0:
            raise RuntimeError((result.stderr.strip().splitlines() or ["train.py failed"])[-1])
        return self._training_figures(self.out / "runs" / "check", peak)

    @staticmethod
    def _training_figures(run: Path, peak: dict | None) -> dict:
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
            figures["mfu_vs_measured_bf16_peak"] = tokens_per_second * flops / (peak["value"] * 1e12)
            if peak["datasheet_bf16_tflops"]:
                figures["mfu_vs_datasheet_bf16_peak"] = tokens_per_second * flops / (peak["datasheet_bf16_tflops"] * 1e12)
        return figures

    def bench(self, env: dict[str, str], device: str, seconds: int) -> dict:
        """scripts/bench.py until `seconds`; stopped there, its figures so far (bench.json, complete false)."""
        output = self.out / "bench.json"
        if self.results["missing_for_bench_peer"]:
            raise RuntimeError(f"the bench's peer needs {self.results['missing_for_bench_peer']}: add its wheel "
                               "to .whl/ (docs/gpu-check.md)")
        stopped = None
        try:
            result = self.run([sys.executable, "scripts/bench.py", "--device", device, "--train-minutes", "0",
                               "--output", str(output)], env, seconds)
            if result.returncode != 0:
                raise RuntimeError((result.stderr.strip().splitlines() or ["bench.py failed"])[-1])
        except subprocess.TimeoutExpired as err:
            stopped = f"stopped at its cap of {err.timeout:.0f} s"
        if not output.is_file():
            raise RuntimeError(f"bench.py wrote no figures ({stopped or 'no output'})")
        report = json.loads(output.read_text())
        return {"complete": report.get("complete", False), "stopped": stopped, "ratios": report.get("ratios", {}),
                "matmul_gflops": report.get("matmul_gflops", {})}

    def fail(self, message: str) -> None:
        self.results["error"] = message
        self.write()
        print(f"error: {message}", file=sys.stderr)

    def write(self) -> None:
        (self.out / "results.json").write_text(json.dumps(self.results, indent=1))


def _matmul_tflops(device: str, size: int) -> float:
    import torch

    a, b = (torch.randn(size, size, device=device, dtype=torch.bfloat16) for _ in range(2))
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    best = float("inf")
    for repeat in range(13):
        sync()
        started = time.perf_counter()
        a @ b
        sync()
        if repeat >= 3:
            best = min(best, time.perf_counter() - started)
    return 2 * size**3 / best / 1e12


def _stop_group(process: subprocess.Popen) -> tuple[str, str]:
    """SIGTERM to the process's whole group (it may save or write what it has), SIGKILL 10 s later."""
    for sig, grace in ((signal.SIGTERM, 10), (signal.SIGKILL, 10)):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, sig)
        try:
            return process.communicate(timeout=grace)
        except subprocess.TimeoutExpired:
            continue
    return "", ""


def wheels_to_install(wheels: Path) -> list[Path]:
    """The wheels in `wheels` whose distribution the machine does not have: a stray numpy or torch
    wheel never shadows the machine's own."""
    return [w for w in sorted(wheels.glob("*.whl")) if not _installed(_wheel_distribution(w))]


def _installed(distribution: str) -> bool:
    try:
        importlib.metadata.distribution(distribution)
        return True
    except importlib.metadata.PackageNotFoundError:
        return False


def _wheel_distribution(wheel: Path) -> str:
    """The distribution a wheel holds: its file name up to the first '-' (PEP 427)."""
    return wheel.name.split("-", 1)[0]


def _split(paths: str | None) -> list[str]:
    return [p for p in (paths or "").split(os.pathsep) if p]


if __name__ == "__main__":
    sys.exit(main())
