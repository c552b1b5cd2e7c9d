"""`make check-gpu`: the CUDA paths checked on a machine with a GPU and no network (docs/gpu-check.md).

Stages, each capped, all within the check's budget: the CUDA tests; the GPU's bf16 matmul peak;
Transformer-base training on the embedded sample, once with PyTorch's own attention dispatch and once
with the flash and memory-efficient kernels only; scripts/bench.py --device cuda. Results go to the
output folder as each stage ends (results.json, log.txt, bench.json, events/); run folders and
wheels go to a scratch folder that is removed at the end.

Only the standard library is imported at module level: this runs before anything is known to be
installed, with whatever PyTorch the machine has.
"""
from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from .machine import ROOT, run_bounded

STAGES = ("tests", "matmul", "training", "bench")
# Import name → distribution: what the check needs, and what the bench's peer needs.
NEEDED = {"torch": "torch", "numpy": "numpy", "tokenizers": "tokenizers", "yaml": "PyYAML", "tqdm": "tqdm",
          "tensorboard": "tensorboard", "torchmetrics": "torchmetrics", "pytest": "pytest"}
BENCH_NEEDS = {"transformers": "transformers"}
TESTS_SECONDS, BENCH_SECONDS_MAX = 150, 120
# A training variant's cap beyond its --minutes: imports, and the corpus's preparation the first time.
STARTUP_SECONDS = {"first": 75, "again": 45}
# The attention kernels the training stage times: PyTorch's own dispatch (cuDNN first on Hopper in
# recent builds), and flash + memory-efficient only (train.sdpa_backends).
ATTENTION_VARIANTS = {"default": None, "flash_efficient": ["flash", "efficient"]}
# Dense bf16 tensor-core TFLOP/s from NVIDIA's datasheets (without sparsity), by a part of the name
# torch.cuda.get_device_name gives; the first match wins (so "H100 PCIe" before "H100").
DATASHEET_BF16_TFLOPS = (("H100 PCIe", 756.0), ("H100 NVL", 835.0), ("GH200", 989.0), ("H200", 989.0),
                         ("H100", 989.0), ("A100", 312.0), ("L40S", 362.0), ("L40", 181.0), ("L4", 121.0),
                         ("A10", 125.0))
# What the events file records of a run (train.py's Report), copied back beside results.json.
EVENTS_GLOB = "events.out.tfevents.*"


@dataclass
class CheckOptions:
    output: Path
    stages: tuple[str, ...] = STAGES
    minutes: float = 0.75  # training time of each attention variant
    bench_seconds: int = 60
    budget_minutes: float = 6.0
    wheels: Path = ROOT / ".whl"
    device: str = "cuda"
    smoke: bool = False  # configs/tiny.yaml for seconds, matmuls of 512 (with device cpu)
    pytest_args: list[str] = field(default_factory=list)


def datasheet_bf16_tflops(device_name: str) -> float | None:
    return next((tflops for part, tflops in DATASHEET_BF16_TFLOPS if part in device_name), None)


def run_check(options: CheckOptions) -> tuple[int, dict]:
    """The exit status (0: every stage run passed; 1: one failed; 2: the check could not start) and
    the results as written to results.json."""
    options.output.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="check-gpu-") as scratch:
        check = Check(options, Path(scratch))
        try:
            return check.run_stages(), check.results
        except CheckError as err:
            check.fail(str(err))
            return 2, check.results
        finally:
            check.close()


class CheckError(Exception):
    """The check cannot run here at all (no GPU, a package missing): one line."""


class Check:
    def __init__(self, options: CheckOptions, scratch: Path):
        self.options, self.out, self.scratch = options, options.output.resolve(), scratch
        self.deadline = time.monotonic() + options.budget_minutes * 60
        self.results: dict = {"started": time.strftime("%Y-%m-%d %H:%M:%S"), "stages": list(options.stages)}
        self.log = open(self.out / "log.txt", "w", encoding="utf-8")

    def run_stages(self) -> int:
        env = self.environment()
        import torch

        if self.options.device == "cuda" and not torch.cuda.is_available():
            raise CheckError("no CUDA GPU is visible: run this on a machine with one (or --device cpu --smoke)")
        self.results["environment"] = describe(self.options.device)
        self.write()
        stages: dict[str, Callable[[], object]] = {
            "tests": lambda: self.tests(env), "matmul": self.matmul_peak,
            "training": lambda: self.training(env), "bench": lambda: self.bench(env)}
        for name in self.options.stages:
            self.step(name, stages[name])
        return 0 if all(self.results[name].get("ok") for name in self.options.stages) else 1

    def environment(self) -> dict[str, str]:
        """The environment of every stage: this checkout first on PYTHONPATH (before what was there),
        then, only if the machine lacks a distribution, a scratch site with the wheels of those it
        lacks. On --device cpu the GPU is hidden, so that the CUDA tests skip as on a machine without one."""
        paths = [str(ROOT)]
        lacking = [dist for dist in {**NEEDED, **BENCH_NEEDS}.values() if not _installed(dist)]
        chosen = wheels_to_install(self.options.wheels) if lacking else []
        if chosen:
            site = self.scratch / "site"
            self.run([sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps", "--no-compile",
                      "--target", str(site), *map(str, chosen)], dict(os.environ), 120)
            paths.append(str(site))
        self.results["wheels_installed"] = [w.name for w in chosen]
        sys.path[:0] = paths
        importlib.invalidate_caches()
        self.results["missing_packages"] = [name for name in NEEDED if importlib.util.find_spec(name) is None]
        self.results["missing_for_bench_peer"] = [n for n in BENCH_NEEDS if importlib.util.find_spec(n) is None]
        if self.results["missing_packages"]:
            raise CheckError(f"missing Python packages {self.results['missing_packages']}: pip download their "
                             "wheels into .whl/ first (docs/gpu-check.md)")
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(paths + _split(os.environ.get("PYTHONPATH"))),
               "PYTHONUNBUFFERED": "1", "NCCL_DEBUG": "WARN",  # a hung collective leaves a reason in log.txt
               "CUBLAS_WORKSPACE_CONFIG": ":4096:8"}  # read when cuBLAS starts: the resume test's determinism
        if self.options.device == "cpu":
            env["CUDA_VISIBLE_DEVICES"] = ""
        return env

    def step(self, name: str, work: Callable[[], object]) -> object:
        """`work`'s figures under results[name], ok or not; a failure is recorded and the next stage runs."""
        started = time.monotonic()
        try:
            if self.seconds_left() < 5:
                raise TimeoutError("not run: the check's --budget-minutes were spent")
            value = work()
            figures = value if isinstance(value, dict) else {"value": value}
            self.results[name] = {"ok": figures.get("complete", True) is not False, **figures}
        except Exception as err:  # noqa: BLE001 - any failure is a finding to record, not a crash
            self.results[name] = {"ok": False, **getattr(err, "figures", {}), "error": f"{type(err).__name__}: {err}"}
            value = None
        self.results[name]["seconds"] = round(time.monotonic() - started, 1)
        self.write()
        return value

    def seconds_left(self) -> float:
        return self.deadline - time.monotonic()

    def run(self, command: list[str], env: dict[str, str], cap: float) -> subprocess.CompletedProcess:
        """`command`, stopped with every process it started (torchrun's workers too) at `cap` seconds
        or the check's deadline, whichever comes first."""
        timeout = max(1.0, min(cap, self.seconds_left()))
        self._log(f"\n$ {' '.join(command)}\n")
        try:
            result = run_bounded(command, timeout, cwd=ROOT, env=env)
        except subprocess.TimeoutExpired as err:
            self._log((err.stdout or "") + (err.stderr or "") + f"\n(stopped after {timeout:.0f} s)\n")
            raise subprocess.TimeoutExpired(command, timeout) from None
        self._log(result.stdout + result.stderr)
        return result

    def tests(self, env: dict[str, str]) -> dict:
        """On CUDA every test of tests/test_cuda.py (or those --pytest-args select) must run and pass;
        on --device cpu they all skip, and that is the plumbing checked."""
        result = self.run([sys.executable, "-m", "pytest", "-q", "-rA", "-p", "no:cacheprovider",
                           "tests/test_cuda.py", *self.options.pytest_args], env, TESTS_SECONDS)
        counts = {kind: int(n) for n, kind in re.findall(r"(\d+) (passed|failed|skipped|errors?)", result.stdout)}
        bad = counts.get("failed") or counts.get("error") or counts.get("errors")
        if self.options.device == "cuda" and (bad or counts.get("skipped") or not counts.get("passed")
                                              or result.returncode):
            raise RuntimeError(f"tests/test_cuda.py: every CUDA test must run and pass, got "
                               f"{counts or result.stdout[-500:]}")
        if self.options.device == "cpu" and (bad or result.returncode not in (0, 5)):
            raise RuntimeError(f"tests/test_cuda.py: {counts or result.stdout[-500:]}")
        return counts

    def matmul_peak(self) -> dict:
        """bf16 TFLOP/s of size^3 matrix products, the best of 10 after warm-up, at the best size."""
        sizes = (512,) if self.options.smoke else (8192, 16384)
        best = max(_matmul_tflops(self.options.device, size) for size in sizes)
        return {"value": best, "sizes": list(sizes)}

    def training(self, env: dict[str, str]) -> dict:
        """Each attention variant trained for --minutes in one run folder (the second reuses the
        prepared corpus); the figures of each, and which was faster."""
        variants, problems = {}, []
        for index, (name, backends) in enumerate(ATTENTION_VARIANTS.items()):
            try:
                variants[name] = self.train_variant(env, name, backends, "first" if index == 0 else "again")
            except VariantError as err:
                variants[name] = err.figures
                problems.append(f"{name}: {err}")
            self.results["training"] = {"variants": variants}
            self.write()
        figures = training_summary(variants)
        if problems:
            raise StageError("; ".join(problems), figures)
        return figures

    def train_variant(self, env: dict[str, str], name: str, backends: list[str] | None, start: str) -> dict:
        run = self.scratch / "runs" / "check"
        shutil.rmtree(run / "checkpoints", ignore_errors=True)  # the previous variant's: a fresh run, same corpus
        overrides = training_overrides(self.scratch / "runs", self.options, backends)
        stopped = None
        try:
            result = self.run([sys.executable, "scripts/train.py", self._training_config(), *overrides], env,
                              self.options.minutes * 60 + STARTUP_SECONDS[start])
            if result.returncode != 0:
                stopped = (result.stderr.strip().splitlines() or ["train.py failed"])[-1]
        except subprocess.TimeoutExpired as err:
            stopped = f"stopped at its cap of {err.timeout:.0f} s"
        events = self.out / "events" / name
        _move_events(run, events)
        try:
            figures = training_figures(events, run, self.results.get("matmul", {}).get("value"),
                                       self.results.get("environment", {}).get("datasheet_bf16_tflops"))
        except Exception as err:  # noqa: BLE001 - no events or no prepared corpus: nothing measured
            raise VariantError(stopped or f"no figures ({type(err).__name__}: {err})", {"complete": False}) from None
        figures.update(sdpa_backends=backends, complete=stopped is None)
        if stopped:
            raise VariantError(stopped, {**figures, "stopped": stopped})
        return figures

    def _training_config(self) -> str:
        return "configs/tiny.yaml" if self.options.smoke else "configs/base.yaml"

    def bench(self, env: dict[str, str]) -> dict:
        """scripts/bench.py until its cap; stopped there, its figures so far (bench.json, complete false)."""
        output = self.out / "bench.json"
        if self.results["missing_for_bench_peer"]:
            raise RuntimeError(f"the bench's peer needs {self.results['missing_for_bench_peer']}: add its wheel "
                               "to .whl/ (docs/gpu-check.md)")
        stopped = None
        try:
            result = self.run([sys.executable, "scripts/bench.py", "--device", self.options.device,
                               "--train-minutes", "0", "--output", str(output)], env,
                              min(self.options.bench_seconds, BENCH_SECONDS_MAX))
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

    def write(self) -> None:
        (self.out / "results.json").write_text(json.dumps(self.results, indent=1))

    def close(self) -> None:
        self.write()
        self.log.close()

    def _log(self, text: str) -> None:
        self.log.write(text)
        self.log.flush()


class StageError(RuntimeError):
    """A stage that failed with figures worth keeping (a training stopped at its cap)."""

    def __init__(self, message: str, figures: dict):
        super().__init__(message)
        self.figures = figures


class VariantError(StageError):
    pass


def training_overrides(runs: Path, options: CheckOptions, backends: list[str] | None) -> list[str]:
    """configs/base.yaml (or tiny.yaml) on the embedded sample for --minutes: no periodic checkpoint
    (each of Transformer-base's is 0.7 GB, fsynced), no early end, the attention kernels named."""
    from transformer_mt.data.corpus import sample_corpus_path

    overrides = [f"run.root={runs}", "run.name=check", "data.source=files", f"data.files=[{sample_corpus_path()}]",
                 f"train.device={options.device}", f"train.max_minutes={options.minutes}", "train.max_steps=null",
                 "train.max_epochs=null", "train.patience=null", "train.checkpoint_every=1000000",
                 "train.keep_last=1", f"train.log_every={2 if options.smoke else 20}", "train.valid_every=1000000",
                 "train.resume=false", "train.collective_timeout_s=120",
                 f"train.sdpa_backends={'[' + ','.join(backends) + ']' if backends else 'null'}"]
    if not options.smoke:  # smoke: seconds of training on a busy CPU still log a rate every 2 steps
        overrides += ["train.precision=bf16", "train.batch_tokens=12000", "train.warmup_steps=400",
                      "train.valid_max_sentences=300"]
    return overrides


def training_figures(events: Path, run: Path, measured_tflops: float | None, datasheet_tflops: float | None) -> dict:
    """What a run's events say, whether it finished or was stopped: the median logged target tokens/s
    (the first window, with its warm-up, left out), FLOPs per token from the corpus's mean lengths,
    MFU against the measured and the datasheet's bf16 peaks, peak GPU memory, steps, validation BLEU."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from transformer_mt.benchmark.flops import training_flops_per_token
    from transformer_mt.config import load_config
    from transformer_mt.data.store import open_store, read_manifest
    from transformer_mt.data.tokenizer import Tokenizer

    accumulated = EventAccumulator(str(events)).Reload()
    scalars = {tag: [(e.step, e.value) for e in accumulated.Scalars(tag)] for tag in accumulated.Tags()["scalars"]}
    rates = [value for _, value in scalars.get("train/tokens_per_sec", [])]
    if not rates:
        raise ValueError(f"no tokens/s logged in {events}")
    rates = sorted(rates[1:] or rates)
    config = load_config(run / "config.yaml")
    store = open_store(run / "data" / "train", read_manifest(run / "data" / "train"))
    src_len, tgt_len = (offsets[-1] / len(store) + 1 for offsets in (store.src_offsets, store.tgt_offsets))
    vocab = Tokenizer.load(run / "tokenizer-tgt.json").vocab_size
    flops = training_flops_per_token(config.model, vocab, float(src_len), float(tgt_len))
    tokens_per_second = rates[len(rates) // 2]
    figures = {"target_tokens_per_second": tokens_per_second, "training_flops_per_token": flops,
               "steps": max((step for step, _ in scalars.get("train/loss", [])), default=0),
               "valid_bleu": (scalars.get("valid/bleu") or [(0, None)])[-1][1],
               "peak_gpu_memory_gb": max((v for _, v in scalars.get("train/gpu_memory_gb", [])), default=0.0)}
    for key, tflops in (("mfu_vs_measured_bf16_peak", measured_tflops),
                        ("mfu_vs_datasheet_bf16_peak", datasheet_tflops)):
        if tflops:
            figures[key] = tokens_per_second * flops / (tflops * 1e12)
    return figures


def training_summary(variants: dict[str, dict]) -> dict:
    """The faster variant's figures at the top, beside every variant's and their speed ratio."""
    timed = {name: v for name, v in variants.items() if v.get("target_tokens_per_second")}
    summary: dict = {"variants": variants}
    if timed:
        faster = max(timed, key=lambda name: timed[name]["target_tokens_per_second"])
        summary.update({k: v for k, v in timed[faster].items() if k != "sdpa_backends"}, faster_attention=faster)
    if len(timed) == len(ATTENTION_VARIANTS):
        summary["flash_efficient_vs_default"] = (timed["flash_efficient"]["target_tokens_per_second"]
                                                 / timed["default"]["target_tokens_per_second"])
    return summary


def describe(device: str) -> dict:
    """What the figures were measured with: Python, PyTorch, CUDA, cuDNN, the driver, the GPU, and the
    SDPA kernel each attention call of a Transformer-base batch (12k tokens) runs under each variant."""
    import torch

    from transformer_mt.model.device import attention_kernels_chosen

    facts = {"python": platform.python_version(), "torch": torch.__version__, "cuda": torch.version.cuda,
             "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
             "device_name": "cpu", "datasheet_bf16_tflops": None}
    if device == "cuda":
        properties = torch.cuda.get_device_properties(0)
        facts.update(device_name=properties.name, gpu_memory_gb=round(properties.total_memory / 2**30, 1),
                     driver=_driver_version(), datasheet_bf16_tflops=datasheet_bf16_tflops(properties.name))
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    facts["attention_kernels"] = {name: attention_kernels_chosen(torch.device(device), dtype, 8, 64, 384, 30, 32,
                                                                 backends)
                                  for name, backends in ATTENTION_VARIANTS.items()}
    return facts


def _driver_version() -> str | None:
    """The NVIDIA driver's version, from the kernel module or nvidia-smi, whichever answers."""
    version_file = Path("/proc/driver/nvidia/version")
    if version_file.is_file():
        found = re.search(r"Kernel Module\s+(\S+)", version_file.read_text())
        if found:
            return found.group(1)
    try:
        answer = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                                capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return answer.stdout.strip().splitlines()[0] if answer.returncode == 0 and answer.stdout.strip() else None


def _move_events(run: Path, target: Path) -> None:
    """A variant's events files, out of the shared run folder (the next variant writes its own there)
    into the results folder, which is what comes back from a lent machine."""
    target.mkdir(parents=True, exist_ok=True)
    for events in run.glob(EVENTS_GLOB):
        shutil.move(str(events), target / events.name)


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
