"""The server's Prometheus metrics, in a registry of its own (no process-global state)."""
from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

SECONDS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
# Fine enough (steps of 20 %, 1 ms to 60 s) that a median read off it is within 10 % of the true one.
BATCH_SECONDS = tuple(round(0.001 * 1.2 ** k, 6) for k in range(61))


class Metrics:
    def __init__(self):
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("mt_requests", "HTTP requests answered", ["route", "status"], registry=r)
        self.latency = Histogram("mt_request_seconds", "Time to answer a request", ["route"], buckets=SECONDS,
                                 registry=r)
        self.queue_wait = Histogram("mt_queue_wait_seconds", "Time a request's sentences waited for a batch",
                                    buckets=SECONDS, registry=r)
        self.queue_depth = Gauge("mt_queue_sentences", "Sentences waiting for a batch", registry=r)
        self.batch_sentences = Histogram("mt_batch_sentences", "Sentences decoded together in one batch",
                                         buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512), registry=r)
        self.batch_seconds = Histogram("mt_batch_seconds", "Time to decode one batch", buckets=BATCH_SECONDS,
                                       registry=r)
        self.sentences = Counter("mt_sentences_translated", "Sentences translated", registry=r)
        self.tokens = Counter("mt_source_tokens_translated", "Source tokens translated", registry=r)
