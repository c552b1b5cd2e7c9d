import json
import subprocess
import sys
from pathlib import Path

from transformer_mt.benchmark import data_scale
from transformer_mt.config import TokenizerConfig
from transformer_mt.data.tokenizer import Tokenizer

ROOT = Path(__file__).resolve().parents[2]


def test_synthetic_corpus_joins_two_sample_pairs_per_line_without_repeating_a_choice(tmp_path):
    path = data_scale.synthetic_corpus(tmp_path / "c.tsv", 2000, seed=3)
    lines = path.read_text(encoding="utf-8").splitlines()
    assert len(lines) == 2000 and all(line.count("\t") == 1 for line in lines)
    assert len(set(lines)) >= 1990  # distinct choices; the sample repeats a few English sentences
    assert data_scale.synthetic_corpus(tmp_path / "again.tsv", 2000, seed=3).read_text() == path.read_text()


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


def test_the_streaming_preparation_probe_runs_as_its_own_module(tmp_path):
    """The compared preparation stages are real functions, run with python -m in a fresh process."""
    corpus = data_scale.synthetic_corpus(tmp_path / "c.tsv", 300)
    pairs = [line.split("\t") for line in corpus.read_text(encoding="utf-8").splitlines()]
    Tokenizer.train([text for pair in pairs for text in pair], TokenizerConfig(vocab_size=300).vocab_size).save(
        tmp_path / "bpe.json")
    for stage in ("clean", "encode"):
        result = subprocess.run([sys.executable, "-m", data_scale.PROBES, "prepare-stage", str(corpus), str(tmp_path),
                                 "streaming", stage], cwd=ROOT, capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, result.stderr[-2000:]
        assert float(result.stdout.strip().splitlines()[-1]) > 0
    assert len((tmp_path / "clean.tsv").read_text(encoding="utf-8").splitlines()) == 300
    assert (tmp_path / "ids.bin").stat().st_size > 0
