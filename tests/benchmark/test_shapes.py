"""make bench-shapes: a smoke run, and its shape census against the shapes PyTorch really sees."""
import functools
import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.helpers.models import ragged_corpus
from transformer_mt.benchmark.shape_census import BatchShape, cache_builds, gemm_products, linear_products
from transformer_mt.benchmark.shapes import profile_updates, turns_census
from transformer_mt.benchmark.timing import Job
from transformer_mt.config import ModelConfig, TrainConfig
from transformer_mt.data.batching import Shapes, collate
from transformer_mt.data.tokenizer import PAD
from transformer_mt.model.transformer import Transformer

ROOT = Path(__file__).resolve().parents[2]


def test_the_census_counts_the_products_the_profiler_records():
    """Its linear layers' shapes are aten::linear's, and its GEMMs (both backward products too) are
    every mm/addmm of a training step, shape for shape and count for count."""
    cfg = ModelConfig(d_model=16, n_heads=2, encoder_layers=2, decoder_layers=1, d_ff=24, max_positions=64)
    shapes, corpus = Shapes(4, 16), ragged_corpus()
    batch = collate(corpus, np.arange(12), shapes)
    model = Transformer(cfg, 40, 40, shared_vocab=True)
    with torch.profiler.profile(record_shapes=True) as prof:
        model(batch.src, batch.tgt_in, batch.src_index).sum().backward()
    linears, gemms = [], Counter()
    for event in prof.events():
        if event.name == "aten::linear":
            (*rows, fan_in), (fan_out, _) = event.input_shapes[:2]
            linears.append((int(np.prod(rows)), fan_in, fan_out))
        if event.name in ("aten::mm", "aten::addmm"):
            (m, k), (_, n) = [shape for shape in event.input_shapes if len(shape) == 2][-2:]
            gemms[(m, k, n)] += 1
    src_len, tgt_len = batch.src.size(1), batch.tgt_out.size(1)
    described = BatchShape(12, src_len, tgt_len, len(batch.src_index), int((batch.tgt_out != PAD).sum()),
                           int((batch.src != PAD).sum()))
    products = linear_products(described, cfg, 40)
    assert sorted(linears) == sorted(products)
    assert gemms == Counter(gemm_products(products))


def test_cache_builds_are_the_misses_of_an_lru_cache():
    sequence = [int(x) for x in np.random.default_rng(0).zipf(1.5, 3000) % 200]
    for capacity in (1, 16, 64, 1000):
        @functools.lru_cache(maxsize=capacity)
        def build(key):
            return key
        for key in sequence:
            build(key)
        assert cache_builds(sequence, capacity) == build.cache_info().misses


def test_bench_shapes_smoke_run_writes_its_report(tmp_path):
    output = tmp_path / "shapes.json"
    done = subprocess.run([sys.executable, str(ROOT / "scripts" / "bench_shapes.py"), "--smoke", "--make-bench",
                           "--output", str(output)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(output.read_text())
    census = report["census"]
    assert census["rows 32"]["encoder_rows"] < census["none"]["encoder_rows"]
    assert census["none"]["encoder_row_overhead"] == 0.0 and census["none"]["real_target_share"] <= 1.0
    assert set(report["timed"]) == {"none", "rows 32", "length 2, rows 32", "length 4, rows 32"}
    assert "| rounding |" in done.stdout
    turns = report["make_bench_training"]
    assert turns["distinct"] >= max(turns["distinct_by_job"].values()) and turns["timed_calls"] > 0


def test_the_cast_census_counts_each_linear_weight_and_its_gradient_once_per_update():
    """Autocast casts a weight once per forward (its cache) and the weight's gradient back once; the
    census should find exactly that in bf16, no weight casts in fp32, and activation casts in bf16
    far above fp32's few bookkeeping ones (masks, token counts)."""
    cfg = ModelConfig(d_model=16, n_heads=2, encoder_layers=1, decoder_layers=1, d_ff=24, max_positions=64)
    train = TrainConfig(batch_tokens=64, warmup_steps=1)
    casts = {precision: profile_updates(ragged_corpus(), train, cfg, 40, precision, Shapes(), steps=2).casts_per_update
             for precision in ("fp32", "bf16")}
    model = Transformer(cfg, 40, 40, shared_vocab=True)
    linear = {id(p): p.numel() for m in model.modules() if isinstance(m, torch.nn.Linear) for p in m.parameters()}
    assert casts["bf16"]["weights"] == pytest.approx(2 * sum(linear.values()) / 1e6)
    assert casts["fp32"]["weights"] == 0.0
    assert casts["bf16"]["activations"] > 10 * casts["fp32"]["activations"]


def test_the_turns_census_replays_the_benchmark_order_through_the_cache():
    """Two jobs of two distinct products each, taking turns: a cache that holds all four builds nothing
    once warm; a cache of one entry builds every product of every timed round."""
    a, b = torch.ones(2, 3), torch.ones(3, 4)
    job = lambda rows: Job([lambda: torch.ones(rows, 3) @ b, lambda: a @ torch.ones(3, rows)])  # noqa: E731
    census = turns_census({"x": job(5), "y": job(7)}, warmup=1, repeats=2, capacities=(1, 4))
    assert census.distinct_by_job == {"x": 2, "y": 2} and census.distinct == 4
    assert census.timed_calls == 8 and census.timed_builds == {1: 8, 4: 0}
