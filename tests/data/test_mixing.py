"""Weighted corpora: what each epoch draws from the store's corpora, by weight, deterministically."""
import numpy as np
import pytest

from transformer_mt.data.batching import epoch_batches
from transformer_mt.data.mixing import Mixture
from transformer_mt.data.store import EncodedCorpus


def corpus_of(lengths: list[int]) -> EncodedCorpus:
    """A store whose pair i has `lengths[i]` tokens a side (the ids are the pair's index)."""
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    ids = np.repeat(np.arange(len(lengths)), lengths).astype(np.int32)
    return EncodedCorpus(ids, offsets, ids.copy(), offsets.copy())


SIZES = (300, 2000, 700)  # pairs of each corpus, in store order
WEIGHTS = (3.0, 1.0, 0.5)


def corpus_of_each(indices: np.ndarray) -> np.ndarray:
    return np.searchsorted(np.cumsum(SIZES), indices, side="right")


@pytest.fixture(scope="module")
def store():
    rng = np.random.default_rng(0)
    return corpus_of(rng.integers(1, 40, sum(SIZES)).tolist())


def test_over_an_epoch_each_corpus_gives_its_weighted_share_of_the_pairs(store):
    mixture = Mixture(SIZES, WEIGHTS)
    plan = epoch_batches(store, 400, seed=7, epoch=0, mixture=mixture)
    served = np.concatenate(list(plan))
    assert len(served) == sum(SIZES)  # an epoch is as many pairs as the store holds
    shares = np.bincount(corpus_of_each(served), minlength=3) / len(served)
    np.testing.assert_allclose(shares, np.array(WEIGHTS) / sum(WEIGHTS), atol=0.02)
    assert mixture.shares().sum() == sum(SIZES)


def test_the_plan_is_a_function_of_seed_and_epoch_so_a_resume_draws_the_same(store):
    mixture = Mixture(SIZES, WEIGHTS)
    first = [b.tolist() for b in epoch_batches(store, 400, seed=7, epoch=3, mixture=mixture)]
    again = [b.tolist() for b in epoch_batches(store, 400, seed=7, epoch=3, mixture=Mixture(SIZES, WEIGHTS))]
    assert first == again
    assert first != [b.tolist() for b in epoch_batches(store, 400, seed=7, epoch=4, mixture=mixture)]
    assert first != [b.tolist() for b in epoch_batches(store, 400, seed=8, epoch=3, mixture=mixture)]
    # Ranks share the epoch's plan between them: together they serve what one process serves.
    ranks = [epoch_batches(store, 400, seed=7, epoch=3, rank=r, world_size=2, mixture=mixture) for r in (0, 1)]
    assert len(ranks[0]) == len(ranks[1]) >= len(first) // 2


def test_an_under_weighted_corpus_shows_every_pair_once_before_any_twice():
    mixture = Mixture(SIZES, WEIGHTS)
    share = int(mixture.shares()[1])  # corpus 1: 2,000 pairs, about 667 an epoch
    seen = np.concatenate([mixture.epoch_pairs(5, epoch) for epoch in range(5)])  # 1.7 passes
    seen = seen[corpus_of_each(seen) == 1] - SIZES[0]
    assert len(seen) == 5 * share
    first_pass, rest = seen[: SIZES[1]], seen[SIZES[1] :]
    assert sorted(first_pass.tolist()) == list(range(SIZES[1]))
    assert len(set(rest.tolist())) == len(rest)  # the second pass has begun, without repeats of its own


def test_an_over_weighted_corpus_repeats_whole_passes():
    mixture = Mixture(SIZES, WEIGHTS)
    pairs = mixture.epoch_pairs(5, 0)
    own = pairs[corpus_of_each(pairs) == 0]
    counts = np.bincount(own, minlength=SIZES[0])
    assert counts.max() - counts.min() <= 1 and counts.min() >= len(own) // SIZES[0]


def test_weights_in_any_unit_give_the_same_plan(store):
    a = [b.tolist() for b in epoch_batches(store, 400, 1, 0, mixture=Mixture(SIZES, (6.0, 2.0, 1.0)))]
    b = [b.tolist() for b in epoch_batches(store, 400, 1, 0, mixture=Mixture(SIZES, (0.6, 0.2, 0.1)))]
    assert a == b


@pytest.mark.parametrize("sizes, weights", [((3, 0), (1.0, 1.0)), ((3, 4), (1.0, 0.0)), ((3,), (1.0, 2.0)), ((), ())])
def test_a_mixture_needs_pairs_and_a_positive_weight_for_every_corpus(sizes, weights):
    with pytest.raises(ValueError):
        Mixture(sizes, weights)
