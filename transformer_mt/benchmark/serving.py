"""The serving benchmark (make bench-serve): the real server under 1 to 128 closed-loop clients, with
and without batching across requests, against offline batch translation of the same sentences with
the same backend and threads; then an overload run and a soak (docs/serving.md explains each figure)."""
from __future__ import annotations

import gc
import random
import statistics
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date

import torch

from ..decoding.translator import TextTranslator
from ..serving.settings import BatchingConfig
from .html_pages import tagged_paragraphs
from .load import (
    Histograms,
    LoadFigure,
    batch_figures,
    html_request,
    load,
    load_with_health,
    percentiles,
    text_request,
)
from .machine import device_name, log, own_cpu_seconds
from .server_process import ServerProcess

MAX_WAIT_MS = BatchingConfig.max_wait_ms  # the server's default, which the targets are stated against


@dataclass(frozen=True)
class ServeSizes:
    levels: tuple[int, ...]  # concurrent clients
    seconds: float  # measured at each level
    warmup: float  # at each level, before it is measured
    single: int  # sentences decoded one at a time, offline
    random_rounds: int  # random batches of each size decoded offline
    overload_clients: int
    overload_queue: int  # the overloaded server's --queue-size
    overload_seconds: float
    soak_seconds: float
    soak_every: float  # seconds between two readings of the server's memory

    @classmethod
    def of(cls, smoke: bool) -> "ServeSizes":
        if smoke:
            return cls((1, 32), 0.6, 0.2, 5, 2, 64, 4, 1.0, 2.5, 0.25)
        return cls((1, 8, 32, 128), 15.0, 2.0, 300, 10, 512, 32, 20.0, 300.0, 5.0)


@dataclass
class Backend:
    name: str
    server_flags: list[str]  # what names the model to scripts/serve.py
    open: Callable[[], TextTranslator]  # the same model in this process, for offline translation


@dataclass
class Target:
    measured: float
    limit: float
    at_most: bool  # the measured figure must be ≤ limit (else ≥)
    met: bool = field(init=False)

    def __post_init__(self) -> None:
        self.measured, self.limit = round(self.measured, 3), round(self.limit, 3)
        self.met = self.measured <= self.limit if self.at_most else self.measured >= self.limit


@dataclass
class BackendFigures:
    offline_sentences_per_sec: float
    single_decode_ms: float  # one sentence decoded alone, the median
    random_batches: dict[str, float]  # sentences/s on one worker, by batch size
    batching: dict[str, LoadFigure] = field(default_factory=dict)  # by number of clients
    no_batching: dict[str, LoadFigure] = field(default_factory=dict)
    targets: dict[str, Target] = field(default_factory=dict)


@dataclass
class ServeReport:
    cpu: str
    torch: str
    date: str
    threads: int
    max_wait_ms: float
    sentences: int
    backends: dict[str, BackendFigures] = field(default_factory=dict)
    html: dict = field(default_factory=dict)
    detection: dict = field(default_factory=dict)
    overload: dict = field(default_factory=dict)
    soak: dict = field(default_factory=dict)
    complete: bool = False


def measure(backends: list[Backend], sentences: list[str], threads: int, sizes: ServeSizes,
            progress: Callable[[ServeReport], None] = lambda report: None) -> ServeReport:
    """Every backend in turn; the overload run and the soak on the first (the recommended one)."""
    torch.set_num_threads(threads)
    report = ServeReport(device_name(torch.device("cpu")), torch.__version__, date.today().isoformat(), threads,
                         MAX_WAIT_MS, len(sentences))
    for backend in backends:
        figures = offline(backend, sentences, sizes)
        report.backends[backend.name] = figures
        log(f"{backend.name} offline: {figures.offline_sentences_per_sec:.1f} sentences/s, one sentence alone "
            f"{figures.single_decode_ms:.1f} ms")
        for batching in (True, False):
            flags = backend.server_flags + ([] if batching else ["--no-batching"])
            with ServerProcess(flags, "--max-wait-ms", str(MAX_WAIT_MS), threads=threads) as server:
                found = figures.batching if batching else figures.no_batching
                for clients in sizes.levels:
                    found[str(clients)] = level(server, sentences, clients, sizes)
                    log(f"{backend.name} {'batching' if batching else 'no batching'} {clients} clients: "
                        f"{_line(found[str(clients)])}")
            progress(report)
        figures.targets = targets(figures)
    report.html = html_cost(backends[0], sentences, threads, sizes)
    report.detection = detection_cost(sentences, report.html)
    progress(report)
    report.overload = overload(backends[0], sentences, threads, sizes)
    progress(report)
    report.soak = soak(backends[0], sentences, threads, sizes)
    report.complete = True
    return report


def offline(backend: Backend, sentences: list[str], sizes: ServeSizes) -> BackendFigures:
    """The ceiling: all sentences translated in one call (length-sorted batches of the run's batch size),
    and one sentence alone, each timed in this process with the server's backend and threads."""
    translator = backend.open()
    translator.translate(sentences[:16])  # allocations and caches warmed, as the server's are
    started = time.perf_counter()
    translator.translate(sentences)
    rate = len(sentences) / (time.perf_counter() - started)
    alone = []
    for sentence in sentences[:sizes.single]:
        started = time.perf_counter()
        translator.translate([sentence])
        alone.append((time.perf_counter() - started) * 1000)
    figures = BackendFigures(round(rate, 2), round(statistics.median(alone), 2),
                             random_batches(translator, sentences, sizes.random_rounds))
    del translator
    gc.collect()
    return figures


def random_batches(translator: TextTranslator, sentences: list[str], rounds: int) -> dict[str, float]:
    """Sentences/s of one call at a time on batches of n sentences drawn at random, as a server's batches
    are (offline's are length-sorted): what batching gains on one of the server's workers (a
    CTranslate2 worker's core, or PyTorch's threads together)."""
    rng, found = random.Random(0), {}
    for size in (1, 8, 16, 32):
        batches = [rng.sample(sentences, min(size, len(sentences))) for _ in range(rounds)]
        started = time.perf_counter()
        for batch in batches:
            translator.translate(batch)
        found[str(size)] = round(sum(map(len, batches)) / (time.perf_counter() - started), 2)
    return found


def level(server: ServerProcess, sentences: list[str], clients: int, sizes: ServeSizes) -> LoadFigure:
    load(server.url, sentences, clients, sizes.warmup)
    before, cpu = Histograms(server.metrics()), cpu_reading(server)
    figure = load(server.url, sentences, clients, sizes.seconds)
    figure.cpu = cpu_figures(figure, cpu, cpu_reading(server))
    figure.batch = batch_figures(before, Histograms(server.metrics()))
    return figure


def cpu_reading(server: ServerProcess) -> tuple[float | None, float | None, float | None]:
    """CPU seconds so far of the clients (this process), the server, and the server's event loop."""
    return (own_cpu_seconds(), *server.cpu_seconds())


def cpu_figures(figure: LoadFigure, before: tuple, after: tuple) -> dict[str, float]:
    """Where the machine's cores went between two cpu_readings: the clients' and the server's CPU
    milliseconds per request, the server's event loop's among them, and the cores the server's
    decoding used."""
    (client0, server0, loop0), (client1, server1, loop1) = before, after
    if None in (client0, server0, loop0, client1, server1, loop1) or not figure.requests:
        return {}
    per_request = 1000 / figure.requests
    return {"client_ms": round((client1 - client0) * per_request, 2),
            "server_ms": round((server1 - server0) * per_request, 2),
            "event_loop_ms": round((loop1 - loop0) * per_request, 2),
            "decoding_cores": round((server1 - server0 - (loop1 - loop0)) / figure.seconds, 2)}


def targets(figures: BackendFigures) -> dict[str, Target]:
    """Issue 27's targets, where the levels they name were run."""
    found = {}
    alone, together, one_by_one = figures.batching.get("1"), figures.batching.get("32"), figures.no_batching.get("32")
    if together:
        found["32 clients: throughput / offline"] = Target(
            together.sentences_per_sec / figures.offline_sentences_per_sec, 0.85, at_most=False)
    if together and one_by_one:
        found["32 clients: throughput / no batching"] = Target(
            together.sentences_per_sec / max(one_by_one.sentences_per_sec, 1e-9), 3.0, at_most=False)
    if alone:
        found["1 client: p50 ms ≤ one sentence offline + max wait + 5 ms"] = Target(
            alone.latency_ms["p50"], figures.single_decode_ms + MAX_WAIT_MS + 5, at_most=True)
    if alone and alone.batch:  # each of its batches is one sentence, decoded as the server decodes it
        found["1 client: p50 ms ≤ one sentence in the server + max wait + 5 ms"] = Target(
            alone.latency_ms["p50"], alone.batch["median_ms"] + MAX_WAIT_MS + 5, at_most=True)
    if together and together.batch:
        found["32 clients: p99 ms ≤ max wait + 3 median batches"] = Target(
            together.latency_ms["p99"], MAX_WAIT_MS + 3 * together.batch["median_ms"], at_most=True)
    return found


def html_cost(backend: Backend, sentences: list[str], threads: int, sizes: ServeSizes) -> dict:
    """The same sentences as plain text and as HTML paragraphs with inline tags (html_pages), at 1 and 32
    clients on one server: the time an HTML request takes against a text one (≤ 1.25×: issue 40)."""
    pages = tagged_paragraphs(sentences)
    found: dict = {"backend": backend.name, "levels": {}, "targets": {}}
    with ServerProcess(backend.server_flags, "--max-wait-ms", str(MAX_WAIT_MS), threads=threads) as server:
        for clients in (1, 32):
            pair = {}
            for name, texts, body in (("text", sentences, text_request), ("html", pages, html_request)):
                load(server.url, texts, clients, sizes.warmup, body=body)
                pair[name] = load(server.url, texts, clients, sizes.seconds, body=body)
                log(f"{backend.name} {name} {clients} clients: {_line(pair[name])}")
            found["levels"][str(clients)] = pair
            if clients == 1:
                measured = pair["html"].latency_ms["p50"] / pair["text"].latency_ms["p50"]
                found["targets"]["1 client: HTML p50 / text p50"] = Target(measured, 1.25, at_most=True)
            else:
                measured = pair["text"].sentences_per_sec / max(pair["html"].sentences_per_sec, 1e-9)
                found["targets"]["32 clients: text throughput / HTML throughput"] = Target(measured, 1.25,
                                                                                           at_most=True)
    return found


def detection_cost(sentences: list[str], html: dict) -> dict:
    """One detection (as `source: auto` runs it, on the event loop) per test sentence and on its first
    three words, timed in this process; its share of a 1-client text request's p50 (≤ 2 %: issue 40)."""
    from ..serving.detection import Detector

    detector = Detector()
    texts = sentences + [" ".join(s.split()[:3]) for s in sentences]
    detector.best(texts[0], "en")
    timings = []
    for text in texts:
        started = time.perf_counter()
        detector.best(text, "en")
        timings.append((time.perf_counter() - started) * 1000)
    found = {"calls": len(texts), "ms": percentiles(timings)}
    alone = html.get("levels", {}).get("1", {}).get("text")
    if alone:
        found["target"] = Target(found["ms"]["p50"] / alone.latency_ms["p50"], 0.02, at_most=True)
    log(f"detection: p50 {found['ms']['p50']} ms, p99 {found['ms']['p99']} ms per call")
    return found


def overload(backend: Backend, sentences: list[str], threads: int, sizes: ServeSizes) -> dict:
    """Far more clients than the queue holds, honouring Retry-After: only 200s and 429s, none timing out,
    and /health answering throughout."""
    flags = backend.server_flags + ["--queue-size", str(sizes.overload_queue)]
    with ServerProcess(flags, "--max-wait-ms", str(MAX_WAIT_MS), threads=threads) as server:
        figure, health = load_with_health(server.url, sentences, sizes.overload_clients, sizes.overload_seconds,
                                          timeout=60.0)
    healthy = sum(status == "200" for status, _ in health)
    result = {"backend": backend.name, "queue_size": sizes.overload_queue, "load": figure,
              "health_checks": len(health), "health_ok": healthy,
              "health_ms": percentiles([ms for _, ms in health])}
    result["met"] = (set(figure.statuses) <= {"200", "429"} and "429" in figure.statuses
                     and healthy == len(health) > 0)
    log(f"overload ({sizes.overload_clients} clients, queue {sizes.overload_queue}): {figure.statuses}, "
        f"/health {healthy}/{len(health)} ok")
    return result


def soak(backend: Backend, sentences: list[str], threads: int, sizes: ServeSizes) -> dict:
    """32 clients for soak_seconds: the server's resident memory, read every soak_every seconds, grows by at
    most 10 % over the soak's second half (the allocator's warm-up to new batch shapes comes before it:
    docs/serving.md), and no request fails."""
    with ServerProcess(backend.server_flags, "--max-wait-ms", str(MAX_WAIT_MS), threads=threads) as server:
        readings, stop = [], threading.Event()
        started = time.monotonic()

        def watch() -> None:
            while not stop.wait(sizes.soak_every):
                readings.append((round(time.monotonic() - started, 1), server.resident_bytes()))

        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        figure = load(server.url, sentences, 32, sizes.soak_seconds)
        stop.set()
        watcher.join()
    return {"backend": backend.name, **soak_verdict(figure, readings, sizes.soak_seconds / 2)}


def soak_verdict(figure: LoadFigure, readings: list[tuple[float, int | None]], reference_at: float) -> dict:
    """Met when no request failed and the resident memory grew by at most 10 % from the first reading at
    or after `reference_at` (the soak's middle) to the highest one after it."""
    known = [(at, rss) for at, rss in readings if rss is not None]
    result = {"load": figure, "readings": len(readings),
              "rss_mb": [(at, round(rss / 2**20, 1)) for at, rss in known]}
    later = [rss for at, rss in known if at >= reference_at]
    if later:
        reference = later[0]
        result["rss_reference_mb"] = round(reference / 2**20, 1)
        result["rss_second_half_growth"] = round(max(0, max(later) - reference) / reference, 4)
    result["met"] = figure.errors == 0 and result.get("rss_second_half_growth", 1.0) <= 0.10
    log(f"soak: {_line(figure)}; memory growth over the second half {result.get('rss_second_half_growth')}")
    return result


def _line(figure: LoadFigure) -> str:
    latency = figure.latency_ms
    return (f"{figure.sentences_per_sec:.1f} sentences/s, p50 {latency.get('p50')} ms, p99 {latency.get('p99')} ms, "
            f"{figure.errors} errors, batches {figure.batch.get('mean_sentences')}")


def markdown(report: ServeReport) -> str:
    lines = [f"CPU: {report.cpu} · torch {report.torch} · {report.date} · --threads {report.threads} · "
             f"--max-wait-ms {report.max_wait_ms:g} · {report.sentences} test-split sentences", "",
             "| backend | clients | server | sentences/s | p50 ms | p95 ms | p99 ms | errors | mean batch | "
             "batch ms: median / p99 | CPU ms/request: clients / server (its event loop) | decoding cores |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for name, figures in report.backends.items():
        lines.append(f"| {name} | — | offline, one call | {figures.offline_sentences_per_sec:.1f} | "
                     f"{figures.single_decode_ms:.1f} (one sentence alone) | | | | | | | |")
        gains = ", ".join(f"{size}: {rate:.0f}" for size, rate in figures.random_batches.items())
        lines.append(f"| {name} | — | offline, random batches on one worker (size: sentences/s) | {gains} "
                     f"| | | | | | | | |")
        for mode, found in (("batching", figures.batching), ("no batching", figures.no_batching)):
            lines += [_row(name, clients, mode, figure) for clients, figure in found.items()]
    lines += ["", "| target | backend | measured | limit | met |", "|---|---|---|---|---|"]
    for name, figures in report.backends.items():
        lines += [f"| {target} | {name} | {t.measured:g} | {'≤' if t.at_most else '≥'} {t.limit:g} | "
                  f"{_verdict(t.met)} |" for target, t in figures.targets.items()]
    together = next(iter(report.backends.values())).batching.get("32") if report.backends else None
    if together and together.by_words:
        groups = "; ".join(f"{words} words: {f['requests']} requests, p50 {f['p50']}, p99 {f['p99']}"
                           for words, f in together.by_words.items())
        lines += ["", f"latency by sentence length, {next(iter(report.backends))}, 32 clients, batching (ms): {groups}"]
    if report.html:
        lines += ["", f"HTML against text ({report.html['backend']}, the same sentences as `<p>` with inline tags, "
                      "format html):", "", "| clients | format | sentences/s | p50 ms | p99 ms | errors |",
                  "|---|---|---|---|---|---|"]
        for clients, pair in report.html["levels"].items():
            lines += [f"| {clients} | {name} | {f.sentences_per_sec:.1f} | {f.latency_ms.get('p50')} | "
                      f"{f.latency_ms.get('p99')} | {f.errors} |" for name, f in pair.items()]
        lines += [f"\n{target}: {t.measured:g} (≤ {t.limit:g}) met: {_verdict(t.met)}"
                  for target, t in report.html["targets"].items()]
    if report.detection:
        d = report.detection
        lines += ["", f"language detection ({d['calls']} calls: test sentences and their first three words): "
                      f"p50 {d['ms']['p50']} ms, p99 {d['ms']['p99']} ms per call"
                  + (f"; share of a 1-client request's p50 {d['target'].measured:.2%} (≤ 2 %) met: "
                     f"{_verdict(d['target'].met)}" if "target" in d else "")]
    if report.overload:
        o, figure = report.overload, report.overload["load"]
        lines += ["", f"overload ({o['backend']}, {figure.clients} clients, --queue-size {o['queue_size']}, "
                      f"{figure.seconds:g} s): answers {figure.statuses}; 429s in p99 "
                      f"{figure.rejected_latency_ms.get('p99')} ms; /health {o['health_ok']}/{o['health_checks']} "
                      f"answered 200, p99 {o['health_ms'].get('p99')} ms; met: {_verdict(o['met'])}"]
    if report.soak:
        s, figure = report.soak, report.soak["load"]
        lines += ["", f"soak ({s['backend']}, 32 clients, {figure.seconds:g} s): {figure.requests} requests, "
                      f"{figure.errors} errors, "
                      f"{figure.sentences_per_sec:.1f} sentences/s; resident memory {s.get('rss_reference_mb')} MB "
                      f"half-way, growth over the second half {s.get('rss_second_half_growth', 0):.1%}; "
                      f"met: {_verdict(s['met'])}"]
    return "\n".join(lines)


def _verdict(met: bool) -> str:
    return "yes" if met else "**no**"


def _row(name: str, clients: str, mode: str, figure: LoadFigure) -> str:
    latency, batch, cpu = figure.latency_ms, figure.batch, figure.cpu
    spent = f"{cpu['client_ms']} / {cpu['server_ms']} ({cpu['event_loop_ms']})" if cpu else ""
    return (f"| {name} | {clients} | {mode} | {figure.sentences_per_sec:.1f} | {latency.get('p50', '')} | "
            f"{latency.get('p95', '')} | {latency.get('p99', '')} | {figure.errors} | "
            f"{batch.get('mean_sentences', '')} | {batch.get('median_ms', '')} / {batch.get('p99_ms', '')} | {spent} | "
            f"{cpu.get('decoding_cores', '')} |")
