import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from transformer_mt.benchmark import gpu_check
from transformer_mt.benchmark.gpu_check import Check, CheckOptions

ROOT = Path(__file__).resolve().parents[2]


def run_script(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "scripts/check_gpu.py", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout)


def test_the_check_runs_every_step_and_writes_its_figures(tmp_path):
    """On a CPU, with the tiny config: the plumbing of make check-gpu (the CUDA tests themselves skip)."""
    result = run_script("--device", "cpu", "--smoke", "--minutes", "0.1", "--stages", "tests,matmul,training",
                        "--output", str(tmp_path))
    assert result.returncode == 0, result.stderr[-3000:]
    results = json.loads((tmp_path / "results.json").read_text())
    # --device cpu hides any GPU, so the CUDA tests skip on every machine, as on one without a GPU.
    assert results["tests"]["ok"] and results["tests"]["skipped"] > 0 and not results["tests"].get("passed")
    assert results["missing_packages"] == [] and results["matmul"]["value"] > 0
    environment = results["environment"]
    assert environment["torch"] == torch.__version__
    assert environment["python"] == ".".join(map(str, sys.version_info[:3]))
    assert set(environment["attention_kernels"]) == {"default", "flash_efficient"}
    training = results["training"]
    assert training["ok"] and set(training["variants"]) == {"default", "flash_efficient"}
    assert training["variants"]["flash_efficient"]["sdpa_backends"] == ["flash", "efficient"]
    for figures in training["variants"].values():
        assert figures["complete"] and figures["steps"] > 0 and figures["target_tokens_per_second"] > 0
        assert 0 < figures["mfu_vs_measured_bf16_peak"] and figures["valid_bleu"] is not None
    assert training["faster_attention"] in training["variants"] and training["flash_efficient_vs_default"] > 0
    # Only small files come back: the events of each variant, never the run folder or its checkpoints.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["events", "log.txt", "results.json"]
    assert all(len(list((tmp_path / "events" / name).glob("events.out.tfevents.*"))) == 1
               for name in ("default", "flash_efficient"))
    log = (tmp_path / "log.txt").read_text()
    assert "scripts/train.py configs/tiny.yaml" in log and "train.sdpa_backends=[flash,efficient]" in log
    assert "train.checkpoint_every=1000000" in log and "train.max_epochs=null" in log


def test_one_stage_reruns_with_the_pytest_arguments_given(tmp_path):
    result = run_script("--device", "cpu", "--smoke", "--stages", "tests", "--pytest-args", "-k nccl",
                        "--output", str(tmp_path))
    assert result.returncode == 0, result.stderr[-3000:]
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["stages"] == ["tests"] and "training" not in results and "matmul" not in results
    assert results["tests"]["skipped"] == 1 and "-k nccl" in (tmp_path / "log.txt").read_text()


def test_a_training_stopped_at_its_cap_keeps_the_figures_its_events_hold(tmp_path, monkeypatch):
    """The run is stopped after writing events (as a cap stops it): the figures are read all the same,
    marked incomplete, and the stage is not ok."""
    real_run = Check.run

    def capped(self, command, env, cap):
        real_run(self, command, env, cap)
        if "scripts/train.py" in command:
            raise subprocess.TimeoutExpired(command, 42)

    monkeypatch.setattr(Check, "run", capped)
    options = CheckOptions(tmp_path / "out", ("training",), minutes=0.05, device="cpu", smoke=True)
    status, results = gpu_check.run_check(options)
    training = results["training"]
    assert status == 1 and not training["ok"] and "stopped at its cap of 42 s" in training["error"]
    for figures in training["variants"].values():
        assert figures["complete"] is False and figures["steps"] > 0 and figures["target_tokens_per_second"] > 0


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message given where there is no GPU")
def test_without_a_gpu_the_check_says_so_in_one_line(tmp_path):
    result = run_script("--output", str(tmp_path), timeout=120)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == ["error: no CUDA GPU is visible: run this on a machine with one "
                                                  "(or --device cpu --smoke)"]


@pytest.mark.parametrize("flags", [["--stages", "tests,lunch"], ["--stages", ","], ["--minutes", "0"]])
def test_bad_flags_are_refused_before_anything_runs(tmp_path, flags):
    result = run_script("--output", str(tmp_path / "out"), *flags, timeout=60)
    assert result.returncode == 2 and result.stderr.strip().splitlines()[-1].startswith("check_gpu.py: error:")
    assert not (tmp_path / "out").exists()


def test_the_check_module_imports_only_the_standard_library():
    """It runs before anything is known to be installed."""
    probe = ("import sys; import transformer_mt.benchmark.gpu_check; "
             "print(sorted(m for m in ('torch', 'numpy', 'yaml', 'tensorboard', 'tokenizers') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.stdout.strip() == "[]", result.stderr


def _alive(pid: int) -> bool:
    """Running, or stopped but not yet reaped by whoever adopted it (a zombie counts as ended)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


@pytest.mark.parametrize("cap, budget", [(2, 60), (100, 2)], ids=["its own cap", "the check's deadline"])
@pytest.mark.parametrize("own_session", [False, True], ids=["same group", "own session (torchrun's workers)"])
def test_a_stage_past_its_cap_is_stopped_with_every_process_it_started(tmp_path, cap, budget, own_session):
    check = Check(CheckOptions(tmp_path, budget_minutes=budget / 60), tmp_path)
    stage = ("import subprocess, sys, time; child = subprocess.Popen([sys.executable, '-c', 'import time; "
             f"time.sleep(120)'], start_new_session={own_session}); print('child', child.pid, flush=True); "
             "time.sleep(120)")
    started = time.monotonic()
    with pytest.raises(subprocess.TimeoutExpired):
        check.run([sys.executable, "-c", stage], dict(os.environ), cap)
    assert time.monotonic() - started < 20
    child = int(re.search(r"child (\d+)", (tmp_path / "log.txt").read_text()).group(1))
    deadline = time.monotonic() + 5
    while _alive(child) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _alive(child)


def test_only_wheels_of_distributions_the_machine_lacks_are_chosen(tmp_path):
    for name in ("numpy-9.9-cp312-cp312-manylinux2014_x86_64.whl", "torch-9.9-cp312-none-any.whl",
                 "no_such_distribution_xyz-1.0-py3-none-any.whl", "PyYAML-9.9-py3-none-any.whl"):
        (tmp_path / name).write_bytes(b"")
    assert [w.name for w in gpu_check.wheels_to_install(tmp_path)] == ["no_such_distribution_xyz-1.0-py3-none-any.whl"]


def test_the_stages_keep_the_pythonpath_they_were_given_after_this_checkout(tmp_path, monkeypatch):
    monkeypatch.setattr(sys, "path", list(sys.path))
    monkeypatch.setenv("PYTHONPATH", "/opt/wheels-of-the-machine")
    check = Check(CheckOptions(tmp_path, wheels=tmp_path / "no-wheels"), tmp_path)
    env = check.environment()
    assert env["PYTHONPATH"].split(os.pathsep) == [str(ROOT), "/opt/wheels-of-the-machine"]
    assert env["CUBLAS_WORKSPACE_CONFIG"] == ":4096:8" and env["NCCL_DEBUG"] == "WARN"
    assert "CUDA_VISIBLE_DEVICES" not in env and check.results["wheels_installed"] == []


def test_the_datasheet_peak_is_found_by_the_device_name():
    peak = gpu_check.datasheet_bf16_tflops
    assert peak("NVIDIA H100 80GB HBM3") == 989.0 and peak("NVIDIA H100 PCIe") == 756.0
    assert peak("NVIDIA A100-SXM4-80GB") == 312.0 and peak("NVIDIA L40S") == 362.0 and peak("NVIDIA L4") == 121.0
    assert peak("NVIDIA A10") == 125.0 and peak("NVIDIA H200") == 989.0 and peak("Tesla T4") is None
