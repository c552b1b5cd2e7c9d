#!/usr/bin/env python
"""Average the last K periodic checkpoints of a run into one (usually worth a little BLEU).

  python scripts/average_checkpoints.py --run runs/sample --last 3
  python scripts/evaluate.py --run runs/sample --checkpoint runs/sample/checkpoints/averaged.pt
"""
from __future__ import annotations

import argparse
from pathlib import Path

from transformer_mt.cli import main_guard, output_path, writing
from transformer_mt.errors import UserError
from transformer_mt.run_folder import open_run


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", required=True, help="run folder")
    parser.add_argument("--last", type=int, default=3, help="how many of the newest periodic checkpoints")
    parser.add_argument("--output", help="default: RUN/checkpoints/averaged.pt")
    args = parser.parse_args()
    if args.last < 1:
        raise UserError(f"--last must be at least 1, got {args.last}")
    run = open_run(Path(args.run))
    paths = run.step_checkpoints()[-args.last :]
    if len(paths) < args.last:
        raise UserError(f"{run.checkpoints} has {len(run.step_checkpoints())} periodic checkpoints, "
                        f"fewer than --last {args.last}")
    output = output_path("--output", args.output) if args.output else run.checkpoints / "averaged.pt"
    # PyTorch loads (seconds) only once the flags are known to be good.
    from transformer_mt.model import checkpoint as ckpt
    from transformer_mt.model.averaging import average_checkpoints

    _check_output(output)
    averaged = average_checkpoints(paths)
    with writing("--output", output):
        ckpt.save_atomic(averaged, output)
    print(f"averaged {', '.join(p.name for p in paths)} into {output}\n"
          f"evaluate it: python scripts/evaluate.py --run {run.root} --checkpoint {output}")
    return 0


def _check_output(output: Path) -> None:
    """Replace only an earlier average: never a run's last.pt (its training state), best.pt or anything else."""
    from transformer_mt.model import checkpoint as ckpt

    if not output.exists():
        return
    try:
        averaged = "averaged_from" in ckpt.load(output)
    except ckpt.CheckpointError:
        averaged = False
    if not averaged:
        raise UserError(f"--output {output} exists and is not an averaged checkpoint: it will not be replaced "
                        "(name a new file)")


if __name__ == "__main__":
    main_guard(main)
