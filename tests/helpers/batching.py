"""A stand-in translator for the batcher and service tests, and jobs for it."""
import threading
import time

from transformer_mt.config import DecodeConfig
from transformer_mt.decoding.translator import Translation
from transformer_mt.serving.batcher import Batcher, Job
from transformer_mt.serving.metrics import Metrics
from transformer_mt.serving.settings import BatchingConfig


class Recorder:
    """Translates a sentence to its upper case, recording each batch; `hold` keeps a batch decoding
    until released, to see what the other workers do meanwhile."""

    def __init__(self, parallel_batches: int = 1, hold: threading.Event | None = None):
        self.parallel_batches, self.hold = parallel_batches, hold
        self.batches, self.at_once, self._running, self._lock = [], 0, 0, threading.Lock()

    def translate_encoded(self, sources, decode, nbest, align=None):
        sentences = ["".join(map(chr, ids)) for ids in sources]
        with self._lock:
            self.batches.append(list(sentences))
            self._running += 1
            self.at_once = max(self.at_once, self._running)
        try:
            if "fail" in sentences:
                raise RuntimeError("this batch fails")
            if self.hold is not None:
                assert self.hold.wait(10)
            return [[Translation(s.upper(), 0.0)] for s in sentences]
        finally:
            with self._lock:
                self._running -= 1


def job(*sentences: str) -> Job:
    """A request's sentences, "tokenized" to their code points (the Recorder reads them back)."""
    return Job([list(map(ord, s)) for s in sentences], DecodeConfig(), 1, time.monotonic() + 30)


def started(translator, **config) -> Batcher:
    batcher = Batcher(translator, BatchingConfig(**config), Metrics())
    batcher.start()
    return batcher
