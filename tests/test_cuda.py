"""The CUDA paths, checked against the CPU: skipped where no CUDA GPU is visible (CI), run by `make test`
and by `make check-gpu` on a GPU. Tolerances are stated per test: CUDA's kernels sum in other orders
than the CPU's, and its fused attention kernels in fp32 are not bit-exact."""
import copy
import os
import socket
import sys
import warnings
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from torch.nn.attention import SDPBackend, sdpa_kernel

from tests.helpers.models import naive_attention, tiny, tokens
from tests.helpers.runs import small_config, small_corpus
from transformer_mt.benchmark.machine import run_bounded
from transformer_mt.config import DecodeConfig, ModelConfig
from transformer_mt.data.batching import collate, pad_batch
from transformer_mt.data.tokenizer import EOS
from transformer_mt.decoding.pytorch import Translator
from transformer_mt.decoding.search import beam_search, greedy
from transformer_mt.model.device import attention_kernels_chosen
from transformer_mt.model.transformer import attend
from transformer_mt.run_folder import open_run
from transformer_mt.training.loop import Trainer
from transformer_mt.training.objective import smoothed_loss
from transformer_mt.training.setup import set_up_run

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
ROOT = Path(__file__).resolve().parent.parent
CUDA = torch.device("cuda")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return small_corpus(tmp_path_factory.mktemp("corpus") / "c.jsonl")


@pytest.fixture(scope="module")
def big_corpus(tmp_path_factory):
    """Enough pairs for a dozen 12,000-token batches in an epoch."""
    return small_corpus(tmp_path_factory.mktemp("corpus") / "big.jsonl", 8000)


def batch_of(sentences: int = 6, length: int = 9):
    src = tokens(sentences, length)
    src[1, 5:], src[3, 2:] = 0, 0  # padded sources
    src[torch.arange(sentences), (src != 0).sum(1) - 1] = EOS
    tgt = tokens(sentences, 7)
    return src, tgt


def test_forward_and_loss_on_cuda_equal_the_cpus_in_fp32():
    """fp32 both sides (TF32 off): logits within 1e-4, the loss within 1e-5 relative."""
    torch.backends.cuda.matmul.allow_tf32 = False
    model = tiny()
    src, tgt = batch_of()
    cpu_logits = model(src, tgt)
    cuda_logits = model.to(CUDA)(src.to(CUDA), tgt.to(CUDA))
    torch.testing.assert_close(cuda_logits.cpu(), cpu_logits, atol=1e-4, rtol=1e-4)
    cpu_loss, _ = smoothed_loss(cpu_logits, tgt, 0.1)
    cuda_loss, _ = smoothed_loss(cuda_logits, tgt.to(CUDA), 0.1)
    assert float(cuda_loss) == pytest.approx(float(cpu_loss), rel=1e-5)


def _cudnn_applies(q, k, v, mask, causal) -> bool:
    """torch.backends.cuda.can_use_cudnn_attention for this call (its parameters gained enable_gqa in 2.5)."""
    try:
        params = torch.backends.cuda.SDPAParams(q, k, v, mask, 0.0, causal, False)
    except TypeError:
        params = torch.backends.cuda.SDPAParams(q, k, v, mask, 0.0, causal)
    return torch.backends.cuda.can_use_cudnn_attention(params)


@pytest.mark.parametrize("backend, masked, causal", [
    (SDPBackend.FLASH_ATTENTION, False, True),  # the decoder's self-attention in training
    (SDPBackend.EFFICIENT_ATTENTION, True, False),  # the encoder, with padded keys
    (SDPBackend.EFFICIENT_ATTENTION, True, True),
    (SDPBackend.CUDNN_ATTENTION, False, True),
    (SDPBackend.CUDNN_ATTENTION, True, False),
    (SDPBackend.CUDNN_ATTENTION, True, True),
])
def test_cudas_fused_attention_equals_the_spelled_out_maths_forward_and_backward(backend, masked, causal):
    """bf16 (the flash kernel takes only half types) against naive fp32 attention: within 2e-2. cuDNN's
    kernel is compared where can_use_cudnn_attention says it applies; where it does not, PyTorch's
    default dispatch must not pick it for that call either."""
    torch.manual_seed(0)
    q, k, v = (torch.randn(3, 4, 10, 16, device=CUDA, dtype=torch.bfloat16, requires_grad=True) for _ in range(3))
    keep = torch.ones(3, 1, 1, 10, dtype=torch.bool, device=CUDA)
    keep[1, ..., 6:] = False
    mask = keep if masked else None
    if backend == SDPBackend.CUDNN_ATTENTION and not _cudnn_applies(q, k, v, mask, causal):
        chosen = attention_kernels_chosen(CUDA, torch.bfloat16, 4, 16, 3, 10, 10)
        assert "cudnn" not in {chosen["decoder_self"] if causal else chosen["encoder_self"]}, chosen
        return
    with sdpa_kernel([backend]):
        out, _ = attend(q, k, v, mask, causal, 0.0, need_weights=False)
    reference = naive_attention(*(t.float() for t in (q, k, v)), mask, causal)
    torch.testing.assert_close(out.float(), reference, atol=2e-2, rtol=2e-2)
    grads = torch.autograd.grad(out.float().square().sum(), (q, k, v))
    expected = torch.autograd.grad(reference.square().sum(), (q, k, v))
    for got, want in zip(grads, expected):
        torch.testing.assert_close(got.float(), want.float(), atol=5e-2, rtol=5e-2)


def _trained(tmp_path, corpus, name: str, **train) -> tuple[Trainer, dict[str, torch.Tensor]]:
    config = small_config(tmp_path, corpus, name, dropout=0.0, device="cuda", tf32=False, **train)
    trainer = Trainer(config, set_up_run(config, log=lambda *_: None))
    initial = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    trainer.fit()
    return trainer, initial


def _loss_on(model, batch) -> float:
    with torch.no_grad():
        return float(smoothed_loss(model(batch.src, batch.tgt_in), batch.tgt_out, 0.1)[0])


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_mixed_precision_training_moves_the_weights_and_follows_fp32(tmp_path, corpus, precision):
    """20 updates from the same weights on the same batches in fp32 (TF32 off) and in `precision`:
    every weight moved in both; fp16's scaler is on, skipped at most 3 updates (skips do not count as
    steps) and kept a scale of at least 1; the final models' fp32 losses on a training batch agree
    within 3 %, after both fell well below the starting loss."""
    runs = {name: _trained(tmp_path, corpus, f"{name}-20", precision=name, max_steps=20)
            for name in ("fp32", precision)}
    for trainer, initial in runs.values():
        assert trainer.state.step == 20
        assert all(not torch.equal(p, initial[name]) for name, p in trainer.model.named_parameters())
    mixed = runs[precision][0]
    assert mixed.updater.scaler.is_enabled() == (precision == "fp16")
    if precision == "fp16":
        assert mixed.state.scaler_skips <= 3 and mixed.updater.scaler.get_scale() >= 1.0
    batch = collate(mixed.prepared.train_ids, torch.arange(8)).to(CUDA)
    start = copy.deepcopy(mixed.model)
    start.load_state_dict(runs[precision][1])
    first, fp32, half = _loss_on(start, batch), _loss_on(runs["fp32"][0].model, batch), _loss_on(mixed.model, batch)
    assert fp32 < 0.9 * first and half == pytest.approx(fp32, rel=3e-2)


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_more_padding_leaves_the_logits_of_real_positions_unchanged_on_cuda(precision):
    """The same sentences alone and in a batch with a longer one (so padded): under the fused kernels'
    masks the logits at real target positions agree (fp32: 1e-4; bf16: 3e-2)."""
    torch.backends.cuda.matmul.allow_tf32 = False
    model = tiny().to(CUDA)
    short = [[5, 9, 12, EOS], [7, 8, EOS]]
    tgt = pad_batch([[1, 20, 21, 22], [1, 23, 24, 0]], CUDA)
    with torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16, enabled=precision == "bf16"):
        alone = model(pad_batch(short, CUDA), tgt)
        padded = model(pad_batch(short + [list(range(4, 30)) + [EOS]], CUDA),
                       pad_batch([[1, 20, 21, 22], [1, 23, 24, 0],
                                                                                         [1, 25, 26, 27]], CUDA))[:2]
    tolerance = 1e-4 if precision == "fp32" else 3e-2
    real = tgt != 0
    torch.testing.assert_close(padded[real].float(), alone[real].float(), atol=tolerance, rtol=tolerance)


@pytest.mark.parametrize("beam", [1, 4])
def test_search_on_cuda_gives_the_cpus_tokens(beam):
    torch.backends.cuda.matmul.allow_tf32 = False
    model = tiny()
    src = pad_batch([[5, 9, 12, EOS], [7, 8, EOS], [20, 21, 22, 23, 24, EOS]])
    search = DecodeConfig(beam_size=beam, max_len_a=1.0, max_len_b=6)
    run = greedy if beam == 1 else beam_search
    on_cpu = run(model, src, search, model.max_output_len)
    on_cuda = run(model.to(CUDA), src.to(CUDA), search, model.max_output_len)
    flat = (lambda hyps: [h.tokens for h in hyps]) if beam == 1 else (lambda hyps: [h[0].tokens for h in hyps])
    assert flat(on_cuda) == flat(on_cpu)


@pytest.mark.parametrize("backends, allowed", [(["flash", "efficient"], {"flash", "efficient"}),
                                               (["efficient"], {"efficient"}), (["math"], {"math"})])
def test_train_sdpa_backends_decides_which_kernel_each_attention_call_runs(backends, allowed):
    """What the profiler shows for a Transformer-base batch's three kinds of attention call."""
    chosen = attention_kernels_chosen(CUDA, torch.bfloat16, 8, 64, 48, 30, 32, backends)
    assert set(chosen) == {"encoder_self", "decoder_self", "cross"} and set(chosen.values()) <= allowed, chosen


def test_a_checkpoint_trained_on_cuda_translates_on_cpu(tmp_path, corpus):
    config = small_config(tmp_path, corpus, "cuda-run", device="cuda", precision="bf16", max_steps=3)
    Trainer(config, set_up_run(config, log=lambda *_: None)).fit()
    translator = Translator(open_run(Path(config.run.root) / "cuda-run"), device="cpu")
    assert next(translator.model.parameters()).device.type == "cpu"
    assert len(translator.translate(["Hello.", "Where is it?"], replace(translator.decode, beam_size=2))) == 2


def test_resume_on_cuda_continues_as_training_straight_through(tmp_path, corpus):
    """N steps + resume to 2N against 2N straight, with the math attention kernel (the flash and
    memory-efficient backward passes are not deterministic), PyTorch's deterministic algorithms and a
    fixed cuBLAS workspace (set before CUDA starts: tests/conftest.py). warn_only, because a few ops
    (the encoder's unpacking backward, index_add_) still sum with atomics: within 1e-5, where the CPU
    test asks for bit equality."""
    assert os.environ.get("CUBLAS_WORKSPACE_CONFIG") == ":4096:8"
    torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        with sdpa_kernel([SDPBackend.MATH]):
            options = dict(device="cuda", precision="fp32", dropout=0.0, batch_tokens=1200)
            straight = small_config(tmp_path, corpus, "straight", max_steps=12, **options)
            first = small_config(tmp_path, corpus, "halves", max_steps=6, **options)
            whole = Trainer(straight, set_up_run(straight, log=lambda *_: None))
            whole.fit()
            Trainer(first, set_up_run(first, log=lambda *_: None)).fit()
            second = replace(first, train=replace(first.train, max_steps=12, resume=True))
            resumed = Trainer(second, set_up_run(second, log=lambda *_: None))
            resumed.fit()
    finally:
        torch.use_deterministic_algorithms(False)
    for (name, a), b in zip(whole.model.state_dict().items(), resumed.model.state_dict().values()):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=0, msg=name)


def _host_syncs(work) -> list[str]:
    """The host syncs `work` makes, as torch.cuda.set_sync_debug_mode reports them."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            work()
        finally:
            torch.cuda.set_sync_debug_mode("default")
    return [str(w.message) for w in caught if "synchroniz" in str(w.message)]


BASE = ModelConfig(d_model=512, n_heads=8, encoder_layers=6, decoder_layers=6, d_ff=2048, dropout=0.1,
                  max_positions=256)


@pytest.mark.parametrize("size", ["tiny", "base"])
def test_the_training_steps_between_two_log_lines_wait_for_the_gpu_once_each(tmp_path, corpus, big_corpus,
                                                                              monkeypatch, size):
    """Between log steps an update syncs once (whether its gradients are finite) beyond what PyTorch's
    own kernels do in a bare forward and backward pass of the same model (measured here: some CUDA
    backward kernels size their output on the host), so no sync creeps back into our hot path: for a
    tiny model, and for Transformer-base on 12,000-token batches."""
    real, syncs, watched = Trainer._update, [], {"updates": 0}

    def watching(self, micro):
        if not 2 <= self.state.step < 8:  # the first steps allocate and warm up; 10 is a log step
            return real(self, micro)
        watched["updates"] += 1
        reason = []
        syncs.extend(_host_syncs(lambda: reason.append(real(self, micro))))
        return reason[0]

    monkeypatch.setattr(Trainer, "_update", watching)
    sized = dict(model=BASE, batch_tokens=12000) if size == "base" else {}
    config = small_config(tmp_path, big_corpus if size == "base" else corpus, "syncs", device="cuda",
                          precision="bf16", max_steps=10, log_every=10, checkpoint_every=1000, **sized)
    trainer = Trainer(config, set_up_run(config, log=lambda *_: None))
    trainer.fit()
    batch = collate(trainer.prepared.train_ids, torch.arange(8)).pinned().to(CUDA)

    def bare_step():
        with torch.autocast("cuda", dtype=torch.bfloat16):
            logits = trainer.model(batch.src, batch.tgt_in, batch.src_index)
        smoothed_loss(logits, batch.tgt_out, 0.1)[0].backward()

    bare_step()  # warm-up
    internal = len(_host_syncs(bare_step))
    assert watched["updates"] == 6 and len(syncs) == 6 * (internal + 1), (internal, syncs)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_nccl_ddp_through_torchrun_trains_and_checkpoints(tmp_path):
    """One process of NCCL data-parallel training, launched as a user launches it: a process group of
    one is a real one, so DDP, NCCL and the all-reduces run. Rendezvous on 127.0.0.1 (--standalone
    resolves the host name, which can stall where it does not resolve); a collective that hangs fails
    after 60 s, and the whole process tree is stopped after 120 s, below make check-gpu's stage cap."""
    paths = [str(ROOT), *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]  # keep the check's wheels
    result = run_bounded([sys.executable, "-m", "torch.distributed.run", "--nnodes=1", "--nproc_per_node=1",
                          "--rdzv-backend=c10d", f"--rdzv-endpoint=127.0.0.1:{_free_port()}", "--local-addr=127.0.0.1",
                          "scripts/train.py", "configs/tiny.yaml", f"run.root={tmp_path}", "train.device=cuda",
                          "train.max_steps=4", "train.valid_every=4", "train.collective_timeout_s=60"], 120,
                         cwd=ROOT, env={**os.environ, "PYTHONPATH": os.pathsep.join(paths), "NCCL_DEBUG": "WARN"})
    assert result.returncode == 0, result.stderr[-3000:]
    assert "data-parallel: DistributedDataParallel over 1 process(es), nccl backend" in result.stdout + result.stderr
    state = torch.load(tmp_path / "tiny" / "checkpoints" / "last.pt", weights_only=True, map_location="cpu")
    assert state["state"]["step"] == 4
