import json
import subprocess
import sys
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
    assert results["tests"]["ok"] and results["tests"]["skipped"] > 0 and results["missing_packages"] == []
    assert results["matmul"]["value"] > 0
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
