import os
import platform
import subprocess
import sys

import pytest
import torch

from transformer_mt import device
from transformer_mt.errors import UserError


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


_FAULTS = """
import resource, sys, torch
from transformer_mt.device import retain_freed_memory
applied = retain_freed_memory() if sys.argv[1] == "retain" else False
for _ in range(10):  # the heap settles: fragments of 64 MiB blocks coalesce, then get reused
    torch.ones(16 << 20)  # 64 MiB, above any size glibc keeps by default
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(5):
    torch.ones(16 << 20)
print(applied, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def _page_faults(mode: str) -> tuple[str, int]:
    result = subprocess.run([sys.executable, "-c", _FAULTS, mode], capture_output=True, text=True, check=True)
    applied, faults = result.stdout.split()
    return applied, int(faults)


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="the setting is glibc's")
def test_retained_memory_is_reused_instead_of_faulted_in_again(monkeypatch):
    for name in [n for n in os.environ if n.startswith("MALLOC_") or n in ("GLIBC_TUNABLES", "LD_PRELOAD")]:
        monkeypatch.delenv(name)
    applied, retained = _page_faults("retain")
    _, default = _page_faults("default")
    assert applied == "True"
    assert default > 5 * 16_000 * 0.9  # 64 MiB is ~16,000 pages, faulted in again on every allocation
    assert retained < default / 20


@pytest.mark.parametrize("setting", [{"MALLOC_ARENA_MAX": "2"}, {"GLIBC_TUNABLES": ""},
                                     {"LD_PRELOAD": "libjemalloc.so.2"}])
def test_a_malloc_the_user_chose_is_left_alone(monkeypatch, setting):
    for name, value in setting.items():
        monkeypatch.setenv(name, value)
    assert device.retain_freed_memory() is False


def test_the_encoder_rows_are_rounded_by_default_only_for_bf16_on_cpu():
    from transformer_mt.device import row_multiple
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert row_multiple(None, cpu, "bf16") == 32
    assert row_multiple(None, cpu, "fp32") == row_multiple(None, cuda, "bf16") == 1
    assert row_multiple(5, cpu, "fp32") == row_multiple(5, cpu, "bf16") == 5
