import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_bench_smoke_run_writes_json_with_ratios(tmp_path):
    output = tmp_path / "bench.json"
    result = subprocess.run([sys.executable, "scripts/bench.py", "--smoke", "--output", str(output)], cwd=ROOT,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(output.read_text())
    assert {"train_same_batches_fp32", "train_same_batches_bf16", "train_own_batching_bf16", "greedy_fp32",
            "beam4_fp32", "beam4_bf16", "cached_vs_uncached", "mfu_bf16"} <= report["ratios"].keys()
    assert {"greedy", "beam4"} <= report["quality"].keys()
    for figure in report["train"].values():
        assert figure["tokens_per_sec"]["min"] <= figure["tokens_per_sec"]["median"] <= figure["tokens_per_sec"]["max"]
    assert report["padding"]["bucketed_batches"] < report["padding"]["random_batches"]
    assert "| ratio (medians) | value |" in result.stdout
