import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_smoke_run_times_every_decoder_at_both_sizes(tmp_path):
    output = tmp_path / "bench-deploy.json"
    result = subprocess.run([sys.executable, "scripts/bench_deploy.py", "--smoke", "--run", "", "--output",
                             str(output)], cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(output.read_text())
    for size in ("bench", "base"):
        for search in ("greedy", "beam4"):
            for system in ("ours", "peer", "ct2_float32", "ct2_int8"):
                assert report[size][f"{search}_{system}"]["tokens_per_second"]["median"] > 0
        assert report[size]["ratios"]["beam4_ct2_int8_vs_generate"] > 0
    assert "| ct2_int8 |" in result.stdout
