import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from transformer_mt.benchmark import flops, records, suite, systems, timing
from transformer_mt.config import DecodeConfig, ModelConfig
from transformer_mt.data.batching import Batch
from transformer_mt.data.tokenizer import EOS, PAD
from transformer_mt.decoding.search import beam_search, greedy
from transformer_mt.errors import UserError
from transformer_mt.model.transformer import Transformer

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts"))
import bench  # noqa: E402


@pytest.mark.parametrize("beam", [1, 4])
def test_decoding_flops_count_the_matmuls_our_search_runs(beam):
    """PyTorch's FLOP counter sees every matmul of a real search on CPU, where decoding spells attention
    out (model.attend), so the count must match the formula term for term, attention included."""
    torch.manual_seed(0)
    cfg = ModelConfig(d_model=32, n_heads=4, encoder_layers=2, decoder_layers=2, d_ff=64, dropout=0.0)
    model = Transformer(cfg, 100, 100, shared_vocab=True).eval()
    src = torch.randint(4, 100, (3, 6))
    src[:, -1] = EOS
    search = DecodeConfig(beam_size=beam, max_len_a=0.0, max_len_b=systems.DECODE_LENGTH, min_len=systems.DECODE_LENGTH)
    with FlopCounterMode(display=False) as counter:
        (greedy if beam == 1 else beam_search)(model, src, search, model.max_output_len)
    assert counter.get_total_flops() == flops.decoding_flops(cfg, 100, [src], beam, systems.DECODE_LENGTH)
    assert flops.decoding_flops(cfg, 100, [src], beam, systems.DECODE_LENGTH,
                                attention=False) < counter.get_total_flops()


def test_source_pad_gemm_share_is_the_linear_work_the_peer_does_and_we_skip():
    """PyTorch's FLOP counter on a padded batch: the peer's linear-layer GEMMs (mm, addmm) against ours,
    whose encoder skips the source pads; their difference over the peer's is the share the formula gives."""
    pytest.importorskip("transformers")
    torch.manual_seed(0)
    cfg = ModelConfig(d_model=32, n_heads=4, encoder_layers=2, decoder_layers=3, d_ff=48, dropout=0.0)
    src = torch.randint(4, 100, (3, 7))
    src[0, 4:], src[1, 6:] = PAD, PAD  # sentences of 4, 6 and 7 tokens
    tgt = torch.randint(4, 100, (3, 5))
    tgt[2, 3:] = PAD
    batch = Batch(src=src, tgt_in=tgt, tgt_out=tgt)

    def linear_flops(system: systems.System) -> int:
        model = system.build()
        with FlopCounterMode(display=False) as counter:
            system.logits(model, batch)
        counts = counter.get_flop_counts()["Global"]
        return counts.get(torch.ops.aten.mm, 0) + counts.get(torch.ops.aten.addmm, 0)

    ours, peer = (linear_flops(make(cfg, 100, torch.device("cpu"))) for make in (systems.ours, systems.peer))
    assert ours < peer
    assert flops.source_pad_gemm_share(cfg, 100, [batch]) == pytest.approx(1 - ours / peer, rel=1e-12)


def test_profile_job_counts_linear_layer_gemms_apart_from_other_ops():
    layer, x = torch.nn.Linear(64, 64), torch.randn(32, 64)
    with_gemm = timing.profile_job(lambda: [layer(x).relu() for _ in range(20)])
    without = timing.profile_job(lambda: [x.relu().exp() for _ in range(20)])
    assert 0 < with_gemm.gemm_seconds < with_gemm.total_seconds
    assert "aten::addmm" in with_gemm.top_ops_seconds
    assert without.gemm_seconds == 0 and without.total_seconds > 0


def test_side_by_side_takes_turns_step_by_step_starting_one_further_on():
    calls: list[str] = []
    jobs = {name: timing.Job([lambda step=f"{name}{i}": calls.append(step) for i in range(steps)])
            for name, steps in (("a", 2), ("b", 2), ("c", 1))}
    seconds = timing.side_by_side(jobs, warmup=1, repeats=2)
    warmup = ["a0", "a1", "b0", "b1", "c0"]
    round0 = ["a0", "b0", "c0", "b1", "a1"]  # turn 1 starts at b; c has no second step
    round1 = ["b0", "c0", "a0", "a1", "b1"]
    assert calls == warmup + round0 + round1
    assert {name: len(times) for name, times in seconds.items()} == {"a": 2, "b": 2, "c": 2}
    assert all(t >= 0 for times in seconds.values() for t in times)


def test_matmul_peak_pools_every_sampling_and_fp16_is_measured_on_cuda_only():
    peak = timing.MatmulPeak(64, torch.float16, torch.device("cpu"))
    peak.measure(2)
    timed = peak.alongside({"other": timing.Job([lambda: None])}, warmup=0, repeats=3)
    assert list(timed) == ["other"] and len(timed["other"]) == 3
    figure = peak.gflops()
    assert figure.samples == 5 and 0 < figure.min <= figure.median <= figure.max
    assert figure.max == pytest.approx(2 * 64**3 / min(peak.seconds) / 1e9)
    assert suite.peak_only_precisions(torch.device("cuda")) == ("fp16",)
    assert suite.peak_only_precisions(torch.device("cpu")) == ()


def test_bench_smoke_run_writes_json_with_ratios(tmp_path):
    output = tmp_path / "bench.json"
    result = subprocess.run([sys.executable, "scripts/bench.py", "--smoke", "--output", str(output)], cwd=ROOT,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(output.read_text())
    assert report["complete"] is True and not output.with_name("bench.json.part").exists()
    assert {"train_same_batches_fp32", "train_same_batches_bf16", "train_own_batching_bf16", "greedy_fp32",
            "beam4_fp32", "beam4_bf16", "cached_vs_uncached", "mfu_bf16"} <= report["ratios"].keys()
    assert {"greedy", "beam4"} <= report["quality"].keys()
    for figure in report["train"].values():
        assert figure["tokens_per_sec"]["min"] <= figure["tokens_per_sec"]["median"] <= figure["tokens_per_sec"]["max"]
    assert report["padding"]["bucketed_batches"] < report["padding"]["random_batches"]
    # The matmul peak: 3 timings at the start, then one taking turns with the systems at each of the 2
    # timed rounds of training, of greedy and of beam-4 decoding.
    for figure in report["matmul_gflops"].values():
        assert figure["samples"] == 3 + 3 * 2
    assert "| ratio (medians) | value |" in result.stdout
    for name in ("greedy", "beam4"):  # nothing decodes faster than its matmuls at the measured peak
        assert report["ratios"][f"{name}_fp32"] < report["ratios"][f"{name}_fp32_ceiling"]
    assert {"train_same_batches_fp32_gemm_bound", "greedy_fp32_gemm_bound", "beam4_fp32_gemm_bound"} <= \
        report["ratios"].keys()
    assert 0 < report["train_source_pad_gemm_share"] < 0.5
    assert report["ratios"]["train_same_batches_fp32_gemm_time"] > 0
    skipping = report["ratios"]["train_same_batches_fp32_from_skipping"]
    assert 1 < skipping < 1 / (1 - report["train_source_pad_gemm_share"])  # the peer's GEMMs are not all its step
    for key in ("ours_same_batches_fp32", "peer_same_batches_fp32", "ours_greedy_fp32", "peer_beam4_fp32"):
        profile = report["profiles"][key]
        assert 0 < profile["gemm_seconds"] < profile["total_seconds"]
    assert "| profile (one run, self time) |" in result.stdout


@pytest.mark.parametrize("flags, message", [
    (["--train-minutes", "-1"], "--train-minutes must be a number of minutes >= 0"),
    (["--train-minutes", "nan"], "--train-minutes must be a number of minutes >= 0"),
    (["--output", "missing/bench.json"], "folder missing does not exist"),
    (["--output", "."], "is a folder; name the file to write"),
])
def test_bad_arguments_fail_before_measuring(tmp_path, flags, message):
    result = subprocess.run([sys.executable, str(ROOT / "scripts" / "bench.py"), "--smoke", *flags], cwd=tmp_path,
                            capture_output=True, text=True, timeout=120)
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and result.stdout == ""  # nothing measured
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0]


def test_a_failing_script_is_one_line_naming_it_and_its_last_error():
    with pytest.raises(UserError, match=r"^scripts/train.py exited with 2: error: .*no-such.yaml"):
        suite.run_script("train.py", "no-such.yaml")


def test_a_failed_quality_run_keeps_the_timings_and_exits_with_one_line(tmp_path, monkeypatch, capsys):
    measured = records.BenchReport("cpu", torch.__version__, "today", {}, 100,
                                   matmul_gflops={"fp32": records.MatmulFigure(1.0, 2.0, 3.0, samples=3)},
                                   ratios={"greedy_fp32": 1.5},
                                   quality=records.Quality("configs/sample.yaml", 3.0,
                                                           error="scripts/train.py exited with 1: error: disk full"))
    monkeypatch.setattr(suite, "measure", lambda options: measured)
    output = tmp_path / "bench.json"
    monkeypatch.setattr(sys, "argv", ["bench.py", "--output", str(output)])
    with pytest.raises(UserError, match=rf"quality per budget failed \({output} has the other figures\): .*disk full"):
        bench.main()
    assert json.loads(output.read_text())["ratios"] == {"greedy_fp32": 1.5}
    assert "| greedy_fp32 | 1.50 |" in capsys.readouterr().out


def test_a_run_stopped_part_way_leaves_the_figures_measured_so_far(tmp_path, monkeypatch):
    """make check-gpu stops the bench at its cap: the sections done are in the file, marked incomplete."""
    def stopped_after_training(options):
        partial = records.BenchReport("cpu", torch.__version__, "today", {}, 100,
                                      matmul_gflops={"fp32": records.MatmulFigure(1.0, 2.0, 3.0, samples=3)})
        options.progress(partial)
        raise KeyboardInterrupt  # as the cap's SIGTERM ends it

    monkeypatch.setattr(suite, "measure", stopped_after_training)
    output = tmp_path / "bench.json"
    monkeypatch.setattr(sys, "argv", ["bench.py", "--output", str(output)])
    with pytest.raises(KeyboardInterrupt):
        bench.main()
    report = json.loads(output.read_text())
    assert report["complete"] is False and report["matmul_gflops"]["fp32"]["median"] == 2.0
