"""The update step on its own (training/step.py): fp16's skipped updates, checkpoints between
precisions, DDP on a process group of one, and the loop's treatment of a skipped update."""
import pytest
import torch
import torch.distributed as dist

from tests.helpers.models import ragged_corpus, tiny, tokens
from tests.helpers.runs import small_config, small_corpus
from transformer_mt.config import TrainConfig
from transformer_mt.data.batching import Batch
from transformer_mt.data.tokenizer import BOS, EOS
from transformer_mt.model.device import attention_kernels, autocast
from transformer_mt.training import step as step_module
from transformer_mt.training.distributed import Distributed
from transformer_mt.training.loop import Trainer, prepared_ahead
from transformer_mt.training.reporting import Window
from transformer_mt.training.setup import set_up_run
from transformer_mt.training.state import own_rng_state
from transformer_mt.training.step import Updater, UpdateResult

CPU = torch.device("cpu")


def a_batch(seed: int = 0) -> Batch:
    torch.manual_seed(seed)
    src, body = tokens(4, 6), tokens(4, 5)
    src[:, -1] = EOS
    return Batch(src, torch.cat([torch.full((4, 1), BOS), body], 1), torch.cat([body, torch.full((4, 1), EOS)], 1))


def updater(precision: str = "fp32", init_scale: float | None = None, **train) -> Updater:
    model = tiny().train()
    made = Updater(model, TrainConfig(warmup_steps=10, **train), CPU, precision, Distributed())
    if init_scale is not None:  # CPU autocast runs fp16 too, so the scaler's logic is testable here
        made.scaler = torch.amp.GradScaler("cpu", init_scale=init_scale)
    return made


def weights(up: Updater) -> dict[str, torch.Tensor]:
    return {name: p.detach().clone() for name, p in up.model.named_parameters()}


def test_an_fp16_update_whose_gradients_overflow_changes_nothing_but_the_scale():
    up = updater("fp16", init_scale=1e38)  # the scaled loss overflows: inf gradients
    before = weights(up)
    result = up.update([a_batch()])
    assert not result.finite and result.scaler_skipped
    assert all(torch.equal(before[n], p) for n, p in up.model.named_parameters())
    assert up.scheduler.last_epoch == 0 and not up.optimizer.state  # no schedule step, no Adam moments
    assert up.scaler.get_scale() == pytest.approx(0.5e38)
    up.scaler = torch.amp.GradScaler("cpu", init_scale=1024.0)
    applied = up.update([a_batch()])
    assert applied.finite and up.scheduler.last_epoch == 1
    assert any(not torch.equal(before[n], p) for n, p in up.model.named_parameters())


def test_an_fp16_update_that_overflows_below_a_loss_scale_of_one_is_for_the_non_finite_policy():
    up = updater("fp16", init_scale=1.0)
    with torch.no_grad():
        next(up.model.parameters()).fill_(float("nan"))  # non-finite at any scale
    result = up.update([a_batch()])
    assert not result.finite and not result.scaler_skipped and up.scaler.get_scale() == 0.5


def test_a_checkpoint_without_scaler_state_resumes_in_fp16_with_a_fresh_scaler():
    bf16 = updater("bf16")
    bf16.update([a_batch()])
    assert bf16.state_dict()["scaler"] == {}
    fp16 = updater("fp16", init_scale=2.0**16)
    fp16.load_state_dict(bf16.state_dict())
    assert fp16.scaler.get_scale() == 2.0**16 and fp16.scheduler.last_epoch == 1


@pytest.fixture
def group_of_one(tmp_path):
    """A gloo process group of one process, as torchrun --nproc_per_node=1 makes it."""
    dist.init_process_group("gloo", store=dist.FileStore(str(tmp_path / "store"), 1), rank=0, world_size=1)
    try:
        yield
    finally:
        dist.destroy_process_group()


def _all_reduces(up: Updater) -> list[int]:
    calls = []

    def counting(state, bucket):
        calls.append(1)
        return dist.all_reduce(bucket.buffer(), async_op=True).get_future().then(lambda f: f.value()[0])

    up.ddp.register_comm_hook(None, counting)
    return calls


def test_under_a_process_group_of_one_the_model_trains_in_ddp_and_all_reduces_once_per_update(group_of_one):
    plain = updater()
    up = updater(accumulate=2)
    assert Distributed().grouped and isinstance(up.ddp, torch.nn.parallel.DistributedDataParallel)
    assert getattr(up.ddp, "forward_sync_buffers", getattr(up.ddp, "broadcast_buffers", None)) is False
    calls = _all_reduces(up)
    up.update([a_batch(0)])
    once = len(calls)
    up.update([a_batch(1), a_batch(2)])  # accumulated: the first backward pass does not all-reduce
    assert once > 0 and len(calls) == 2 * once
    # One rank's DDP changes nothing in the arithmetic.
    plain.update([a_batch(0)])
    plain.update([a_batch(1), a_batch(2)])
    for (name, a), b in zip(plain.model.state_dict().items(), up.model.state_dict().values()):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5, msg=name)


def test_compiled_ddp_still_skips_the_all_reduce_of_accumulated_micro_batches(group_of_one):
    up = updater(compile=True)
    assert up.step_model is not up.ddp  # torch.compile's wrapper, which DDP's no_sync is not on
    entered = []
    real = up.ddp.no_sync
    up.ddp.no_sync = lambda: (entered.append(1), real())[1]
    with up._maybe_no_sync(last=False):
        pass
    with up._maybe_no_sync(last=True):
        pass
    assert entered == [1]


def test_a_scaler_skipped_update_advances_neither_the_step_nor_the_logged_averages(tmp_path, monkeypatch):
    real, calls, logged = Updater.update, {"n": 0}, []

    def third_skipped(self, micro):
        calls["n"] += 1
        if calls["n"] != 3:
            return real(self, micro)
        inf = torch.tensor(float("inf"))  # what an fp16 overflow returns: nothing applied
        return UpdateResult(False, inf, torch.tensor(1.0), inf, 999, inf, 1, 0.0, scaler_skipped=True)

    monkeypatch.setattr(step_module.Updater, "update", third_skipped)
    monkeypatch.setattr(Window, "add", lambda self, update, add=Window.add: (logged.append(update.tokens),
                                                                             add(self, update)))
    corpus = small_corpus(tmp_path / "c.jsonl")
    config = small_config(tmp_path, corpus, "skips", max_steps=6, log_every=3)
    trainer = Trainer(config, set_up_run(config, log=lambda *_: None))
    state = trainer.fit()
    assert state.step == 6 and state.scaler_skips == 1 and state.skipped_batches == 0 and calls["n"] == 7
    assert len(logged) == 6 and 999 not in logged and trainer.updater.scheduler.last_epoch == 6


def test_each_rank_resumes_its_own_generators():
    saved = [{"rank": 0}, {"rank": 1}]
    assert own_rng_state(saved, 1) == {"rank": 1} and own_rng_state(saved, 3) == {"rank": 0}
    assert own_rng_state({"rank": 0}, 0) == {"rank": 0}  # one process's checkpoint


@pytest.mark.parametrize("enabled", [False, True])
def test_batches_prepared_ahead_come_in_order_and_stop_with_the_caller(enabled):
    made = []

    def items():
        for i in range(10):
            made.append(i)
            yield i

    assert list(prepared_ahead(items(), enabled)) == list(range(10))
    made.clear()
    for item in prepared_ahead(items(), enabled):
        if item == 3:
            break
    assert made == list(range(4 + enabled))  # at most one made ahead


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_rounded_shapes_give_the_same_loss_and_gradients(precision):
    """Padding columns and pad rows added to the encoder's: the same tokens, so the same loss and
    gradients (up to summation order) as the unrounded batch."""
    import numpy as np

    from transformer_mt.data.batching import Shapes, collate
    from transformer_mt.training.objective import smoothed_loss
    corpus, indices = ragged_corpus(), np.arange(12)
    grads, losses = [], []
    for shapes in (Shapes(), Shapes(length_multiple=8, row_multiple=16)):
        model = tiny().train()
        batch = collate(corpus, indices, shapes)
        with autocast(CPU, precision), attention_kernels(CPU):
            logits = model(batch.src, batch.tgt_in, batch.src_index)
        loss, _ = smoothed_loss(logits, batch.tgt_out, 0.1)
        loss.backward()
        losses.append(loss.detach())
        grads.append({name: p.grad for name, p in model.named_parameters()})
    assert len(collate(corpus, indices, Shapes(row_multiple=16)).src_index) % 16 == 0
    # fp32's atol: the tied <bos> embedding's gradient sums a term from every target position (entries up
    # to ~17), in another order once the layout is padded: ~3e-6 apart on an AVX2 Xeon.
    tolerance = {"fp32": dict(rtol=1e-5, atol=1e-5), "bf16": dict(rtol=2e-2, atol=2e-3)}[precision]
    torch.testing.assert_close(losses[1], losses[0], **tolerance)
    for name, grad in grads[0].items():
        torch.testing.assert_close(grads[1][name], grad, **tolerance, msg=name)
