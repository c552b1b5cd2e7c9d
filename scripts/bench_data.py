#!/usr/bin/env python
"""The data path at scale: preparing a run on synthetic corpora of growing size, then re-running it.

  python scripts/bench_data.py                           200k, 1M and 4M pairs (~15 min on 2 cores)
  python scripts/bench_data.py --sizes 200000,1000000 --code ../old-checkout   another checkout's train.py
  python scripts/bench_data.py --smoke                   tiny sizes: checks that it runs (the tests use it)

What is measured: transformer_mt/benchmark/data_scale.py. Writes bench-data.json and prints a Markdown
table.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
from pathlib import Path

from transformer_mt.benchmark.data_scale import bench_size, compare_with_datasets, markdown, synthetic_corpus
from transformer_mt.benchmark.machine import ROOT, cpu_model, revision


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="200000,1000000,4000000", help="corpus sizes in pairs, comma-separated")
    parser.add_argument("--smoke", action="store_true", help="one tiny corpus (3,000 pairs): checks that it runs")
    parser.add_argument("--code", default=str(ROOT), help="the checkout whose scripts/train.py to measure")
    parser.add_argument("--work", help="folder for the corpora and runs (default: a temporary one)")
    parser.add_argument("--output", default="bench-data.json")
    parser.add_argument("--compare-datasets", type=int, metavar="PAIRS",
                        help="instead: time preparing a corpus of PAIRS pairs with plain streaming and with datasets")
    args = parser.parse_args()
    sizes = [3000] if args.smoke else [int(s) for s in args.sizes.split(",")]
    code = Path(args.code).resolve()
    with tempfile.TemporaryDirectory() as scratch:
        work = Path(args.work or scratch)
        work.mkdir(parents=True, exist_ok=True)
        if args.compare_datasets:
            corpus = work / f"corpus-{args.compare_datasets}.tsv"
            if not corpus.is_file():
                synthetic_corpus(corpus, args.compare_datasets)
            comparison = compare_with_datasets(corpus, work / "compare")
            Path(args.output).write_text(json.dumps(comparison, indent=2))
            print(json.dumps(comparison, indent=2))
            return 0
        results = [bench_size(pairs, work, code, code == ROOT) for pairs in sizes]
    report = {"machine": {"cpu": cpu_model(), "cores": os.cpu_count(), "python": platform.python_version()},
              "code": revision(code), "results": results}
    Path(args.output).write_text(json.dumps(report, indent=2))
    print(markdown(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
