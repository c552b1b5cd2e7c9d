import gzip
import time

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.helpers.runs import write_jsonl
from transformer_mt.config import DataConfig
from transformer_mt.data import corpus
from transformer_mt.data.corpus import BadLines, DataError, clean_pair, iter_pairs, normalise


def load_pairs(cfg, bad=None):
    return list(iter_pairs(cfg, bad))


def opus_books_folder(root, pairs):
    """A local copy laid out as the hub's Helsinki-NLP/opus_books (parquet per config + README configs)."""
    (root / "en-fr").mkdir(parents=True)
    table = pa.table({"id": [str(i) for i in range(len(pairs))],
                      "translation": [{"en": en, "fr": fr} for en, fr in pairs]})
    pq.write_table(table, root / "en-fr" / "train-00000-of-00001.parquet")
    (root / "README.md").write_text(
        "---\nconfigs:\n- config_name: en-fr\n  data_files:\n  - split: train\n    path: en-fr/train-*\n---\n")
    return root


def test_hub_path_loads_opus_books_schema_from_a_local_dataset(tmp_path, sample_pairs):
    folder = opus_books_folder(tmp_path / "opus_books", sample_pairs[:50])
    cfg = DataConfig(source="hub", dataset=str(folder), dataset_config="en-fr")
    assert load_pairs(cfg) == sample_pairs[:50]


def test_unreachable_hub_fails_fast_with_one_clear_message(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))  # nothing cached
    monkeypatch.setattr(corpus, "_hub_reachable", lambda timeout=3.0: False)
    started = time.monotonic()
    with pytest.raises(DataError, match="cannot reach the Hugging Face hub.*configs/sample.yaml"):
        load_pairs(DataConfig(source="hub", dataset="Helsinki-NLP/opus_books-not-cached-here"))
    assert time.monotonic() - started < 20


def test_local_formats_load_the_same_pairs(tmp_path, sample_pairs):
    pairs = sample_pairs[:20]
    jsonl = write_jsonl(tmp_path / "c.jsonl", pairs)
    tsv = tmp_path / "c.tsv"
    tsv.write_text("".join(f"{en}\t{fr}\n" for en, fr in pairs), encoding="utf-8")
    (tmp_path / "c.en").write_text("".join(en + "\n" for en, _ in pairs), encoding="utf-8")
    (tmp_path / "c.fr").write_text("".join(fr + "\n" for _, fr in pairs), encoding="utf-8")
    for name in ("c.en", "c.fr", "c.tsv"):
        with gzip.open(tmp_path / f"{name}.gz", "wt", encoding="utf-8") as handle:
            handle.write((tmp_path / name).read_text(encoding="utf-8"))
    for files in ([str(jsonl)], [str(tsv)], [str(tmp_path / "c.en"), str(tmp_path / "c.fr")],
                  [str(tmp_path / "c.tsv.gz")], [str(tmp_path / "c.en.gz"), str(tmp_path / "c.fr.gz")]):
        assert load_pairs(DataConfig(source="files", files=files)) == pairs


def test_bad_local_files_are_clear_errors(tmp_path):
    with pytest.raises(DataError, match="not found"):
        load_pairs(DataConfig(source="files", files=[str(tmp_path / "none.jsonl")]))
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"translation": {"en": "a", "fr": "b"}}\n{"translation": {"en": "a"}}\n')
    with pytest.raises(DataError, match="bad.jsonl:2: expected"):
        load_pairs(DataConfig(source="files", files=[str(bad)]))
    (tmp_path / "a.en").write_text("x\ny\n")
    (tmp_path / "a.fr").write_text("x\n")
    with pytest.raises(DataError, match=r"a.fr has 1 lines but .*a.en has 2: not aligned \(line 2 of .*a.en"):
        load_pairs(DataConfig(source="files", files=[str(tmp_path / "a.en"), str(tmp_path / "a.fr")]))


def test_bad_lines_name_file_and_line_or_are_skipped_and_counted(tmp_path):
    tsv = tmp_path / "c.tsv"
    tsv.write_bytes(b"a\tb\none field\nc\td\te\ncaf\xe9\tx\nf\tg\n")
    with pytest.raises(DataError, match=r"c.tsv:2: expected source<TAB>target, got 1 field\(s\) "
                                        r"\(data.skip_bad_lines=true skips such lines\)"):
        load_pairs(DataConfig(source="files", files=[str(tsv)]))
    bad = BadLines(skip=True)
    assert load_pairs(DataConfig(source="files", files=[str(tsv)], skip_bad_lines=True), bad) == [("a", "b"),
                                                                                                  ("f", "g")]
    assert bad.count == 3 and "c.tsv:3: expected source<TAB>target, got 3 field(s)" in bad.summary()
    assert "c.tsv:4: not UTF-8 text" in bad.summary()


def test_skipping_a_bad_line_of_parallel_files_keeps_them_aligned(tmp_path):
    (tmp_path / "p.en").write_bytes(b"one\ntw\xffo\nthree\n")
    (tmp_path / "p.fr").write_bytes(b"un\ndeux\ntrois\n")
    files = [str(tmp_path / "p.en"), str(tmp_path / "p.fr")]
    with pytest.raises(DataError, match=r"p.en:2: not UTF-8 text \(it holds the byte 0xff\)"):
        load_pairs(DataConfig(source="files", files=files))
    assert load_pairs(DataConfig(source="files", files=files, skip_bad_lines=True)) == [("one", "un"),
                                                                                        ("three", "trois")]
    (tmp_path / "p.fr").write_bytes(b"un\ndeux\n")  # one line short: every pair after it would shift
    with pytest.raises(DataError, match="not aligned"):
        load_pairs(DataConfig(source="files", files=files, skip_bad_lines=True))


def test_lines_end_at_newline_only_so_parallel_files_stay_aligned(tmp_path):
    # A sentence may hold U+0085, U+2028 or a lone CR; str.splitlines() (and universal newlines) would
    # cut it in two. Windows line ends (CRLF) are still one line end.
    sources = ["a\u0085b", "c\u2028d", "e\rf", "g", "h"]
    (tmp_path / "p.en").write_bytes(("\n".join(sources[:4]) + "\r\nh\n").encode("utf-8"))
    (tmp_path / "p.fr").write_text("1\n2\n3\n4\n5\n", encoding="utf-8")
    pairs = load_pairs(DataConfig(source="files", files=[str(tmp_path / "p.en"), str(tmp_path / "p.fr")]))
    assert pairs == list(zip(sources, "12345"))
    tsv = tmp_path / "p.tsv"
    tsv.write_bytes("x\u2028y\tz\r\n".encode("utf-8"))
    assert load_pairs(DataConfig(source="files", files=[str(tsv)])) == [("x\u2028y", "z")]


def test_unreadable_bytes_are_one_line_errors(tmp_path):
    latin1 = tmp_path / "latin1.tsv"
    latin1.write_bytes("caf\u00e9\tcaf\u00e9\n".encode("latin-1"))
    with pytest.raises(DataError, match=r"latin1.tsv:1: not UTF-8 text \(it holds the byte 0xe9\)"):
        load_pairs(DataConfig(source="files", files=[str(latin1)]))
    fake_gzip = tmp_path / "c.jsonl.gz"
    fake_gzip.write_text('{"translation": {"en": "a", "fr": "b"}}\n')
    with pytest.raises(DataError, match="c.jsonl.gz: cannot be read"):
        load_pairs(DataConfig(source="files", files=[str(fake_gzip)]))


def test_sample_corpus_is_shipped_and_shuffled():
    pairs = load_pairs(DataConfig(source="sample"))
    assert len(pairs) == 140_000
    first_lengths = [len(en) for en, _ in pairs[:200]]
    assert max(first_lengths) > 3 * min(first_lengths)  # not the length-sorted head of the original


def test_cleaning_normalises_and_filters():
    cfg = DataConfig(max_words=5, max_length_ratio=3.0)
    pairs = [("Go.", "Va\u202f!"), ("", "vide"), ("a b c d e f g", "x y z"), ("Yes.", "Oui, c'est absolument certain."),
             ("Hi\u200b.", "Salut\u00a0!")]
    assert [p for p in (clean_pair(s, t, cfg) for s, t in pairs) if p] == [("Go.", "Va !"), ("Hi.", "Salut !")]
    assert normalise("  a\u2009 b  ") == "a b"
    assert normalise("a\u2028b\x85c\r\nd\te") == "a b c d e"  # no line break survives: one pair, one line
