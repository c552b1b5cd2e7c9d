#!/usr/bin/env python
"""Train a Transformer from a YAML config: python scripts/train.py CONFIG [key.sub=value ...]

Under torchrun (RANK/WORLD_SIZE set) it trains data-parallel: NCCL on CUDA, gloo on CPU.
"""
from __future__ import annotations

import argparse

from transformer_mt.cli import main_guard
from transformer_mt.config import given_keys, load_config
from transformer_mt.malloc import retain_freed_memory
from transformer_mt.training.parent import adopt


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("config", help="YAML config, e.g. configs/sample.yaml")
    parser.add_argument("overrides", nargs="*", help="key.sub=value, e.g. train.max_steps=200")
    args = parser.parse_args()
    retain_freed_memory()
    config = load_config(args.config, args.overrides)
    parent = None
    if config.train.init_from:  # fine-tuning: the parent's model and tokenizers, checked before anything loads
        config, parent = adopt(config, given_keys(args.config, args.overrides))
    # PyTorch loads (seconds) only once the config is known to be good, so a typo is answered at once.
    import torch

    from transformer_mt.model.device import pick_device, pick_precision
    from transformer_mt.training.distributed import Distributed
    from transformer_mt.training.loop import Trainer
    from transformer_mt.training.setup import load_start, set_up_run_on_every_rank

    # An impossible device or precision fails now, before the corpus loads and the run folder is written.
    pick_precision(config.train.precision, pick_device(config.train.device))
    start = load_start(parent) if parent else None  # a damaged parent checkpoint: one line, nothing written
    if config.train.num_threads:
        torch.set_num_threads(config.train.num_threads)
    distributed = Distributed.from_env()
    if distributed.launched():  # even as one process: DDP and the collectives run as with more
        distributed.start(config.train.device, config.train.collective_timeout_s)
    try:
        prepared = set_up_run_on_every_rank(config, distributed.rank, distributed.world_size, start=start)
        Trainer(config, prepared, distributed, start).fit()
    finally:
        distributed.stop()
    return 0


if __name__ == "__main__":
    main_guard(main)
