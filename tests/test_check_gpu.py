import importlib.util
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent


def test_the_check_runs_every_step_and_writes_its_figures(tmp_path):
    """On a CPU, with the tiny config: the plumbing of make check-gpu (the CUDA tests themselves skip)."""
    result = subprocess.run([sys.executable, "scripts/check_gpu.py", "--device", "cpu", "--smoke", "--minutes", "0.1",
                             "--bench-seconds", "0", "--output", str(tmp_path)], cwd=ROOT, capture_output=True,
                            text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    results = json.loads((tmp_path / "results.json").read_text())
    # --device cpu hides any GPU, so the CUDA tests skip on every machine, as on one without a GPU.
    assert results["tests"]["ok"] and results["tests"]["skipped"] > 0 and not results["tests"].get("passed")
    assert results["missing_packages"] == [] and results["matmul"]["value"] > 0
    training = results["training"]
    assert training["ok"] and training["steps"] > 0 and training["target_tokens_per_second"] > 0
    assert 0 < training["mfu_vs_measured_bf16_peak"] and training["valid_bleu"] is not None
    assert "scripts/train.py configs/tiny.yaml" in (tmp_path / "log.txt").read_text()


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message given where there is no GPU")
def test_without_a_gpu_the_check_says_so_in_one_line(tmp_path):
    result = subprocess.run([sys.executable, "scripts/check_gpu.py", "--output", str(tmp_path)], cwd=ROOT,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == ["error: no CUDA GPU is visible: run this on a machine with one "
                                                  "(or --device cpu --smoke)"]


def check_module():
    spec = importlib.util.spec_from_file_location("check_gpu", ROOT / "scripts" / "check_gpu.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _alive(pid: int) -> bool:
    """Running, or stopped but not yet reaped by whoever adopted it (a zombie counts as ended)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


@pytest.mark.parametrize("cap, budget", [(2, 60), (100, 2)], ids=["its own cap", "the check's deadline"])
def test_a_stage_past_its_cap_is_stopped_with_every_process_it_started(tmp_path, cap, budget):
    check = check_module().Check(tmp_path, time.monotonic() + budget)
    stage = ("import subprocess, sys, time; child = subprocess.Popen([sys.executable, '-c', 'import time; "
             "time.sleep(120)']); print('child', child.pid, flush=True); time.sleep(120)")
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
    module = check_module()
    for name in ("numpy-9.9-cp312-cp312-manylinux2014_x86_64.whl", "torch-9.9-cp312-none-any.whl",
                 "no_such_distribution_xyz-1.0-py3-none-any.whl", "PyYAML-9.9-py3-none-any.whl"):
        (tmp_path / name).write_bytes(b"")
    assert [w.name for w in module.wheels_to_install(tmp_path)] == ["no_such_distribution_xyz-1.0-py3-none-any.whl"]


def test_the_stages_keep_the_pythonpath_they_were_given_after_this_checkout(tmp_path, monkeypatch):
    module = check_module()
    monkeypatch.setattr(sys, "path", list(sys.path))
    monkeypatch.setenv("PYTHONPATH", "/opt/wheels-of-the-machine")
    env = module.Check(tmp_path, time.monotonic() + 60).environment(tmp_path / "no-wheels", "cuda")
    assert env["PYTHONPATH"].split(os.pathsep) == [str(ROOT), "/opt/wheels-of-the-machine"]
    assert env["CUBLAS_WORKSPACE_CONFIG"] == ":4096:8" and "CUDA_VISIBLE_DEVICES" not in env


def test_the_datasheet_peak_is_found_by_the_device_name():
    table = check_module().DATASHEET_BF16_TFLOPS
    peak = lambda name: next((tflops for part, tflops in table if part in name), None)  # noqa: E731
    assert peak("NVIDIA H100 80GB HBM3") == 989.0 and peak("NVIDIA H100 PCIe") == 756.0
    assert peak("NVIDIA A100-SXM4-80GB") == 312.0 and peak("NVIDIA L40S") == 362.0 and peak("NVIDIA L4") == 121.0
    assert peak("NVIDIA A10") == 125.0 and peak("NVIDIA H200") == 989.0 and peak("Tesla T4") is None
