import os
import platform
import subprocess
import sys

import pytest

from transformer_mt.malloc import retain_freed_memory

_FAULTS = """
import resource, sys, torch
from transformer_mt.malloc import retain_freed_memory
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
    assert retain_freed_memory() is False
