"""bench.json as the Markdown tables that make bench prints."""
from __future__ import annotations

from .records import BenchReport, Profile, Spread


def markdown(report: BenchReport) -> str:
    lines = [f"device: {report.device} · torch {report.torch} · {report.date}", "",
             "| figure | min | median | max |", "|---|---|---|---|"]
    lines += [_row(f"matmul GFLOP/s, {p}", v) for p, v in report.matmul_gflops.items()]
    lines += [_row(f"training target tokens/s, {k}", v.tokens_per_sec) for k, v in report.train.items()]
    lines += [_row(f"decoding sentences/s, {k}", v.sentences_per_sec) for k, v in report.decode.items()]
    lines += ["", "| ratio (medians) | value |", "|---|---|"]
    lines += [f"| {k} | {'skipped' if v is None else f'{v:.2f}'} |" for k, v in report.ratios.items()]
    if report.profiles:
        lines += ["", "| profile (one run, self time) | seconds | GEMM share | busiest ops (share) |",
                  "|---|---|---|---|"]
        lines += [_profile_row(k, v) for k, v in report.profiles.items()]
    lines += [f"skipped {k}: {reason}" for k, reason in report.skipped.items()]
    q = report.quality
    if q is not None and q.error is None:
        lines += ["", f"quality after {q.minutes} min of {q.config}: greedy BLEU {q.greedy['bleu']} "
                      f"chrF {q.greedy['chrf']}; beam-4 BLEU {q.beam4['bleu']} chrF {q.beam4['chrf']}"]
    return "\n".join(lines)


def _row(name: str, value: Spread) -> str:
    return f"| {name} | {value.min:.1f} | {value.median:.1f} | {value.max:.1f} |"


def _profile_row(name: str, profile: Profile) -> str:
    total = profile.total_seconds
    busiest = ", ".join(f"{_short(op)} {seconds / total:.0%}"
                        for op, seconds in list(profile.top_ops_seconds.items())[:4])
    return f"| {name} | {total:.2f} | {profile.gemm_share:.0%} | {busiest} |"


def _short(op: str) -> str:
    return op.removeprefix("aten::").replace("_scaled_dot_product_flash_attention_for_cpu", "sdpa_flash")
