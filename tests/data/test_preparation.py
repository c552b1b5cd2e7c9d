"""Preparing a run's corpus: the hash split, the BPE sample, the memory-mapped store, re-runs and failures."""
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from tests.helpers.runs import small_config, write_jsonl
from transformer_mt.config import CorpusConfig
from transformer_mt.data import corpus as corpus_module
from transformer_mt.data import preparation
from transformer_mt.data.corpus import DataError, clean_pair
from transformer_mt.data.splitting import Cuts, Selection, source_hashes
from transformer_mt.data.store import read_manifest
from transformer_mt.errors import UserError
from transformer_mt.run_folder import RunPaths
from transformer_mt.training.setup import set_up_run

QUIET = dict(log=lambda *_: None)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, sample_pairs):
    """1,500 sample pairs plus one source with five translations (it must stay in one split)."""
    pairs = sample_pairs[:1500] + [("Same source.", f"Traduction numéro {i}.") for i in range(5)]
    return write_jsonl(tmp_path_factory.mktemp("corpus") / "c.jsonl", pairs), pairs


def config_for(tmp_path, corpus_file, name="p", **data_options):
    config = small_config(tmp_path, corpus_file, name)
    return replace(config, data=replace(config.data, valid_size=40, test_size=30, **data_options),
                   model=replace(config.model, max_positions=256))  # no sentence cut: decoding gives it back


def splits_of(run: RunPaths):
    return {name: corpus_module.read_split(*run.split_files(name, "en", "fr")) for name in ("valid", "test")}


def stored_pairs(prepared):
    """The training pairs as the store holds them, decoded (byte-level BPE decodes exactly)."""
    ids, tok = prepared.train_ids, prepared.tokenizers
    return [(tok.src.decode(ids.src(i).tolist()), tok.tgt.decode(ids.tgt(i).tolist())) for i in range(len(ids))]


def expected_split(pairs, cfg):
    """The split written out plainly: clean, hash every source, sort the distinct hashes."""
    cleaned = [p for p in (clean_pair(s, t, cfg) for s, t in pairs) if p]
    hashes = source_hashes([s for s, _ in cleaned], cfg.seed).tolist()
    distinct = sorted(set(hashes))
    valid_max, test_max = distinct[cfg.valid_size - 1], distinct[cfg.valid_size + cfg.test_size - 1]
    by_hash = sorted(range(len(cleaned)), key=lambda i: (hashes[i], i))
    valid = [cleaned[i] for i in by_hash if hashes[i] <= valid_max]
    test = [cleaned[i] for i in by_hash if valid_max < hashes[i] <= test_max]
    train = [(cleaned[i], hashes[i], i) for i in range(len(cleaned)) if hashes[i] > test_max]
    return valid, test, train


def test_the_hash_split_is_grouped_by_source_disjoint_sized_and_deterministic(tmp_path, corpus):
    path, pairs = corpus
    config = config_for(tmp_path, path)
    prepared = set_up_run(config, **QUIET)
    splits = splits_of(prepared.run)
    valid, test, train = expected_split(pairs, config.data)
    assert splits["valid"] == valid and splits["test"] == test
    assert stored_pairs(prepared) == [pair for pair, _, _ in train]
    sources = [{s for s, _ in part} for part in (splits["valid"], splits["test"], [p for p, _, _ in train])]
    assert len(sources[0]) == 40 and len(sources[1]) == 30
    assert not (sources[0] & sources[1] or sources[0] & sources[2] or sources[1] & sources[2])
    assert sum(len(part) for part in (valid, test, train)) == len([p for p in pairs if clean_pair(*p, config.data)])
    holder = next(part for part in (valid, test, [p for p, _, _ in train])
                  if ("Same source.", "Traduction numéro 0.") in part)
    assert sum(s == "Same source." for s, _ in holder) == 5
    again = set_up_run(replace(config, run=replace(config.run, name="again")), **QUIET)
    assert splits_of(again.run) == splits and stored_pairs(again) == stored_pairs(prepared)
    other_seed = config_for(tmp_path, path, name="seed8", seed=8)
    assert splits_of(set_up_run(other_seed, **QUIET).run)["valid"] != splits["valid"]


def test_the_store_holds_exactly_the_ids_of_encoding_the_pairs(tmp_path, corpus, monkeypatch):
    monkeypatch.setattr(preparation, "CHUNK", 128)  # many chunks in every pass
    path, pairs = corpus
    config = config_for(tmp_path, path)
    prepared = set_up_run(config, **QUIET)
    _, _, train = expected_split(pairs, config.data)
    config = replace(config, model=replace(config.model, max_positions=16), run=replace(config.run, name="cut"))
    prepared = set_up_run(config, **QUIET)
    tok, ids, limit = prepared.tokenizers, prepared.train_ids, config.model.max_positions - 1
    assert isinstance(ids.src_ids, np.memmap) and len(ids) == len(train)
    for i, ((src, tgt), _, _) in enumerate(train):
        assert ids.src(i).tolist() == tok.src.encode(src)[:limit]
        assert ids.tgt(i).tolist() == tok.tgt.encode(tgt)[:limit]
    assert not (prepared.run.data / ".work").exists()  # the work files are gone


def test_max_pairs_keeps_the_training_pairs_that_come_first_in_hash_order(tmp_path, corpus):
    path, pairs = corpus
    config = config_for(tmp_path, path, max_pairs=500)
    prepared = set_up_run(config, **QUIET)
    _, _, train = expected_split(pairs, config.data)
    first = sorted(sorted(train, key=lambda t: (t[1], t[2]))[:500], key=lambda t: t[2])
    assert stored_pairs(prepared) == [pair for pair, _, _ in first]
    manifest = read_manifest(prepared.run.store)
    assert manifest.report["train"] == 500 and manifest.pairs == 500


def test_bpe_learns_from_a_bounded_seeded_sample_of_the_training_pairs(tmp_path, corpus):
    path, pairs = corpus
    config = config_for(tmp_path, path)
    valid, test, train = expected_split(pairs, config.data)
    work = tmp_path / "work"
    work.mkdir()
    cleaned = [p for p in (clean_pair(s, t, config.data) for s, t in pairs) if p]
    (work / "clean.src").write_text("".join(s + "\n" for s, _ in cleaned), encoding="utf-8")
    (work / "clean.tgt").write_text("".join(t + "\n" for _, t in cleaned), encoding="utf-8")
    source_hashes([s for s, _ in cleaned], config.data.seed).tofile(work / "clean.hash")
    hashes = sorted(set(source_hashes([s for s, _ in cleaned], config.data.seed).tolist()))
    scanned = [preparation.ScannedCorpus("c", work, None, Selection(Cuts(hashes[39], hashes[69]), None))]
    sample = preparation.BpeSample(scanned, limit=300, pairs=len(train), seed=5, joint=True)
    drawn = list(sample)
    assert 100 < len(drawn) <= 150  # at most 300 sentences, two per pair
    assert list(sample) == drawn and sample.sentences == 2 * len(drawn)  # the same pairs on every pass
    assert set(drawn) <= {pair for pair, _, _ in train}
    other = preparation.BpeSample(scanned, limit=300, pairs=len(train), seed=6, joint=True)
    assert list(other) != drawn
    everything = preparation.BpeSample(scanned, limit=10**6, pairs=len(train), seed=5, joint=False)
    assert list(everything) == [pair for pair, _, _ in train]


def test_a_rerun_reuses_the_prepared_corpus_without_reading_the_text(tmp_path, corpus, monkeypatch):
    path, _ = corpus
    config = config_for(tmp_path, path)
    first = set_up_run(config, **QUIET)
    stamp = (first.run.store / "manifest.json").stat().st_mtime_ns
    monkeypatch.setattr(corpus_module, "iter_pairs", lambda *a, **k: pytest.fail("the corpus was read again"))
    again = set_up_run(replace(config, model=replace(config.model, d_model=48)), **QUIET)  # another model: fine
    assert (again.run.store / "manifest.json").stat().st_mtime_ns == stamp and again.corpus_key == first.corpus_key
    assert "d_model: 48" in again.run.config.read_text()


def test_a_changed_corpus_or_data_setting_is_prepared_again(tmp_path, corpus, sample_pairs):
    path, pairs = corpus
    copy = write_jsonl(tmp_path / "copy.jsonl", pairs)
    config = config_for(tmp_path, copy)
    first = set_up_run(config, **QUIET)
    write_jsonl(copy, pairs[:-10])  # the file changed: size and time
    again = set_up_run(config, **QUIET)
    assert again.corpus_key != first.corpus_key and len(again.train_ids) < len(first.train_ids)
    fewer = set_up_run(replace(config, data=replace(config.data, max_pairs=100)), **QUIET)
    assert len(fewer.train_ids) == 100


def test_a_preparation_cut_short_is_prepared_again_and_a_failed_one_leaves_nothing(tmp_path, corpus, monkeypatch):
    path, _ = corpus
    config = config_for(tmp_path, path)
    run = set_up_run(config, **QUIET).run
    (run.store / "manifest.json").unlink()  # as if killed before the manifest was written
    again = set_up_run(config, **QUIET)
    assert read_manifest(run.store) is not None and len(again.train_ids) > 0

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(preparation, "_encode", interrupted)
    fresh = config_for(tmp_path, path, name="interrupted")
    with pytest.raises(KeyboardInterrupt):
        set_up_run(fresh, **QUIET)
    assert not (Path(fresh.run.root) / "interrupted").exists()


def test_corpus_problems_are_one_line_errors(tmp_path, sample_pairs):
    empty = write_jsonl(tmp_path / "empty.jsonl", [("", "")])
    with pytest.raises(DataError, match="empty after cleaning"):
        set_up_run(config_for(tmp_path, empty), **QUIET)
    few = write_jsonl(tmp_path / "few.jsonl", sample_pairs[:60])
    with pytest.raises(DataError, match=r"distinct source sentences: too few for data.valid_size=40 \+ "):
        set_up_run(config_for(tmp_path, few, name="few"), **QUIET)
    assert not (tmp_path / "runs" / "few").exists()


def test_skipped_bad_lines_are_counted_in_the_manifest(tmp_path, sample_pairs):
    tsv = tmp_path / "c.tsv"
    lines = [f"{s}\t{t}\n" for s, t in sample_pairs[:400]]
    lines[7], lines[300] = "no tab here\n", "a\tb\tc\n"
    tsv.write_text("".join(lines), encoding="utf-8")
    with pytest.raises(DataError, match=r"c.tsv:8: expected source<TAB>target"):
        set_up_run(config_for(tmp_path, tsv), **QUIET)
    messages = []
    prepared = set_up_run(config_for(tmp_path, tsv, name="skip", skip_bad_lines=True), log=messages.append)
    assert read_manifest(prepared.run.store).report["skipped_bad_lines"] == 2
    assert any(m.startswith("warning: skipped 2 bad line(s)") and "c.tsv:8" in m for m in messages)


# Several corpora (data.corpora): each scanned and split on its own, encoded one after the other.

def mixed_config(tmp_path, corpora, name="mixed", **data_options):
    config = config_for(tmp_path, corpora[0]["files"][0], name, **data_options)
    entries = [CorpusConfig(**entry) for entry in corpora]
    return replace(config, data=replace(config.data, source="hub", files=[], corpora=entries))


@pytest.fixture(scope="module")
def two_corpora(tmp_path_factory, sample_pairs):
    """Two corpora of different sizes; the second also holds every source of the first's held-out
    splits (as corpora drawn from overlapping sources do), which must not train."""
    folder = tmp_path_factory.mktemp("two")
    a, b = sample_pairs[:700], sample_pairs[700:2000]
    config = config_for(folder, write_jsonl(folder / "a.jsonl", a)).data
    valid, test, _ = expected_split(a, config)
    b = b + [(s, t + " (bis)") for s, t in valid + test]
    return write_jsonl(folder / "a.jsonl", a), write_jsonl(folder / "b.jsonl", b), a, b, valid + test


def test_each_corpus_is_split_on_its_own_and_stored_after_the_one_before(tmp_path, two_corpora):
    path_a, path_b, a, b, held_out_a = two_corpora
    config = mixed_config(tmp_path, [{"files": [str(path_a)], "weight": 3}, {"files": [str(path_b)], "name": "books"}])
    prepared = set_up_run(config, **QUIET)
    run, data = prepared.run, config.data
    valid_a, test_a, train_a = expected_split(a, data)
    valid_b, test_b, train_b = expected_split(b, data)
    split_a = {s: corpus_module.read_split(*run.corpus_split_files("a", s, "en", "fr")) for s in ("valid", "test")}
    split_b = {s: corpus_module.read_split(*run.corpus_split_files("books", s, "en", "fr")) for s in ("valid", "test")}
    assert split_a == {"valid": valid_a, "test": test_a} and split_b == {"valid": valid_b, "test": test_b}
    assert splits_of(run) == {"valid": valid_a + valid_b, "test": test_a + test_b}  # the run's: both, in order
    held_out = {s for s, _ in valid_a + test_a + valid_b + test_b}
    leaked = [pair for pair, _, _ in train_b if pair[0] in held_out]
    assert {s for s, _ in held_out_a} & {s for s, _ in leaked}  # the second corpus would train on them
    kept_a, kept_b = ([p for p, _, _ in train if p[0] not in held_out] for train in (train_a, train_b))
    expected = kept_a + kept_b
    assert stored_pairs(prepared) == expected
    manifest = read_manifest(run.store)
    assert manifest.corpus_sizes() == {"a": len(kept_a), "books": len(kept_b)}
    assert manifest.report["train"] == manifest.pairs == len(expected)
    assert prepared.mixture.sizes == tuple(manifest.corpus_sizes().values()) and prepared.mixture.weights == (3.0, 1.0)
    assert prepared.valid_by_corpus == {"a": valid_a, "books": valid_b}
    assert corpus_module.read_held_out(run, "test", data, "books") == test_b
    with pytest.raises(UserError, match="has no corpus 'news' \\(its corpora: a, books\\)"):
        corpus_module.read_held_out(run, "test", data, "news")


def test_new_weights_reuse_the_prepared_corpora(tmp_path, two_corpora, monkeypatch):
    path_a, path_b, *_ = two_corpora
    config = mixed_config(tmp_path, [{"files": [str(path_a)]}, {"files": [str(path_b)]}])
    first = set_up_run(config, **QUIET)
    monkeypatch.setattr(corpus_module, "iter_pairs", lambda *a, **k: pytest.fail("the corpus was read again"))
    heavier = [replace(c, weight=5.0) for c in config.data.corpora]
    reweighted = replace(config, data=replace(config.data, corpora=heavier))
    again = set_up_run(reweighted, **QUIET)
    assert again.corpus_key == first.corpus_key and again.mixture.weights == (5.0, 5.0)


def test_a_corpus_of_the_mixture_that_is_empty_or_missing_is_one_line_and_leaves_nothing(tmp_path, two_corpora):
    path_a, *_ = two_corpora
    empty = write_jsonl(tmp_path / "empty.jsonl", [("", "")])
    config = mixed_config(tmp_path, [{"files": [str(path_a)]}, {"files": [str(empty)], "name": "blank"}])
    with pytest.raises(DataError, match="^corpus blank is empty after cleaning$"):
        set_up_run(config, **QUIET)
    assert not (tmp_path / "runs" / "mixed").exists()
    missing = mixed_config(tmp_path, [{"files": [str(path_a)]}, {"files": [str(tmp_path / "nowhere.jsonl")]}])
    with pytest.raises(DataError, match="corpus file not found: .*nowhere.jsonl"):
        set_up_run(missing, **QUIET)
    assert not (tmp_path / "runs" / "mixed").exists()
