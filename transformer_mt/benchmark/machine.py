"""The machine and its processes, as every benchmark describes and watches them: where the checkout is,
the CPU's name, /proc readers (memory, CPU time, a process's descendants), stopping a command with all
it started, running one of our scripts.

Only the standard library is imported at module level (the GPU check imports this before anything
else is known to be installed); `device_name` imports PyTorch when it is called.
"""
from __future__ import annotations

import contextlib
import os
import platform
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# The strongest matrix-multiply extension a CPU advertises, by its /proc/cpuinfo flag: what decides
# how fast bf16 and fp32 matmuls run here (docs/performance.md).
_MATMUL_FLAGS = (("amx_bf16", "AMX"), ("avx512_bf16", "AVX512-BF16"), ("avx512f", "AVX512"), ("avx2", "AVX2"))


def cpu_model() -> str:
    """The CPU's name where Linux tells it, with its strongest matmul extension: 'NAME (AVX2)'."""
    try:
        info = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor() or platform.machine()
    lines = info.splitlines()
    name = next((line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")), None)
    flags = set(next((line.split(":", 1)[1].split() for line in lines if line.startswith("flags")), []))
    extension = next((label for flag, label in _MATMUL_FLAGS if flag in flags), None)
    name = name or platform.processor() or platform.machine()
    return f"{name} ({extension})" if extension else name


def device_name(device) -> str:
    """A GPU's name, or the CPU's with the threads PyTorch uses."""
    import torch

    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"{cpu_model()}, {torch.get_num_threads()} threads"


def revision(code: Path = ROOT) -> str:
    """`git describe` of a checkout: the code a figure was measured with."""
    result = subprocess.run(["git", "describe", "--always", "--dirty"], cwd=code, capture_output=True, text=True)
    return result.stdout.strip() or "unknown"


def log(message: str) -> None:
    print(message, flush=True)


def log_stamped(source: str, message: str) -> None:
    """A progress line on stderr, for benchmarks whose stdout is their report."""
    print(f"[{source} {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def run_script(name: str, *args: str) -> str:
    """Run one of our scripts; its stdout, or a UserError with the last line it wrote to stderr."""
    from ..errors import UserError

    result = subprocess.run([sys.executable, f"scripts/{name}", *args], cwd=ROOT, capture_output=True, text=True)
    if result.returncode != 0:
        last = (result.stderr.strip().splitlines() or ["no message"])[-1]
        raise UserError(f"scripts/{name} exited with {result.returncode}: {last}")
    return result.stdout


# /proc readers (Linux; each answers 0 or None where a process is gone or /proc is absent).

def children_by_parent() -> dict[int, list[int]]:
    """Every process's children, from /proc/PID/stat (its fourth field is the parent's pid)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, IndexError, ValueError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    return children


def descendants(pid: int) -> list[int]:
    """`pid`'s children, theirs, and so on: found before any is signalled, since a child whose parent
    dies is adopted by init and can no longer be traced back (torchrun's workers sit in sessions of
    their own, out of reach of a process-group kill)."""
    children, found, todo = children_by_parent(), [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def status_kib(pid: int, field: str) -> int:
    """A /proc/PID/status field in KiB (VmRSS:, VmHWM:, ...)."""
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field):
                return int(line.split()[1])
    return 0


def resident_bytes(pid: int) -> int | None:
    """A process's resident memory, or None where it is gone."""
    return status_kib(pid, "VmRSS:") * 1024 if Path(f"/proc/{pid}/status").exists() else None


def tree_resident_bytes(pid: int) -> int:
    """Resident bytes of `pid` and all its descendants."""
    return sum(status_kib(p, "VmRSS:") * 1024 for p in [pid, *descendants(pid)])


def anonymous_bytes(pid: int) -> int:
    """Anonymous memory of one process: what it holds privately (file-backed pages, a memory-mapped
    corpus among them, are shared through the page cache and are not counted)."""
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Anonymous:"):
                return int(line.split()[1]) * 1024
    return 0


def cpu_seconds(pid: int, thread: int | None = None) -> float | None:
    """User + system CPU seconds of a process, or of one of its threads."""
    path = f"/proc/{pid}/task/{thread}/stat" if thread else f"/proc/{pid}/stat"
    try:
        fields = Path(path).read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def own_cpu_seconds() -> float | None:
    return cpu_seconds(os.getpid())


# Stopping a command with everything it started.

def stop_tree(process: subprocess.Popen, grace: float = 10.0) -> tuple[str, str]:
    """SIGTERM to `process`, its process group and every descendant (it may save or write what it
    has), SIGKILL `grace` seconds later to whatever is left; what it printed."""
    tree = [process.pid, *descendants(process.pid)]
    for sig in (signal.SIGTERM, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, sig)
        for pid in tree:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, sig)
        try:
            return process.communicate(timeout=grace)
        except subprocess.TimeoutExpired:
            continue
    return "", ""


def run_bounded(command: list[str], seconds: float, **popen) -> subprocess.CompletedProcess:
    """subprocess.run(..., timeout=seconds) that, at the timeout, stops every process the command
    started (not only the first), then raises subprocess.TimeoutExpired with what it printed."""
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               start_new_session=True, **popen)
    try:
        stdout, stderr = process.communicate(timeout=seconds)
    except subprocess.TimeoutExpired:
        stdout, stderr = stop_tree(process)
        raise subprocess.TimeoutExpired(command, seconds, stdout, stderr) from None
    return subprocess.CompletedProcess(command, process.returncode, stdout, stderr)
