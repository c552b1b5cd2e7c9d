"""The layout of a run folder: everything needed to continue training or to translate."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from .errors import UserError


@dataclass(frozen=True)
class RunPaths:
    root: Path

    @property
    def config(self) -> Path:
        return self.root / "config.yaml"

    @property
    def src_tokenizer(self) -> Path:
        return self.root / "tokenizer-src.json"

    @property
    def tgt_tokenizer(self) -> Path:
        return self.root / "tokenizer-tgt.json"

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def lineage(self) -> Path:
        """A fine-tuned run's parent, and its parent's (training/parent.py)."""
        return self.root / "parent.json"

    def split_files(self, split: str, src_lang: str, tgt_lang: str) -> tuple[Path, Path]:
        return self.data / f"{split}.{src_lang}", self.data / f"{split}.{tgt_lang}"

    def corpus_split_files(self, corpus: str, split: str, src_lang: str, tgt_lang: str) -> tuple[Path, Path]:
        """One corpus's held-out split, in a run that reads several (data.corpora)."""
        folder = self.data / "corpora" / corpus
        return folder / f"{split}.{src_lang}", folder / f"{split}.{tgt_lang}"

    @property
    def store(self) -> Path:
        """The encoded training pairs (store.py)."""
        return self.data / "train"

    @property
    def checkpoints(self) -> Path:
        return self.root / "checkpoints"

    @property
    def last(self) -> Path:
        return self.checkpoints / "last.pt"

    @property
    def best(self) -> Path:
        return self.checkpoints / "best.pt"

    def step_checkpoint(self, step: int) -> Path:
        return self.checkpoints / f"step-{step:08d}.pt"

    def step_checkpoints(self) -> list[Path]:
        """Periodic checkpoints, oldest first."""
        return sorted(self.checkpoints.glob("step-*.pt"))

    def has_checkpoints(self) -> bool:
        return self.last.is_file() or any(self.step_checkpoints())

    def default_checkpoint(self) -> Path:
        """best.pt (highest validation BLEU) when there is one, else last.pt."""
        if self.best.is_file():
            return self.best
        if self.last.is_file():
            return self.last
        raise UserError(f"{self.root} holds no checkpoint (checkpoints/best.pt or last.pt): train it first")


def latest_run(root: Path) -> RunPaths:
    """The run whose last checkpoint was written most recently."""
    runs = [RunPaths(p.parent.parent) for p in root.glob("*/checkpoints/last.pt")]
    if not runs:
        raise UserError(f"no trained run under {root}/: train one with `make train CONFIG=configs/sample.yaml`")
    return max(runs, key=lambda run: run.last.stat().st_mtime)


def open_run(path: Path) -> RunPaths:
    run = RunPaths(path)
    if not path.is_dir():
        raise UserError(f"run folder not found: {path}")
    if not run.config.is_file():
        raise UserError(f"{path} is not a run folder (no config.yaml)")
    return run


def find_checkpoint(run_dir: str | None, checkpoint: str | None,
                    runs_root: str = "runs") -> tuple[RunPaths, Path | None]:
    """What --run, --checkpoint and --runs name: a run folder and a checkpoint file in it (None: the
    run's default). --checkpoint FILE alone means the run folder above its checkpoints/."""
    if checkpoint:
        path = Path(checkpoint)
        if not path.is_file():
            raise UserError(f"checkpoint not found: {path}")
        if run_dir:
            return open_run(Path(run_dir)), path
        try:
            return open_run(path.resolve().parent.parent), path
        except UserError:
            raise UserError(f"{path} is not in a run folder's checkpoints/: name its run folder with --run") from None
    return (open_run(Path(run_dir)) if run_dir else latest_run(Path(runs_root))), None


def read_lineage(run: RunPaths) -> dict | None:
    """What a fine-tuned run records of its parent (training/parent.py); None for a run from scratch."""
    path = run.lineage
    return json.loads(path.read_text()) if path.is_file() else None


def write_lineage(run: RunPaths, lineage: dict) -> None:
    run.lineage.write_text(json.dumps(lineage, indent=1) + "\n")


def lineage_markdown(lineage: dict | None) -> str:
    """The chain of parents, newest first, as Markdown lines (TensorBoard's text tab, model cards)."""
    lines = []
    while lineage:
        lines.append(f"- fine-tuned from `{lineage['checkpoint']}` (step {lineage['step']}, "
                     f"sha256 `{lineage['sha256'][:16]}…`)")
        lineage = lineage.get("parent")
    return "\n".join(lines)
