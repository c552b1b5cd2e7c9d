"""What a server is told: batching across requests, the limits on a request, and the server's own
settings, with their defaults stated once (scripts/serve.py's flags and the benchmarks read them here).
No dependency beyond the standard library, so the command line can check its flags before the serve
extra loads."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class BatchingConfig:
    max_batch_tokens: int = 4096  # source tokens a batch gathers before it is decoded
    max_wait_ms: float = 5.0  # how long the first job of a batch waits for others
    queue_sentences: int = 1024  # sentences waiting at most; more get 429
    batching: bool = True  # False: one job at a time (what servers without batching do)


@dataclass(frozen=True)
class Limits:
    max_chars: int = 5000  # characters of one request, all its texts together
    max_texts: int = 128  # texts in one request's list
    max_body_bytes: int = 1 << 20
    max_alternatives: int = 4
    max_beam: int = 16
    timeout_s: float = 30.0  # a request not answered by then gets 503


@dataclass(frozen=True)
class ServeConfig:
    batching: BatchingConfig = BatchingConfig()
    limits: Limits = Limits()
    cors_origins: tuple[str, ...] = ()  # none: no CORS headers, browsers keep other sites out
    drain_seconds: float = 10.0  # at shutdown, how long queued sentences may take to finish
