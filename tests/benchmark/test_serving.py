"""The serving benchmark: its statistics against independent references, and a smoke run of the whole
of it (tiny sizes, a tiny model: it runs and reports; the figures mean nothing)."""
import json
import random
import statistics
import subprocess
import sys
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, Histogram, generate_latest

from tests.helpers.runs import tiny_run
from transformer_mt.benchmark.load import Histograms, LoadFigure, percentiles, quantile
from transformer_mt.benchmark.serving import Target, soak_verdict
from transformer_mt.serving.metrics import BATCH_SECONDS
from transformer_mt.serving.paragraphs import Paragraph

ROOT = Path(__file__).resolve().parents[2]


def test_a_median_read_off_the_servers_histogram_is_within_a_bucket_of_the_true_one():
    registry = CollectorRegistry()
    before = Histograms(generate_latest(registry).decode())
    histogram = Histogram("mt_batch_seconds", "", buckets=BATCH_SECONDS, registry=registry)
    rng = random.Random(0)
    samples = [rng.lognormvariate(-3, 0.5) for _ in range(2000)]
    for sample in samples:
        histogram.observe(sample)
    buckets, total = Histograms(generate_latest(registry).decode()).since(before, "mt_batch_seconds")
    assert total == pytest.approx(sum(samples))
    for q in (0.5, 0.9):
        true = statistics.quantiles(samples, n=10)[int(q * 10) - 1]
        assert quantile(buckets, q) == pytest.approx(true, rel=0.1)


def test_quantile_interpolates_inside_its_bucket_as_prometheus_does():
    assert quantile({1.0: 10, 2.0: 30, float("inf"): 30}, 0.5) == pytest.approx(1.25)
    assert quantile({1.0: 0, 2.0: 4, float("inf"): 8}, 0.9) == 2.0  # past the last finite bound
    assert quantile({1.0: 0, float("inf"): 0}, 0.5) is None


def test_percentiles_are_the_inclusive_ones():
    samples = [float(x) for x in range(1, 101)]
    assert percentiles(samples) == {"p50": 50.5, "p95": 95.05, "p99": 99.01, "max": 100.0}
    assert percentiles([3.0]) == {"p50": 3.0, "p95": 3.0, "p99": 3.0, "max": 3.0}


def test_targets_and_the_soak_verdict():
    assert Target(0.9, 0.85, at_most=False).met and not Target(0.8, 0.85, at_most=False).met
    assert Target(12.0, 15.0, at_most=True).met and not Target(16.0, 15.0, at_most=True).met
    figure = LoadFigure(32, 10.0, 100, 100, 10.0, {}, {"200": 100})
    mb = 2**20
    # Warm-up before the middle (80 -> 100 MB) is not a leak; 9 % growth after it is within the bound.
    steady = soak_verdict(figure, [(0.5, 80 * mb), (1.0, 100 * mb), (2.0, 105 * mb), (3.0, 109 * mb)], 1.0)
    assert steady["met"] and steady["rss_reference_mb"] == 100.0 and steady["rss_second_half_growth"] == 0.09
    assert not soak_verdict(figure, [(1.0, 100 * mb), (2.0, 111 * mb)], 1.0)["met"]  # grew 11 %
    falling = soak_verdict(figure, [(1.0, 100 * mb), (2.0, 90 * mb)], 1.0)
    assert falling["met"] and falling["rss_second_half_growth"] == 0.0  # memory given back is no leak
    failing = LoadFigure(32, 10.0, 100, 99, 9.9, {}, {"200": 99, "503": 1})
    assert not soak_verdict(failing, [(1.0, 100 * mb)], 1.0)["met"]


def test_the_smoke_run_serves_every_level_overloads_and_soaks_without_errors(tmp_path, sample_pairs):
    from transformer_mt.export.ctranslate2 import export_ctranslate2

    run = tiny_run(tmp_path, sample_pairs[:300])
    export_ctranslate2(run, None, tmp_path / "ct2", "int8")
    sentences = tmp_path / "sentences.en"
    sentences.write_text("".join(f"{s}\n" for s, _ in sample_pairs[300:400]), encoding="utf-8")
    output = tmp_path / "bench-serve.json"
    result = subprocess.run([sys.executable, "scripts/bench_serve.py", "--smoke", "--run", str(run.root), "--model",
                             str(tmp_path / "ct2"), "--sentences", str(sentences), "--threads", "1",
                             "--output", str(output)], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    report = json.loads(output.read_text())
    assert report["complete"] and set(report["backends"]) == {"ctranslate2 int8", "pytorch fp32"}
    assert report["sentences"] == sum(len(Paragraph.of(s).sentences) == 1 for s, _ in sample_pairs[300:400])
    for figures in report["backends"].values():
        assert figures["offline_sentences_per_sec"] > 0 and figures["single_decode_ms"] > 0
        assert set(figures["random_batches"]) == {"1", "8", "16", "32"}
        for found in (figures["batching"], figures["no_batching"]):
            assert set(found) == {"1", "32"}
            assert all(f["requests"] > 0 and f["statuses"] == {"200": f["requests"]} for f in found.values())
        assert figures["batching"]["32"]["batch"]["mean_sentences"] > 1  # requests shared batches
        assert figures["no_batching"]["32"]["batch"]["mean_sentences"] == 1
        assert len(figures["targets"]) == 5
    html = report["html"]
    for pair in html["levels"].values():
        assert all(f["requests"] > 0 and f["statuses"] == {"200": f["requests"]} for f in pair.values())
    assert set(html["levels"]) == {"1", "32"} and len(html["targets"]) == 2
    assert report["detection"]["ms"]["p50"] > 0 and "target" in report["detection"]
    overload = report["overload"]
    assert set(overload["load"]["statuses"]) == {"200", "429"}
    assert overload["health_ok"] == overload["health_checks"] > 0
    assert report["soak"]["load"]["statuses"] == {"200": report["soak"]["load"]["requests"]}
    assert report["soak"]["readings"] >= 4
    by_words = report["backends"]["pytorch fp32"]["batching"]["32"]["by_words"]
    translated = report["backends"]["pytorch fp32"]["batching"]["32"]["translated"]
    assert sum(group["requests"] for group in by_words.values()) == translated
    assert "| target | backend | measured | limit | met |" in result.stdout
    assert "HTML against text" in result.stdout and "language detection" in result.stdout
