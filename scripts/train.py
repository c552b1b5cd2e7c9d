#!/usr/bin/env python
"""Train a Transformer from a YAML config: python scripts/train.py CONFIG [key.sub=value ...]

Under torchrun (RANK/WORLD_SIZE set) it trains data-parallel: NCCL on CUDA, gloo on CPU.
"""
from __future__ import annotations

import argparse
import os

import torch

from transformer_mt.cli import main_guard
from transformer_mt.config import Config, load_config
from transformer_mt.errors import UserError
from transformer_mt.pipeline import Prepared, prepare
from transformer_mt.runtime import pick_device, pick_precision, retain_freed_memory
from transformer_mt.trainer import Distributed, Trainer


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("config", help="YAML config, e.g. configs/sample.yaml")
    parser.add_argument("overrides", nargs="*", help="key.sub=value, e.g. train.max_steps=200")
    args = parser.parse_args()
    retain_freed_memory()
    config = load_config(args.config, args.overrides)
    # An impossible device or precision fails now, before the corpus loads and the run folder is written.
    pick_precision(config.train.precision, pick_device(config.train.device))
    if config.train.num_threads:
        torch.set_num_threads(config.train.num_threads)
    distributed = Distributed.from_env()
    if distributed.world_size > 1:
        _init_process_group(config.train.device)
    try:
        prepared = _prepare_rank0_first(config, distributed)
        if prepared is None:
            return 2  # rank 0 stopped on bad input and says why
        Trainer(config, prepared, distributed).fit()
    finally:
        if distributed.world_size > 1:
            torch.distributed.destroy_process_group()
    return 0


def _init_process_group(device: str) -> None:
    use_nccl = device != "cpu" and torch.cuda.is_available()
    if use_nccl:
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
    torch.distributed.init_process_group("nccl" if use_nccl else "gloo")


def _prepare_rank0_first(config: Config, distributed: Distributed) -> Prepared | None:
    """Rank 0 writes the run folder, then the other ranks read it. When rank 0 stops on bad input
    (a trained run in the way, a missing corpus), the others learn it from rank 0 instead of dying in
    a barrier with a 'connection reset' traceback, and get None: the error is printed once."""
    error, prepared = None, None
    if distributed.is_main:
        try:
            prepared = prepare(config)
        except UserError as err:
            error = err
    if distributed.world_size > 1:
        outcome = [None if error is None else str(error)]
        torch.distributed.broadcast_object_list(outcome, src=0)
        if not distributed.is_main and outcome[0] is None:
            prepared = prepare(config, is_main=False, log=lambda *_: None)
    if error is not None:
        raise error
    return prepared


if __name__ == "__main__":
    main_guard(main)
