"""make bench-shapes: a smoke run, and its shape census against the shapes PyTorch really sees."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch

from tests.test_training_step import ragged_corpus
from transformer_mt.batching import Shapes, collate
from transformer_mt.benchmark.shapes import BatchShape, linear_products
from transformer_mt.config import ModelConfig
from transformer_mt.model import Transformer
from transformer_mt.tokenizer import PAD

ROOT = Path(__file__).resolve().parent.parent


def test_the_census_counts_the_linear_products_the_profiler_records():
    cfg = ModelConfig(d_model=16, n_heads=2, encoder_layers=2, decoder_layers=1, d_ff=24, max_positions=64)
    shapes, corpus = Shapes(4, 16), ragged_corpus()
    batch = collate(corpus, np.arange(12), shapes)
    model = Transformer(cfg, 40, 40, shared_vocab=True)
    with torch.profiler.profile(record_shapes=True) as prof:
        model(batch.src, batch.tgt_in, batch.src_index)
    seen = []
    for event in prof.events():
        if event.name == "aten::linear":
            (*rows, fan_in), (fan_out, _) = event.input_shapes[:2]
            seen.append((int(np.prod(rows)), fan_in, fan_out))
    src_len, tgt_len = batch.src.size(1), batch.tgt_out.size(1)
    described = BatchShape(12, src_len, tgt_len, len(batch.src_index), int((batch.tgt_out != PAD).sum()),
                           int((batch.src != PAD).sum()))
    assert sorted(seen) == sorted(linear_products(described, cfg, 40))


def test_bench_shapes_smoke_run_writes_its_report(tmp_path):
    output = tmp_path / "shapes.json"
    done = subprocess.run([sys.executable, str(ROOT / "scripts" / "bench_shapes.py"), "--smoke", "--output",
                           str(output)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(output.read_text())
    census = report["census"]
    assert census["rows 32"]["encoder_rows"] < census["none"]["encoder_rows"]
    assert census["none"]["encoder_row_overhead"] == 0.0 and census["none"]["real_target_share"] <= 1.0
    assert set(report["timed"]) == {"none", "rows 32", "length 2, rows 32", "length 4, rows 32"}
    assert "| rounding |" in done.stdout
