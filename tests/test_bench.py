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
    assert {"cached_vs_uncached", "cached_vs_uncached_greedy", "padding_random_vs_bucketed"} <= report["ratios"].keys()
    for figure in report["train"].values():
        assert figure["tokens_per_sec"]["min"] <= figure["tokens_per_sec"]["median"] <= figure["tokens_per_sec"]["max"]
    assert report["padding"]["bucketed_batches"] < report["padding"]["random_batches"]
    assert "| ratio | value |" in result.stdout
