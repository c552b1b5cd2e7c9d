"""Shared command-line plumbing: bad input becomes one line on stderr and exit status 2."""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from .config import ConfigError, DecodeConfig
from .errors import StoppedByRank0, UserError
from .run_folder import find_checkpoint

if TYPE_CHECKING:
    from .decoding.translator import TextTranslator


def main_guard(main: Callable[[], int | None]) -> None:
    try:
        code = main()
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    except StoppedByRank0:
        sys.exit(2)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)
    except BrokenPipeError:
        sys.exit(1)
    sys.exit(code or 0)


def add_model_flags(parser: argparse.ArgumentParser) -> None:
    """Which model translate.py and evaluate.py decode with: a run's PyTorch model, or an export."""
    parser.add_argument("--run", help="run folder (default: the latest under --runs)")
    parser.add_argument("--checkpoint", help="checkpoint file (default: the run's best.pt, else last.pt)")
    parser.add_argument("--runs", default="runs", help="where to look for the latest run")
    parser.add_argument("--model", help="a CTranslate2 export (scripts/export.py) instead of a run")
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    parser.add_argument("--precision", choices=("fp32", "bf16", "fp16"),
                        help="a run's decoding precision (default fp32; an export's is its --quantization)")
    parser.add_argument("--threads", type=int, help="CPU threads for decoding (default: PyTorch's or CTranslate2's)")


def open_translator(args: argparse.Namespace) -> TextTranslator:
    """The translator the model flags name, checked before anything loads."""
    if args.threads is not None and args.threads < 1:
        raise UserError(f"--threads must be at least 1, got {args.threads}")
    if args.model:
        for flag, value in (("--run", args.run), ("--checkpoint", args.checkpoint), ("--precision", args.precision)):
            if value:
                raise UserError(f"--model and {flag} do not go together: an export is a whole model")
        from .decoding.ctranslate2 import ExportedTranslator

        return ExportedTranslator(Path(args.model), args.device, args.threads or 0)
    run, checkpoint = find_checkpoint(args.run, args.checkpoint, args.runs)
    # PyTorch loads (seconds) only for a run that exists.
    import torch

    from .decoding.pytorch import Translator

    if args.threads:
        torch.set_num_threads(args.threads)
    return Translator(run, checkpoint, args.device, args.precision or "fp32")


def add_search_flags(parser: argparse.ArgumentParser) -> None:
    """The decoding flags translate.py and evaluate.py share; unset ones keep the run's decode section."""
    parser.add_argument("--beam-size", type=int, help="beam size (1 = greedy; default: the run's decode.beam_size)")
    parser.add_argument("--max-len-a", type=float, help="output length limit a·source_length + b: a "
                                                        "(default: the run's decode.max_len_a)")
    parser.add_argument("--max-len-b", type=int, help="output length limit a·source_length + b: b "
                                                      "(default: the run's decode.max_len_b)")
    parser.add_argument("--batch-size", type=int, help="sentences per batch (default: the run's decode.batch_size)")


SEARCH_FLAGS = {"beam_size": "--beam-size", "max_len_a": "--max-len-a", "max_len_b": "--max-len-b",
                "batch_size": "--batch-size"}


def decode_settings(args: argparse.Namespace, run_default: DecodeConfig) -> DecodeConfig:
    """The run's decode section with the search flags given instead; DecodeConfig checks the values,
    and a bad one is reported under its flag's name."""
    given = {name: getattr(args, name) for name in SEARCH_FLAGS if getattr(args, name) is not None}
    try:
        return dataclasses.replace(run_default, **given)
    except ConfigError as err:
        flag = SEARCH_FLAGS.get((err.key or "").removeprefix("decode."))
        raise UserError(f"{flag} {err.problem}" if flag else str(err)) from None


def check_search_flags(args: argparse.Namespace) -> None:
    """The search flags' values, checked before the model loads: each is checked on its own, so the
    defaults stand in for the run's decode section."""
    decode_settings(args, DecodeConfig())


def output_path(flag: str, value: str) -> Path:
    """A file to write, named by `flag`: checked before any work, so a typo costs no minutes of decoding."""
    path = Path(value)
    if path.is_dir():
        raise UserError(f"{flag} {path} is a folder; name the file to write")
    if not path.parent.is_dir():
        raise UserError(f"{flag} {path}: folder {path.parent} does not exist")
    if not os.access(path.parent, os.W_OK):
        raise UserError(f"{flag} {path}: folder {path.parent} is not writable")
    return path


@contextlib.contextmanager
def writing(flag: str, path: Path) -> Iterator[None]:
    """Around the write of a file named by `flag`: a failure (disk full, permissions) is one line."""
    try:
        yield
    except OSError as err:
        raise UserError(f"cannot write {flag} {path}: {err.strerror or err}") from None
