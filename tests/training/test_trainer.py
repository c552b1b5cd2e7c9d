import math

import pytest
import torch
import torch.nn.functional as F

from transformer_mt.data.tokenizer import PAD
from transformer_mt.training.objective import adam, noam_lambda, smoothed_loss


def test_label_smoothed_loss_matches_hand_computation():
    torch.manual_seed(0)
    logits = torch.randn(2, 3, 7)
    target = torch.tensor([[4, 5, PAD], [6, 1, 2]])
    eps = 0.1
    logp = logits.log_softmax(-1)
    expected_loss = expected_nll = 0.0
    for b in range(2):
        for t in range(3):
            if target[b, t] == PAD:
                continue
            nll = -logp[b, t, target[b, t]].item()
            uniform = -logp[b, t].mean().item()  # ε spread over all V classes, as PyTorch does
            expected_loss += (1 - eps) * nll + eps * uniform
            expected_nll += nll
    loss, nll = smoothed_loss(logits, target, eps)
    assert loss.item() == pytest.approx(expected_loss, rel=1e-5)
    assert nll.item() == pytest.approx(expected_nll, rel=1e-5)


def test_no_smoothing_equals_nll():
    logits, target = torch.randn(3, 4, 9), torch.randint(1, 9, (3, 4))
    target[0, 2:] = PAD
    loss, nll = smoothed_loss(logits, target, 0.0)
    reference = F.nll_loss(logits.log_softmax(-1).flatten(0, 1), target.flatten(), ignore_index=PAD, reduction="sum")
    torch.testing.assert_close(loss, reference)
    torch.testing.assert_close(nll, reference)


def test_loss_and_gradient_match_pytorchs_label_smoothed_cross_entropy():
    logits, target = torch.randn(3, 5, 11, requires_grad=True), torch.randint(1, 11, (3, 5))
    target[1, 3:] = PAD
    loss, _ = smoothed_loss(logits, target, 0.1)
    (grad,) = torch.autograd.grad(loss, logits)
    reference = F.cross_entropy(logits.flatten(0, 1), target.flatten(), ignore_index=PAD, label_smoothing=0.1,
                                reduction="sum")
    (reference_grad,) = torch.autograd.grad(reference, logits)
    torch.testing.assert_close(loss, reference)
    torch.testing.assert_close(grad, reference_grad)


def test_inverse_sqrt_warmup():
    factor = noam_lambda(100)
    assert factor(0) == pytest.approx(0.01)
    assert factor(49) == pytest.approx(0.5)
    assert factor(99) == pytest.approx(1.0)
    assert factor(399) == pytest.approx(math.sqrt(100 / 400))


def test_fused_adam_matches_the_per_tensor_reference():
    torch.manual_seed(0)
    params = [torch.randn(5, 3, requires_grad=True), torch.randn(7, requires_grad=True)]
    start = [p.detach().clone() for p in params]
    reference_params = [p.clone().requires_grad_() for p in start]
    fused = adam(params, 1e-2, (0.9, 0.98), 1e-9, weight_decay=0.01)
    reference = torch.optim.Adam(reference_params, lr=1e-2, betas=(0.9, 0.98), eps=1e-9, weight_decay=0.01,
                                 foreach=False)
    assert fused.defaults["fused"]
    for _ in range(5):
        grads = [torch.randn_like(p) for p in params]
        for optimizer, group in ((fused, params), (reference, reference_params)):
            for p, g in zip(group, grads):
                p.grad = g.clone()
            optimizer.step()
    for p, r, s in zip(params, reference_params, start):
        assert not torch.equal(p.detach(), s)
        torch.testing.assert_close(p, r)


def test_adamw_shrinks_the_weights_instead_of_adding_decay_to_the_gradient():
    """train.optimizer=adamw: the fused kernel against AdamW's update written out (Loshchilov & Hutter)."""
    torch.manual_seed(0)
    lr, (b1, b2), eps, wd = 1e-2, (0.9, 0.98), 1e-9, 0.1
    param = torch.randn(6, 4, requires_grad=True)
    coupled = param.detach().clone().requires_grad_()
    expected, m, v = param.detach().clone(), torch.zeros(6, 4), torch.zeros(6, 4)
    adamw = adam([param], lr, (b1, b2), eps, weight_decay=wd, decoupled=True)
    l2 = adam([coupled], lr, (b1, b2), eps, weight_decay=wd)
    assert adamw.defaults["fused"]
    for t in range(1, 6):
        grad = torch.randn(6, 4)
        param.grad, coupled.grad = grad.clone(), grad.clone()
        adamw.step()
        l2.step()
        m, v = b1 * m + (1 - b1) * grad, b2 * v + (1 - b2) * grad**2
        expected = expected * (1 - lr * wd) - lr * (m / (1 - b1**t)) / ((v / (1 - b2**t)).sqrt() + eps)
    torch.testing.assert_close(param.detach(), expected)
    assert not torch.allclose(param, coupled)  # Adam's L2 decay is a different rule


def test_bf16_training_on_a_cpu_without_bf16_warns_and_still_trains(tmp_path, monkeypatch, capsys):
    from tests.helpers.runs import small_config, small_corpus
    from transformer_mt.model import device
    from transformer_mt.training.loop import Trainer
    from transformer_mt.training.setup import set_up_run
    monkeypatch.setattr(device, "cpu_supports_bf16", lambda: False)
    config = small_config(tmp_path, small_corpus(tmp_path / "c.jsonl", 100), "bf16", precision="bf16", max_steps=2)
    state = Trainer(config, set_up_run(config, log=lambda *_: None)).fit()
    assert state.step == 2
    assert "warning: bf16 on this CPU is emulated" in capsys.readouterr().out
