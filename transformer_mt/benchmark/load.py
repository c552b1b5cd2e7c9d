"""Load on a translation server: closed-loop asyncio + httpx clients, each sending one sentence per
request to LibreTranslate's POST /translate and the next as soon as the answer comes, for a bounded
time; what they measure, and what the server's Prometheus histograms say of the same window."""
from __future__ import annotations

import asyncio
import concurrent.futures
import itertools
import multiprocessing
import ssl
import statistics
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

import httpx
from prometheus_client.parser import text_string_to_metric_families


@dataclass
class LoadFigure:
    clients: int
    seconds: float  # from the first request to the last answer
    requests: int
    translated: int  # answered 200
    sentences_per_sec: float
    latency_ms: dict[str, float]  # p50 / p95 / p99 / max of the 200s
    statuses: dict[str, int]  # every answer by status, and "timeout" / "transport" for none
    rejected_latency_ms: dict[str, float] = field(default_factory=dict)  # the same of the 429s
    by_words: dict[str, dict[str, float]] = field(default_factory=dict)  # the 200s' by the sentence's words
    batch: dict[str, float] = field(default_factory=dict)  # the server's: mean sentences, median seconds
    cpu: dict[str, float] = field(default_factory=dict)  # CPU spent per request by the clients and the server

    @property
    def errors(self) -> int:
        return self.requests - self.translated


def percentiles(samples: list[float]) -> dict[str, float]:
    if not samples:
        return {}
    cuts = statistics.quantiles(samples, n=100, method="inclusive") if len(samples) > 1 else samples * 99
    return {"p50": round(cuts[49], 2), "p95": round(cuts[94], 2), "p99": round(cuts[98], 2),
            "max": round(max(samples), 2)}


@dataclass
class _Tally:
    latencies: list[float] = field(default_factory=list)
    words: list[int] = field(default_factory=list)  # of each of `latencies`' sentences
    rejected: list[float] = field(default_factory=list)
    statuses: Counter = field(default_factory=Counter)
    first: float = float("inf")
    last: float = 0.0


def text_request(sentence: str) -> dict:
    return {"q": sentence, "source": "en", "target": "fr"}


def html_request(page: str) -> dict:
    return {"q": page, "source": "en", "target": "fr", "format": "html"}


async def _client(http: httpx.AsyncClient, sentences: list[str], order: itertools.count, until: float,
                  tally: _Tally, honour_retry_after: bool, body: Callable[[str], dict]) -> None:
    while time.monotonic() < until:
        sentence = sentences[next(order) % len(sentences)]
        started = time.monotonic()
        tally.first = min(tally.first, started)
        try:
            answer = await http.post("/translate", json=body(sentence))
            status = str(answer.status_code)
        except httpx.TimeoutException:
            answer, status = None, "timeout"
        except httpx.TransportError:
            answer, status = None, "transport"
        ended = time.monotonic()
        tally.last = max(tally.last, ended)
        tally.statuses[status] += 1
        if status == "200":
            tally.latencies.append((ended - started) * 1000)
            tally.words.append(len(sentence.split()))
        elif status == "429":
            tally.rejected.append((ended - started) * 1000)
            if honour_retry_after:  # as a well-behaved client does, at most a second here
                await asyncio.sleep(min(float(answer.headers.get("Retry-After", 1)), 1.0))


async def _load(url: str, sentences: list[str], clients: int, seconds: float, timeout: float,
                honour_retry_after: bool, body: Callable[[str], dict]) -> _Tally:
    tally, order = _Tally(), itertools.count()
    tls = ssl.create_default_context()  # unused over http://, but each client would build one (slow)
    until = time.monotonic() + seconds

    async def one() -> None:
        # A connection pool of its own per client: one pool shared by many clients costs the load
        # generator more CPU per request than the server spends (docs/serving.md).
        async with httpx.AsyncClient(base_url=url, timeout=timeout, verify=tls) as http:
            await _client(http, sentences, order, until, tally, honour_retry_after, body)

    await asyncio.gather(*(one() for _ in range(clients)))
    return tally


def load(url: str, sentences: list[str], clients: int, seconds: float, timeout: float = 60.0,
         honour_retry_after: bool = False, body: Callable[[str], dict] = text_request) -> LoadFigure:
    """`clients` concurrent clients for `seconds` (each then finishes the request it has in flight), each
    request's JSON body `body(sentence)`."""
    return _figure(clients, asyncio.run(_load(url, sentences, clients, seconds, timeout, honour_retry_after, body)))


def _figure(clients: int, tally: _Tally) -> LoadFigure:
    elapsed = max(tally.last - tally.first, 1e-9)
    return LoadFigure(clients, round(elapsed, 2), sum(tally.statuses.values()), len(tally.latencies),
                      round(len(tally.latencies) / elapsed, 2), percentiles(tally.latencies),
                      dict(sorted(tally.statuses.items())), percentiles(tally.rejected), by_words(tally))


WORD_GROUPS = ((1, 5), (6, 8), (9, 12), (13, 20), (21, 10**6))


def by_words(tally: _Tally) -> dict[str, dict[str, float]]:
    """Latency percentiles of short and long sentences apart: is the tail the long ones?"""
    found = {}
    for low, high in WORD_GROUPS:
        mine = [ms for words, ms in zip(tally.words, tally.latencies) if low <= words <= high]
        if mine:
            found[f"{low}-{high}" if high < 10**6 else f"{low}+"] = {"requests": len(mine), **percentiles(mine)}
    return found


def poll_health(url: str, seconds: float, every: float = 0.2) -> list[tuple[str, float]]:
    """GET /health every `every` seconds for `seconds`: (status, milliseconds) of each. Run it in a
    process of its own: in the clients' event loop it would time their queueing, not the server."""
    found, until = [], time.monotonic() + seconds
    with httpx.Client(base_url=url, timeout=10) as http:
        while time.monotonic() < until:
            started = time.monotonic()
            try:
                status = str(http.get("/health").status_code)
            except httpx.TimeoutException:
                status = "timeout"
            except httpx.TransportError:
                status = "transport"
            found.append((status, (time.monotonic() - started) * 1000))
            time.sleep(max(0.0, every - (time.monotonic() - started)))
    return found


def load_with_health(url: str, sentences: list[str], clients: int, seconds: float,
                     timeout: float) -> tuple[LoadFigure, list[tuple[str, float]]]:
    """`load`, honouring Retry-After, with /health polled throughout from another process."""
    with concurrent.futures.ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        pool.submit(percentiles, [0.0]).result()  # the poller started and this module imported before the load
        health = pool.submit(poll_health, url, seconds)
        figure = load(url, sentences, clients, seconds, timeout, honour_retry_after=True)
        return figure, health.result()


class Histograms:
    """The cumulative buckets of the server's Prometheus histograms at one moment."""

    def __init__(self, metrics_text: str):
        self.buckets: dict[str, dict[float, float]] = {}
        self.sums: dict[str, float] = {}
        for family in text_string_to_metric_families(metrics_text):
            if family.type != "histogram":
                continue
            for sample in family.samples:
                if sample.name.endswith("_bucket"):
                    self.buckets.setdefault(family.name, {})[float(sample.labels["le"])] = sample.value
                elif sample.name.endswith("_sum"):
                    self.sums[family.name] = sample.value

    def since(self, earlier: "Histograms", name: str) -> tuple[dict[float, float], float]:
        """The buckets and the sum of what was observed between `earlier` and this moment."""
        now, then = self.buckets.get(name, {}), earlier.buckets.get(name, {})
        return ({le: count - then.get(le, 0.0) for le, count in now.items()},
                self.sums.get(name, 0.0) - earlier.sums.get(name, 0.0))


def quantile(buckets: dict[float, float], q: float) -> float | None:
    """The q-quantile of a cumulative histogram, interpolated linearly inside its bucket (as Prometheus's
    histogram_quantile does)."""
    bounds = sorted(buckets)
    total = buckets[bounds[-1]] if bounds else 0
    if not total:
        return None
    rank, lower, below = q * total, 0.0, 0.0
    for bound in bounds:
        if buckets[bound] >= rank:
            if bound == float("inf"):
                return lower
            inside = buckets[bound] - below
            return lower + (bound - lower) * ((rank - below) / inside if inside else 1.0)
        lower, below = bound, buckets[bound]
    return lower


def batch_figures(before: Histograms, after: Histograms) -> dict[str, float]:
    """The server's batches of a window: how many, their mean sentences and their median decode time."""
    sizes, sentences = after.since(before, "mt_batch_sentences")
    times, _ = after.since(before, "mt_batch_seconds")
    count = sizes.get(float("inf"), 0.0)
    if not count:
        return {}
    return {"batches": count, "mean_sentences": round(sentences / count, 2),
            "median_ms": round(quantile(times, 0.5) * 1000, 2), "p99_ms": round(quantile(times, 0.99) * 1000, 2)}
