import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
import bench_data  # noqa: E402


def test_synthetic_corpus_joins_two_sample_pairs_per_line_without_repeating_a_choice(tmp_path):
    path = bench_data.synthetic_corpus(tmp_path / "c.tsv", 2000, seed=3)
    lines = path.read_text(encoding="utf-8").splitlines()
    assert len(lines) == 2000 and all(line.count("\t") == 1 for line in lines)
    assert len(set(lines)) >= 1990  # distinct choices; the sample repeats a few English sentences
    assert bench_data.synthetic_corpus(tmp_path / "again.tsv", 2000, seed=3).read_text() == path.read_text()


def test_smoke_run_measures_every_figure(tmp_path):
    output = tmp_path / "bench-data.json"
    result = subprocess.run([sys.executable, "scripts/bench_data.py", "--smoke", "--output", str(output)], cwd=ROOT,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    (row,) = json.loads(output.read_text())["results"]
    for key in ("prepare_seconds", "pairs_per_second", "prepare_peak_rss", "run_folder_bytes", "rerun_seconds",
                "rerun_peak_rss", "first_batch_seconds"):
        assert row[key] > 0, key
    assert len(row["ddp_rank_anonymous"]) == 2 and min(row["ddp_rank_anonymous"]) > 0
    assert "| 3,000 |" in result.stdout
