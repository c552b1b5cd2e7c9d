"""The deployment benchmark (scripts/bench_deploy.py): CTranslate2 exports (fp32, int8) against our
PyTorch decoder and Hugging Face generate(), on the same sentences with the same forced output length.

Sizes: the benchmark's model (d 256, 3+3 layers, vocabulary 8k) on its 256 test sentences, and
Transformer-base (configs/base.yaml's model, vocabulary 16k) on 128 of them; random weights, the same
for every system (each export is of the very model ours decodes with). Every system decodes
DECODE_LENGTH tokens and one more step, greedy and beam 4, batches of 64 taking turns step by step
(`timing.side_by_side`). With a trained run, its test split is translated by the PyTorch model in fp32
and by its fp32 and int8 exports: BLEU and seconds.
"""
from __future__ import annotations

import json
import platform
import tempfile
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch

from ..config import ModelConfig, load_config
from ..data.corpus import held_out_files
from ..data.tokenizer import PAD
from ..decoding.ctranslate2_folder import require_ctranslate2
from ..export.ctranslate2 import save_spec, transformer_spec
from ..run_folder import open_run
from .machine import ROOT, cpu_model, log, run_script
from .records import Spread
from .systems import DECODE_LENGTH, decoding_job, ours, peer
from .timing import Job, side_by_side
from .workload import Workload

QUANTIZATIONS = ("float32", "int8")


def ct2_job(model: torch.nn.Module, cfg: ModelConfig, vocab: int, quantization: str, batches: list[torch.Tensor],
            beam: int, threads: int, folder: Path) -> Job:
    """The CTranslate2 export of `model` decoding `batches` with the forced output length, as
    ExportedTranslator decodes: `threads` single-threaded workers, every batch submitted at once (so the
    job is one step, where the PyTorch systems take one per batch)."""
    ct2 = require_ctranslate2()
    tokens = [f"t{i}" for i in range(vocab)]
    target = folder / f"{quantization}"
    if not target.exists():
        save_spec(transformer_spec(cfg, model.state_dict(), tokens, tokens), target, quantization)
    translator = ct2.Translator(str(target), device="cpu", inter_threads=threads, intra_threads=1)
    sources = [[[tokens[t] for t in row if t != PAD] for row in src.tolist()] for src in batches]

    def step() -> None:
        pending = [translator.translate_batch(batch, beam_size=beam, min_decoding_length=DECODE_LENGTH,
                                              max_decoding_length=DECODE_LENGTH + 1, max_input_length=0,
                                              length_penalty=0.0 if beam == 1 else 1.0, asynchronous=True)
                   for batch in sources]
        for results in pending:
            for result in results:
                result.result()

    return Job([step])


def bench_size(name: str, cfg: ModelConfig, vocab: int, batches: list[torch.Tensor], threads: int,
               rounds: tuple[int, int],
               with_peer: bool) -> dict:
    """Sentences/s and tokens/s of every system, greedy and beam 4."""
    device = torch.device("cpu")
    systems = [ours(cfg, vocab, device)] + ([peer(cfg, vocab, device)] if with_peer else [])
    sentences = sum(src.size(0) for src in batches)
    tokens = sentences * (DECODE_LENGTH + 1)
    results = {"model": vars(cfg), "vocab": vocab, "sentences": sentences, "generated_tokens": tokens}
    with tempfile.TemporaryDirectory() as folder:
        for beam in (1, 4):
            jobs = {system.name: decoding_job(system, batches, beam, "fp32", device) for system in systems}
            torch.manual_seed(0)  # the weights decoding_job gives ours, for the exports
            model = ours(cfg, vocab, device).build().eval()
            for quantization in QUANTIZATIONS:
                jobs[f"ct2_{quantization}"] = ct2_job(model, cfg, vocab, quantization, batches, beam, threads,
                                                      Path(folder))
            seconds = side_by_side(jobs, *rounds)
            label = "greedy" if beam == 1 else "beam4"
            for system, samples in seconds.items():
                spread = Spread.of(samples)
                results[f"{label}_{system}"] = {"seconds": asdict(spread),
                                                "sentences_per_second": asdict(spread.rate(sentences)),
                                                "tokens_per_second": asdict(spread.rate(tokens))}
            log(f"{name} {label}: " + ", ".join(f"{s} {Spread.of(v).median:.2f} s" for s, v in seconds.items()))
    return results


def quality(run: Path, threads: int) -> dict:
    """BLEU and seconds on the run's test split: the PyTorch model in fp32, its fp32 and int8 exports."""
    src, ref = held_out_files(open_run(run), "test")

    def evaluate(*model: str, beam: int) -> dict:
        out = run_script("evaluate.py", *model, "--beam-size", str(beam), "--threads", str(threads), "--json",
                         "--src", str(src), "--ref", str(ref))
        report = json.loads(out)
        return {"bleu": report["bleu"], "chrf": report["chrf"], "seconds": report["seconds"]}

    results = {}
    with tempfile.TemporaryDirectory() as folder:
        models = {"pytorch_fp32": ["--run", str(run)]}
        for quantization in QUANTIZATIONS:
            target = Path(folder) / quantization
            run_script("export.py", "--run", str(run), "--quantization", quantization, "--output", str(target))
            models[f"ct2_{quantization}"] = ["--model", str(target)]
        for name, model in models.items():
            for beam in (1, 4):
                results[f"{'greedy' if beam == 1 else 'beam4'}_{name}"] = evaluate(*model, beam=beam)
    return results


def ratios(size: dict, with_peer: bool) -> dict[str, float]:
    """Median-based speed-ups: each export over ours and over the peer's generate()."""
    out = {}
    for label in ("greedy", "beam4"):
        ours_seconds = size[f"{label}_ours"]["seconds"]["median"]
        for quantization in QUANTIZATIONS:
            ct2 = size[f"{label}_ct2_{quantization}"]["seconds"]["median"]
            out[f"{label}_ct2_{quantization}_vs_ours"] = ours_seconds / ct2
            if with_peer:
                out[f"{label}_ct2_{quantization}_vs_generate"] = size[f"{label}_peer"]["seconds"]["median"] / ct2
    return out


@dataclass
class DeployOptions:
    smoke: bool = False  # tiny sizes: checks that it runs, measures nothing
    peer: bool = True  # Hugging Face generate() beside the exports
    threads: int = 2  # CPU threads for every system
    run: Path | None = None  # a trained run for the BLEU check


def measure(options: DeployOptions) -> dict:
    """Both sizes side by side, and the BLEU of a trained run's exports where one is given."""
    torch.set_num_threads(options.threads)
    setup = Workload(options.smoke, torch.device("cpu"))
    base = replace(load_config(ROOT / "configs" / "base.yaml").model, dropout=0.0)
    if options.smoke:
        base = replace(base, d_model=64, d_ff=128, encoder_layers=2, decoder_layers=2)
    sizes = {"bench": (setup.model_cfg, setup.vocab, setup.decode_batches(64)),
             "base": (base, 1000 if options.smoke else 16000, setup.decode_batches(64)[: 1 if options.smoke else 2])}
    rounds = (0, 1) if options.smoke else (1, 3)
    results = {"cpu": cpu_model(), "threads": options.threads, "torch": torch.__version__,
               "ctranslate2": require_ctranslate2().__version__, "python": platform.python_version(),
               "decode_length": DECODE_LENGTH}
    for name, (cfg, vocab, batches) in sizes.items():
        results[name] = bench_size(name, cfg, vocab, batches, options.threads, rounds if name == "bench" else
                                   (rounds[0], max(1, rounds[1] - 1)), options.peer)
        results[name]["ratios"] = ratios(results[name], options.peer)
    if options.run and options.run.is_dir():
        results["quality"] = quality(options.run, options.threads)
    elif options.run:
        results["quality"] = {"skipped": f"{options.run} is not a run folder (train configs/sample.yaml first)"}
    return results


def markdown(results: dict) -> str:
    lines = []
    for name in ("bench", "base"):
        size = results[name]
        lines += [f"\n{name}: d {size['model']['d_model']}, {size['model']['encoder_layers']}+"
                  f"{size['model']['decoder_layers']} layers, vocabulary {size['vocab']}, "
                  f"{size['sentences']} sentences",
                  "| decoder | greedy sentences/s | greedy tokens/s | beam 4 sentences/s | beam 4 tokens/s |",
                  "|---|---|---|---|---|"]
        for system in [k.removeprefix("greedy_") for k in size if k.startswith("greedy_")]:
            g, b = size[f"greedy_{system}"], size[f"beam4_{system}"]
            lines.append(f"| {system} | {g['sentences_per_second']['median']:.1f} | "
                         f"{g['tokens_per_second']['median']:.0f} "
                         f"| {b['sentences_per_second']['median']:.1f} | {b['tokens_per_second']['median']:.0f} |")
        lines += [f"- {key}: {value:.2f}" for key, value in size["ratios"].items()]
    if "quality" in results and "skipped" not in results["quality"]:
        lines += ["\n| test split | BLEU | seconds |", "|---|---|---|"]
        lines += [f"| {k} | {v['bleu']:.2f} | {v['seconds']:.2f} |" for k, v in results["quality"].items()]
    return "\n".join(lines)
