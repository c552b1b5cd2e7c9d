import pytest

from transformer_mt.config import Config, ConfigError, apply_overrides, load_config


def write(tmp_path, text, name="exp.yaml"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_loads_typed_sections_and_defaults_run_name_to_file_stem(tmp_path):
    config = load_config(write(tmp_path, "model:\n  d_model: 128\n  n_heads: 4\ntrain:\n  lr: 1\n"))
    assert config.model.d_model == 128
    assert isinstance(config.train.lr, float) and config.train.lr == 1.0
    assert config.run.name == "exp"


def test_unknown_key_names_key_and_file(tmp_path):
    path = write(tmp_path, "model:\n  d_modle: 128\n")
    with pytest.raises(ConfigError, match=r"exp\.yaml.*model\.d_modle"):
        load_config(path)


def test_unknown_section(tmp_path):
    with pytest.raises(ConfigError, match="trian"):
        load_config(write(tmp_path, "trian:\n  lr: 1\n"))


def test_wrong_type_names_key_and_file(tmp_path):
    with pytest.raises(ConfigError, match=r"exp\.yaml: train\.max_steps must be int"):
        load_config(write(tmp_path, "train:\n  max_steps: many\n"))
    with pytest.raises(ConfigError, match="train.compile must be bool"):
        load_config(write(tmp_path, "train:\n  compile: 1\n"))


def test_invalid_choice_and_malformed_yaml(tmp_path):
    with pytest.raises(ConfigError, match="train.device"):
        load_config(write(tmp_path, "train:\n  device: tpu\n"))
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(write(tmp_path, "model: [\n"))
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "missing.yaml")


def test_overrides_are_typed_and_checked(tmp_path):
    path = write(tmp_path, "train:\n  max_steps: 10\n")
    config = load_config(path, ["train.max_steps=200", "run.name=other", "data.files=[a.tsv]"])
    assert config.train.max_steps == 200 and config.run.name == "other" and config.data.files == ["a.tsv"]
    with pytest.raises(ConfigError, match="unknown key 'train.max_stepz'"):
        load_config(path, ["train.max_stepz=1"])
    with pytest.raises(ConfigError, match="train.max_steps must be int"):
        load_config(path, ["train.max_steps=lots"])
    with pytest.raises(ConfigError, match="key.sub=value"):
        load_config(path, ["train.max_steps"])


def test_optional_values_accept_null():
    config = apply_overrides(Config(), ["train.max_minutes=null", "train.max_minutes=2.5"])
    assert config.train.max_minutes == 2.5
    assert apply_overrides(Config(), ["train.max_steps=null"]).train.max_steps is None


@pytest.mark.parametrize("override, message", [
    ("model.n_heads=0", "model.n_heads: must be at least 1"),
    ("model.d_model=30", r"model.d_model \(30\) must be divisible"),
    ("model.d_model=9", r"model.d_model \(9\) must be even"),
    ("model.max_positions=1", "model.max_positions: must be at least 2"),
    ("model.dropout=1.0", r"model.dropout: must be in \[0, 1\)"),
    ("tokenizer.vocab_size=100", "tokenizer.vocab_size: must be at least 260"),
    ("data.valid_size=0", "data.valid_size: must be at least 1"),
    ("data.max_length_ratio=0.5", "data.max_length_ratio"),
    ("train.lr=0", "train.lr: must be greater than 0"),
    ("train.lr=.nan", "train.lr: must be greater than 0"),
    ("train.warmup_steps=0", "train.warmup_steps: must be at least 1"),
    ("train.max_steps=-5", "train.max_steps: must be at least 1"),
    ("train.length_multiple=0", "train.length_multiple: must be at least 1"),
    ("train.row_multiple=0", "train.row_multiple: must be at least 1"),
    ("train.max_minutes=0", "train.max_minutes: must be greater than 0"),
    ("train.valid_max_sentences=0", "train.valid_max_sentences"),
    ("train.label_smoothing=1", r"train.label_smoothing: must be in \[0, 1\)"),
    ("train.adam_betas=[0.9,1.0]", "train.adam_betas"),
    ("train.adam_eps=0", "train.adam_eps"),
    ("train.clip_norm=-1", "train.clip_norm: must be at least 0"),
    ("train.optimizer=sgd", "train.optimizer: 'sgd' is not one of adam, adamw"),
    ("train.sdpa_backends=[flash,fast]", "train.sdpa_backends: 'fast' is not one of flash, efficient, cudnn, math"),
    ("train.sdpa_backends=[]", "train.sdpa_backends: name at least one kernel"),
    ("train.collective_timeout_s=0", "train.collective_timeout_s: must be greater than 0"),
    ("decode.batch_size=0", "decode.batch_size: must be at least 1"),
    ("decode.max_len_b=-1", "decode.max_len_b: must be at least 0"),
])
def test_out_of_range_values_name_the_key(override, message):
    # Each of these used to crash deep inside training with a traceback, or train nonsense silently.
    with pytest.raises(ConfigError, match=f"command line: {message}"):
        apply_overrides(Config(), [override])


def test_boundary_values_are_accepted():
    config = apply_overrides(Config(), ["train.clip_norm=0", "tokenizer.min_frequency=0", "decode.max_len_b=0",
                                        "tokenizer.vocab_size=260", "model.dropout=0", "train.max_steps=null"])
    assert config.train.clip_norm == 0.0 and config.tokenizer.vocab_size == 260
    config = apply_overrides(Config(), ["train.sdpa_backends=[flash,efficient]", "train.collective_timeout_s=120"])
    assert config.train.sdpa_backends == ["flash", "efficient"] and config.train.collective_timeout_s == 120


CORPORA = """data:
  corpora:
    - {source: files, files: [captions.jsonl.gz], weight: 3}
    - {source: sample}
"""


def test_weighted_corpora_are_typed_named_and_survive_a_save(tmp_path):
    from transformer_mt.config import CorpusConfig, save_config

    config = load_config(write(tmp_path, CORPORA))
    assert config.data.mixed and [c.name for c in config.data.mixture()] == ["captions", "sample"]
    assert all(isinstance(c, CorpusConfig) for c in config.data.corpora) and config.data.corpora[0].weight == 3.0
    save_config(config, tmp_path / "saved.yaml")
    assert load_config(tmp_path / "saved.yaml").data == config.data
    one = load_config(write(tmp_path, "data:\n  source: sample\n", "one.yaml")).data
    assert not one.mixed and [(c.name, c.source, c.weight) for c in one.mixture()] == [("sample", "sample", 1.0)]
    reading = config.data.reading(config.data.mixture()[0])
    assert (reading.source, reading.files, reading.corpora, reading.max_words) == (
        "files", ["captions.jsonl.gz"], [], config.data.max_words)


@pytest.mark.parametrize("entries, message", [
    ("[{source: sample, weight: 0}]", r"data\.corpora\[0\]\.weight: must be greater than 0"),
    ("[{source: sample}, {source: sample, weight: -1}]", r"data\.corpora\[1\]\.weight: must be greater than 0"),
    ("[{source: sample, weight: .nan}]", r"data\.corpora\[0\]\.weight: must be greater than 0"),
    ("[{source: sample, weight: .inf}]", r"data\.corpora\[0\]\.weight: must be finite"),
    ("[{source: sample}, {source: sample}]", "two corpora share a name"),
    ("[{source: files}]", r"data\.corpora\[0\]\.files: must list at least one file"),
    ("[{source: sample, wieght: 2}]", r"unknown key 'data\.corpora\[0\]\.wieght'"),
    ("[{source: sample, name: 'a/b'}]", r"data\.corpora\[0\]\.name: 'a/b': use 1-40 letters"),
    ("[sample]", r"data\.corpora\[0\] must be a mapping"),
])
def test_bad_corpora_are_one_line_naming_the_entry(tmp_path, entries, message):
    with pytest.raises(ConfigError, match=message):
        load_config(write(tmp_path, f"data:\n  corpora: {entries}\n"))


def test_corpora_and_a_single_corpus_source_are_not_mixed(tmp_path):
    with pytest.raises(ConfigError, match=r"data\.source: with data\.corpora, say it inside each corpus entry"):
        load_config(write(tmp_path, "data:\n  source: sample\n" + CORPORA.removeprefix("data:\n")))
