import gzip
import json
import os

# cuBLAS reads this when it starts, so it must be set before any test touches CUDA: a fixed workspace
# makes its GEMMs deterministic (tests/test_cuda.py's resume test).
os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")

import pytest
import torch

from transformer_mt.data.corpus import sample_corpus_path

torch.set_num_threads(1)  # tests use tiny models: threads only add overhead


@pytest.fixture(scope="session")
def sample_pairs() -> list[tuple[str, str]]:
    """The first 3000 pairs of the embedded (already shuffled) sample corpus."""
    pairs = []
    with gzip.open(sample_corpus_path(), "rt", encoding="utf-8") as handle:
        for line in handle:
            item = json.loads(line)["translation"]
            pairs.append((item["en"], item["fr"]))
            if len(pairs) == 3000:
                break
    return pairs
