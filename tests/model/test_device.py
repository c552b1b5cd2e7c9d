import pytest
import torch

from transformer_mt.errors import UserError
from transformer_mt.model import device


@pytest.mark.parametrize("native", [True, False])
def test_bf16_warns_only_where_the_cpu_emulates_it(monkeypatch, native):
    monkeypatch.setattr(device, "cpu_supports_bf16", lambda: native)
    cpu = torch.device("cpu")
    assert device.slow_precision_warning("fp32", cpu) is None
    warning = device.slow_precision_warning("bf16", cpu)
    assert (warning is None) == native
    if not native:
        assert "emulated" in warning and "use fp32" in warning
    assert device.pick_precision("auto", cpu) == ("bf16" if native else "fp32")


def test_fp16_warns_on_a_cpu_without_amx_fp16(monkeypatch):
    monkeypatch.setattr(torch.cpu, "_is_amx_fp16_supported", lambda: False, raising=False)
    assert "fp16 on this CPU is emulated" in device.slow_precision_warning("fp16", torch.device("cpu"))


def test_gpus_never_get_the_cpu_warning(monkeypatch):
    monkeypatch.setattr(device, "cpu_supports_bf16", lambda: False)
    assert device.slow_precision_warning("bf16", torch.device("cuda")) is None


def test_fp16_training_on_cpu_is_a_user_error():
    with pytest.raises(UserError, match="fp16 needs CUDA"):
        device.pick_precision("fp16", torch.device("cpu"))


def test_the_encoder_rows_are_rounded_by_default_only_for_bf16_on_cpu():
    from transformer_mt.model.device import row_multiple
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert row_multiple(None, cpu, "bf16") == 32
    assert row_multiple(None, cpu, "fp32") == row_multiple(None, cuda, "bf16") == 1
    assert row_multiple(5, cpu, "fp32") == row_multiple(5, cpu, "bf16") == 5


def test_cpu_attention_runs_the_math_kernel_whatever_the_cuda_setting_names():
    """What the profiler shows PyTorch running for each attention call of a batch: on CPU, math."""
    chosen = device.attention_kernels_chosen(torch.device("cpu"), torch.bfloat16, heads=2, head_dim=8, batch=2,
                                             src_len=5, tgt_len=4, backends=["flash"])
    assert chosen == {"encoder_self": "math", "decoder_self": "math", "cross": "math"}
