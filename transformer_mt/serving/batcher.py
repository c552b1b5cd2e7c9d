"""Cross-request batching: a worker thread takes sentences from a bounded queue, from any number of
requests, until a token budget or a maximum wait, decodes them as one length-sorted batch, and hands
each request its own results. As many workers as the translator decodes batches in parallel (one for
PyTorch, whose threads share a batch; one per CTranslate2 CPU worker), over one copy of the model; the
event loop never decodes."""
from __future__ import annotations

import collections
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass, field

from ..config import DecodeConfig
from ..decoding.translator import TextTranslator
from .metrics import Metrics
from .settings import BatchingConfig


class QueueFull(Exception):
    """The queue holds as many sentences as it may: answer 429 at once, never wait."""


class DeadlinePassed(Exception):
    """The request waited in the queue past its deadline: answer 503."""


class WorkerStopped(Exception):
    """The batcher is stopping or its worker died: answer 503."""


@dataclass
class Job:
    """One request's sentences, searched together with other jobs of the same settings."""
    sources: list[list[int]]  # each sentence's source ids as the encoder reads them (tokenized once, on arrival)
    decode: DecodeConfig
    nbest: int
    deadline: float  # time.monotonic()
    align: list[bool] | None = None  # per sentence: its hypotheses aligned to it (HTML: where inline tags go)
    queued: float = field(default_factory=time.monotonic)
    result: Future = field(default_factory=Future)

    @property
    def key(self) -> tuple:
        return self.decode, self.nbest

    @property
    def tokens(self) -> int:
        """Source tokens, for the batch's token budget."""
        return sum(map(len, self.sources))


class Batcher:
    def __init__(self, translator: TextTranslator, config: BatchingConfig, metrics: Metrics):
        self.translator, self.config, self.metrics = translator, config, metrics
        self._jobs: collections.deque[Job] = collections.deque()
        self._queued_sentences = 0
        self._lock = threading.Condition()
        self._stopping = False
        self._decoding = 0  # workers decoding a batch
        self._gathering = False  # one worker at a time gathers a batch; the others wait their turn
        lanes = translator.parallel_batches if config.batching else 1
        self._workers = [threading.Thread(target=self._run, name=f"batcher-{n}", daemon=True) for n in range(lanes)]

    def start(self) -> None:
        for worker in self._workers:
            worker.start()

    @property
    def alive(self) -> bool:
        return all(worker.is_alive() for worker in self._workers) and not self._stopping

    def check_room(self, sentences: int) -> None:
        """QueueFull or WorkerStopped now if `sentences` more would be refused: a request learns it
        before it costs any tokenizing (submit decides again, atomically)."""
        with self._lock:
            self._check_room(sentences)

    def submit(self, job: Job) -> Future:
        with self._lock:
            self._check_room(len(job.sources))
            self._jobs.append(job)
            self._queued_sentences += len(job.sources)
            self.metrics.queue_depth.set(self._queued_sentences)
            self._lock.notify_all()  # the gathering worker must hear of it, not only an idle one
        return job.result

    def _check_room(self, sentences: int) -> None:
        if not self.alive:  # stopping, or a worker died
            raise WorkerStopped("the server is stopping")
        if self._queued_sentences + sentences > self.config.queue_sentences:
            raise QueueFull(f"{self._queued_sentences} sentences are waiting (at most "
                            f"{self.config.queue_sentences}): retry shortly")

    def stop(self, timeout: float) -> None:
        """Finish what is queued (within `timeout` seconds), then end the workers."""
        with self._lock:
            self._stopping = True
            self._lock.notify_all()
        ends = time.monotonic() + timeout
        for worker in self._workers:
            worker.join(max(0.0, ends - time.monotonic()))

    def _run(self) -> None:
        while True:
            batch = self._next_batch()
            if batch is None:
                return
            try:
                self._decode(batch)
            finally:
                with self._lock:
                    self._decoding -= 1
                    self._lock.notify_all()  # a worker is free: a batch gathering elsewhere goes now

    def _next_batch(self) -> list[Job] | None:
        """Jobs of one search setting: the first waiting, then others until the token budget or the
        first's maximum wait, but no waiting while another worker is free (the batch is decoded at
        once, and the next one gathers on that worker). One worker gathers at a time, so a worker
        that comes free never takes a job from under a batch that was waiting for it. None when
        stopping and nothing is left."""
        with self._lock:
            while self._gathering or not self._jobs:
                if self._stopping and not self._jobs:
                    return None
                self._lock.wait()
            self._gathering = True
            try:
                batch = self._gather()
            finally:
                self._gathering = False
                self._lock.notify_all()  # the next idle worker may gather what is left
            self._decoding += 1
            self._queued_sentences -= sum(len(j.sources) for j in batch)
            self.metrics.queue_depth.set(self._queued_sentences)
        return batch

    def _gather(self) -> list[Job]:
        """Under the lock, with a job waiting: the batch `_next_batch` describes."""
        batch = [self._jobs.popleft()]
        if not self.config.batching:
            return batch
        until = batch[0].queued + self.config.max_wait_ms / 1000
        while sum(j.tokens for j in batch) < self.config.max_batch_tokens:
            fitting = next((j for j in self._jobs if j.key == batch[0].key), None)
            if fitting is not None:
                self._jobs.remove(fitting)
                batch.append(fitting)
                continue
            left = until - time.monotonic()
            if left <= 0 or self._stopping or len(self._workers) - 1 - self._decoding > 0:
                break
            self._lock.wait(left)
        return batch

    def _decode(self, batch: list[Job]) -> None:
        now = time.monotonic()
        live = []
        for job in batch:
            self.metrics.queue_wait.observe(now - job.queued)
            if not job.result.set_running_or_notify_cancel():  # its request gave up waiting
                continue
            if now > job.deadline:
                job.result.set_exception(DeadlinePassed("the request waited past its deadline in the queue"))
            else:
                live.append(job)
        if not live:
            return
        sentences = [s for job in live for s in job.sources]
        started = time.monotonic()
        try:  # a bad batch fails its requests, never the worker
            align = [wanted for job in live for wanted in job.align or [False] * len(job.sources)] \
                if any(job.align for job in live) else None
            translations = self.translator.translate_encoded(sentences, live[0].decode, live[0].nbest, align)
        except Exception as err:
            for job in live:
                job.result.set_exception(err)
            return
        self.metrics.batch_seconds.observe(time.monotonic() - started)
        self.metrics.batch_sentences.observe(len(sentences))
        self.metrics.sentences.inc(len(sentences))
        self.metrics.tokens.inc(sum(job.tokens for job in live))
        start = 0
        for job in live:
            job.result.set_result(translations[start : start + len(job.sources)])
            start += len(job.sources)
