"""The CUDA paths, checked against the CPU: skipped where no CUDA GPU is visible (CI), run by `make test`
and by `make check-gpu` on a GPU. Tolerances are stated per test: CUDA's kernels sum in other orders
than the CPU's, and its fused attention kernels in fp32 are not bit-exact."""
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from torch.nn.attention import SDPBackend, sdpa_kernel

from tests.test_model import naive_attention, tiny, tokens
from tests.trainer_helpers import small_config, small_corpus
from transformer_mt.batching import collate, pad_batch
from transformer_mt.config import DecodeConfig
from transformer_mt.model import attend
from transformer_mt.run_setup import set_up_run
from transformer_mt.run_folder import open_run
from transformer_mt.search import beam_search, greedy
from transformer_mt.tokenizer import EOS
from transformer_mt.training.loop import Trainer
from transformer_mt.training.objective import smoothed_loss
from transformer_mt.translator import Translator

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
ROOT = Path(__file__).resolve().parent.parent
CUDA = torch.device("cuda")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return small_corpus(tmp_path_factory.mktemp("corpus") / "c.jsonl")


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


@pytest.mark.parametrize("backend, masked, causal", [
    (SDPBackend.FLASH_ATTENTION, False, True),  # the decoder's self-attention in training
    (SDPBackend.EFFICIENT_ATTENTION, True, False),  # the encoder, with padded keys
    (SDPBackend.EFFICIENT_ATTENTION, True, True),
])
def test_cudas_fused_attention_equals_the_spelled_out_maths_forward_and_backward(backend, masked, causal):
    """bf16 (the flash kernel takes only half types) against naive fp32 attention: within 2e-2."""
    torch.manual_seed(0)
    q, k, v = (torch.randn(3, 4, 10, 16, device=CUDA, dtype=torch.bfloat16, requires_grad=True) for _ in range(3))
    keep = torch.ones(3, 1, 1, 10, dtype=torch.bool, device=CUDA)
    keep[1, ..., 6:] = False
    mask = keep if masked else None
    with sdpa_kernel([backend]):
        out, _ = attend(q, k, v, mask, causal, 0.0, need_weights=False)
    reference = naive_attention(*(t.float() for t in (q, k, v)), mask, causal)
    torch.testing.assert_close(out.float(), reference, atol=2e-2, rtol=2e-2)
    grads = torch.autograd.grad(out.float().square().sum(), (q, k, v))
    expected = torch.autograd.grad(reference.square().sum(), (q, k, v))
    for got, want in zip(grads, expected):
        torch.testing.assert_close(got.float(), want.float(), atol=5e-2, rtol=5e-2)


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_a_mixed_precision_step_gives_a_finite_loss_close_to_fp32s(tmp_path, corpus, precision):
    """One update of the same model and batch: bf16 autocast, or fp16 with the gradient scaler, against
    fp32; losses within 2% (half-precision logits)."""
    losses = {}
    for name in ("fp32", precision):
        config = small_config(tmp_path, corpus, f"{name}-step", dropout=0.0, device="cuda", precision=name,
                              max_steps=1)
        trainer = Trainer(config, set_up_run(config, log=lambda *_: None))
        trainer.fit()  # one update, through the trainer's autocast (and, for fp16, its gradient scaler)
        batch = collate(trainer.prepared.train_ids, torch.arange(8)).to(CUDA)
        with torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16 if name == "bf16" else torch.float16,
                                             enabled=name != "fp32"):
            logits = trainer.model(batch.src, batch.tgt_in)
        losses[name] = float(smoothed_loss(logits, batch.tgt_out, 0.1)[0])
    assert torch.isfinite(torch.tensor(losses[precision]))
    assert losses[precision] == pytest.approx(losses["fp32"], rel=2e-2)


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


def test_a_checkpoint_trained_on_cuda_translates_on_cpu(tmp_path, corpus):
    config = small_config(tmp_path, corpus, "cuda-run", device="cuda", precision="bf16", max_steps=3)
    Trainer(config, set_up_run(config, log=lambda *_: None)).fit()
    translator = Translator(open_run(Path(config.run.root) / "cuda-run"), device="cpu")
    assert next(translator.model.parameters()).device.type == "cpu"
    assert len(translator.translate(["Hello.", "Where is it?"], replace(translator.decode, beam_size=2))) == 2


def test_resume_on_cuda_continues_as_training_straight_through(tmp_path, corpus, monkeypatch):
    """N steps + resume to 2N against 2N straight, with PyTorch's deterministic algorithms where it has them
    (warn_only: an op without one runs its usual kernel; cuBLAS needs a fixed workspace): within 1e-5,
    where on the CPU the test asks for bit equality: CUDA's atomics may still reorder a few sums."""
    monkeypatch.setenv("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(True, warn_only=True)
    try:
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


def test_nccl_ddp_through_torchrun_trains_and_checkpoints(tmp_path):
    """One process of NCCL data-parallel training, launched as a user launches it."""
    result = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=1",
                             "scripts/train.py", "configs/tiny.yaml", f"run.root={tmp_path}", "train.device=cuda",
                             "train.max_steps=4", "train.valid_every=4"],
                            cwd=ROOT, capture_output=True, text=True, timeout=600,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert result.returncode == 0, result.stderr[-3000:]
    state = torch.load(tmp_path / "tiny" / "checkpoints" / "last.pt", weights_only=True, map_location="cpu")
    assert state["state"]["step"] == 4
