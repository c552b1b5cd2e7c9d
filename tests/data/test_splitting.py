import hashlib

import numpy as np
import pytest

from transformer_mt.data.splitting import TEST, TRAIN, VALID, Cuts, Selection, SmallestDistinct, Subset, source_hashes


def test_source_hashes_are_keyed_blake2b_and_depend_on_the_seed():
    digest = hashlib.blake2b("Go.".encode(), digest_size=8, key=(7).to_bytes(8, "little")).digest()
    assert source_hashes(["Go.", "Go."], 7).tolist() == [int.from_bytes(digest, "little")] * 2
    assert source_hashes(["Go."], 8)[0] != source_hashes(["Go."], 7)[0]
    assert source_hashes([], 7).dtype == np.uint64


def test_smallest_distinct_over_chunks_equals_sorting_the_set():
    rng = np.random.default_rng(0)
    values = rng.integers(0, 500, 3000).astype(np.uint64)  # many repeats
    smallest = SmallestDistinct(40)
    for chunk in np.array_split(values, 17):
        smallest.add(chunk)
    assert smallest.values.tolist() == sorted(set(values.tolist()))[:40] and smallest.more
    few = SmallestDistinct(40)
    few.add(np.array([5, 5, 3], np.uint64))
    assert few.values.tolist() == [3, 5] and not few.more and few.limit is None
    exact = SmallestDistinct(2)
    exact.add(np.array([5, 3, 5], np.uint64))
    assert not exact.more and exact.limit == 5  # two distinct values: none left for training
    exact.add(np.array([5], np.uint64))
    assert not exact.more
    exact.add(np.array([9], np.uint64))
    assert exact.more


def test_cuts_assign_each_hash_to_one_split():
    cuts = Cuts(valid_max=10, test_max=20)
    assert cuts.split_of(np.array([0, 10, 11, 20, 21, 2**64 - 1], np.uint64)).tolist() == \
        [VALID, VALID, TEST, TEST, TRAIN, TRAIN]


def reference_subset(hashes: np.ndarray, above: int, k: int) -> list[int]:
    """Positions of the first k hashes above `above` in (hash, position) order."""
    ranked = sorted((int(h), i) for i, h in enumerate(hashes.tolist()) if h > above)
    return sorted(i for _, i in ranked[:k])


@pytest.mark.parametrize("k", [1, 7, 100, 499, 500])
def test_subset_is_the_first_k_training_hashes_with_ties_in_corpus_order(k):
    rng = np.random.default_rng(k)
    top = rng.integers(0, 3, 600).astype(np.uint64) << np.uint64(48)  # three top-16-bit buckets, crowded
    hashes = top | rng.integers(0, 40, 600).astype(np.uint64)  # and many equal hashes (sources repeat)
    above = int(np.sort(hashes)[50])
    subset = Subset.find(hashes, above, k, chunk=64)
    selection = Selection(Cuts(valid_max=0, test_max=above), subset)
    mask = selection.masks()
    picked = np.concatenate([mask(chunk) for chunk in np.array_split(hashes, 9)])
    assert np.flatnonzero(picked).tolist() == reference_subset(hashes, above, k)


def test_no_subset_when_the_cap_holds_every_training_pair():
    hashes = np.arange(100, dtype=np.uint64)
    assert Subset.find(hashes, 9, 90) is None and Subset.find(hashes, 9, 89) is not None
