"""The benchmark's results as typed records; bench.json is `BenchReport.to_json()`.

Figures of one system, job and precision are filed under `label(...)` (e.g. "ours_same_batches_bf16"),
the one place such a key is spelled."""
from __future__ import annotations

import dataclasses
import json
import statistics
from dataclasses import dataclass, field

OURS, PEER, UNCACHED = "ours", "peer", "ours_uncached"  # the systems
SAME_BATCHES, HF_BATCHING = "same_batches", "hf_batching"  # training on our batches / on Hugging Face-style ones
SEARCHES = {"greedy": 1, "beam4": 4}  # decoding: name → beam size


def label(system: str, job: str, precision: str) -> str:
    return f"{system}_{job}_{precision}"


@dataclass
class Spread:
    """min / median / max over timed repetitions."""
    min: float
    median: float
    max: float

    @classmethod
    def of(cls, samples: list[float]) -> "Spread":
        return cls(min(samples), statistics.median(samples), max(samples))

    def rate(self, amount: float) -> "Spread":
        """`amount` per second of these times: the fastest repetition gives the highest rate."""
        return Spread(amount / self.max, amount / self.median, amount / self.min)

    def scaled(self, factor: float) -> "Spread":
        return Spread(self.min * factor, self.median * factor, self.max * factor)


@dataclass
class MatmulFigure(Spread):
    samples: int = 0  # timings pooled: at the start and alongside every timed round of the systems


@dataclass
class TrainFigure:
    tokens_per_sec: Spread  # target tokens
    seconds_per_step: Spread
    padding_share: float
    mfu: float | None = None  # ours on the same batches: model FLOPs/s over the measured matmul peak


@dataclass
class DecodeFigure:
    sentences_per_sec: Spread
    tokens_per_sec: Spread


@dataclass
class Profile:
    """One more run of a job under torch.profiler (CPU self times)."""
    total_seconds: float
    gemm_seconds: float  # the linear layers' matrix products
    top_ops_seconds: dict[str, float]

    @property
    def gemm_share(self) -> float:
        return self.gemm_seconds / self.total_seconds


@dataclass
class Padding:
    random_batches: float  # padding share of Hugging Face-style batches (random order, fixed sentences)
    bucketed_batches: float  # ours
    sentences_per_batch: int


@dataclass
class Quality:
    """configs/sample.yaml trained for `minutes`, scored on its test split (evaluate.py --json), or the error."""
    config: str
    minutes: float
    greedy: dict | None = None
    beam4: dict | None = None
    error: str | None = None


@dataclass
class BenchReport:
    device: str
    torch: str
    date: str
    model: dict
    vocab: int
    retain_freed_memory: bool = False
    decode_sentences: int = 0
    matmul_gflops: dict[str, MatmulFigure] = field(default_factory=dict)
    train: dict[str, TrainFigure] = field(default_factory=dict)
    decode: dict[str, DecodeFigure] = field(default_factory=dict)
    decode_matmul_floor_seconds: dict[str, float] = field(default_factory=dict)
    profiles: dict[str, Profile] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)
    train_flops_per_token: float = 0.0
    train_source_pad_gemm_share: float = 0.0
    padding: Padding | None = None
    quality: Quality | None = None
    ratios: dict[str, float | None] = field(default_factory=dict)
    complete: bool = False  # False: a run stopped part-way left what it had measured so far

    def train_rate(self, system: str, batching: str, precision: str) -> float:
        """Median target tokens/s."""
        return self.train[label(system, batching, precision)].tokens_per_sec.median

    def decode_rate(self, system: str, search: str, precision: str) -> float:
        """Median sentences/s."""
        return self.decode[label(system, search, precision)].sentences_per_sec.median

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=2)
