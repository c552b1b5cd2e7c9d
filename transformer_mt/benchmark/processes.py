"""Stopping a command with everything it started, read from /proc (standard library only: the GPU
check imports it before anything else is known to be installed)."""
from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from pathlib import Path


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
