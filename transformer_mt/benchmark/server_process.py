"""The real server (scripts/serve.py) as a subprocess on a free loopback port, as a client meets it:
for the serving benchmark and the serving tests."""
from __future__ import annotations

import signal
import socket
import subprocess
import sys
import tempfile
import time

import httpx

from ..errors import UserError
from .machine import ROOT, cpu_seconds, resident_bytes


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServerProcess:
    """Started ready (GET /ready answers 200) or not at all. Its output goes to a file, not a pipe: a
    pipe nobody reads fills with access-log lines and stops the server."""

    def __init__(self, model_flags: list[str], *flags: str, threads: int = 1, ready_within: float = 120.0):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._log = tempfile.TemporaryFile("w+", encoding="utf-8")
        self.process = subprocess.Popen([sys.executable, "scripts/serve.py", *model_flags, "--device", "cpu",
                                         "--threads", str(threads), "--port", str(self.port), *flags], cwd=ROOT,
                                        stdout=self._log, stderr=subprocess.STDOUT, text=True)
        deadline = time.monotonic() + ready_within
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise UserError(f"the server exited with status {self.process.returncode}: {self.output()[-2000:]}")
            try:
                if httpx.get(f"{self.url}/ready", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                time.sleep(0.2)
        self.stop()
        raise UserError(f"the server was not ready within {ready_within:g} s")

    def output(self) -> str:
        self._log.seek(0)
        return self._log.read()

    def resident_bytes(self) -> int | None:
        """The server's resident memory (Linux /proc; None elsewhere)."""
        return resident_bytes(self.process.pid)

    def cpu_seconds(self) -> tuple[float | None, float | None]:
        """CPU time the server has used: all its threads, and its event loop's (the main thread's)."""
        return cpu_seconds(self.process.pid), cpu_seconds(self.process.pid, self.process.pid)

    def metrics(self) -> str:
        return httpx.get(f"{self.url}/metrics", timeout=30).text

    def stop(self, grace: float = 30.0) -> tuple[int, str]:
        """SIGTERM (the server drains and exits), then SIGKILL after `grace` seconds."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        output = self.output()
        self._log.close()
        return self.process.returncode, output

    def __enter__(self) -> "ServerProcess":
        return self

    def __exit__(self, *exc) -> None:
        if not self._log.closed:
            self.stop()
