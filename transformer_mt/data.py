"""Parallel corpus: load (hub dataset or local files) → normalise → filter → split by source sentence."""
from __future__ import annotations

import gzip
import json
import random
import re
import socket
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

from .config import DataConfig
from .errors import UserError

SAMPLE_CORPUS = "tatoeba-en-fr-sample.jsonl.gz"
_ZERO_WIDTH = re.compile("[\u200b\u200c\u200d\u2060\ufeff]")
_SPACES = re.compile(r"\s+")

Pair = tuple[str, str]


class DataError(UserError):
    pass


@dataclass
class Splits:
    train: list[Pair]
    valid: list[Pair]
    test: list[Pair]


def normalise(text: str) -> str:
    """NFKC (folds U+00A0/U+202F/U+2009 to a space), drop zero-width marks, collapse whitespace.

    The tokenizer applies the same normalisation, so detokenised output equals normalise(input).
    """
    text = unicodedata.normalize("NFKC", text)
    text = _ZERO_WIDTH.sub("", text)
    return _SPACES.sub(" ", text).strip()


def sample_corpus_path() -> Path:
    return Path(__file__).parent / "corpus" / SAMPLE_CORPUS


def load_pairs(cfg: DataConfig) -> list[Pair]:
    """The raw (source, target) pairs named by the config, in corpus order."""
    if cfg.source == "hub":
        return _load_hub(cfg)
    files = [str(sample_corpus_path())] if cfg.source == "sample" else cfg.files
    return _load_files(files, cfg.src_lang, cfg.tgt_lang)


def _load_hub(cfg: DataConfig) -> list[Pair]:
    import datasets

    is_local = Path(cfg.dataset).exists()
    offline = not is_local and not _hub_reachable()
    if offline:  # use a cached copy if there is one, without datasets' long retry loop
        _set_hub_offline(datasets)
    try:
        rows = datasets.load_dataset(cfg.dataset, cfg.dataset_config, revision=cfg.revision, split="train")
    except (ConnectionError, OSError) as err:
        if offline or "Couldn't reach" in str(err):
            raise DataError(
                f"cannot reach the Hugging Face hub to load {cfg.dataset} ({cfg.dataset_config}) and it is not "
                "cached: train offline with configs/sample.yaml, or point data.source=files at a local corpus"
            ) from None
        raise DataError(f"cannot load dataset {cfg.dataset} ({cfg.dataset_config}): {err}") from None
    except ValueError as err:
        raise DataError(f"cannot load dataset {cfg.dataset} ({cfg.dataset_config}): {err}") from None
    return _pairs_from_rows(rows, cfg.src_lang, cfg.tgt_lang, cfg.dataset)


def _hub_reachable(timeout: float = 3.0) -> bool:
    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE:
        return False
    host = urlparse(constants.ENDPOINT).hostname or "huggingface.co"
    try:
        socket.create_connection((host, 443), timeout=timeout).close()
        return True
    except OSError:
        return False


def _set_hub_offline(datasets_module) -> None:
    from huggingface_hub import constants

    constants.HF_HUB_OFFLINE = True
    datasets_module.config.HF_HUB_OFFLINE = True


def _pairs_from_rows(rows, src: str, tgt: str, name: str) -> list[Pair]:
    if "translation" not in rows.column_names:
        raise DataError(f"{name}: expected a 'translation' column (opus_books schema), got {rows.column_names}")
    pairs = []
    for item in rows["translation"]:
        if src not in item or tgt not in item:
            raise DataError(f"{name}: a row has no {src!r}/{tgt!r} translation: {item}")
        pairs.append((item[src] or "", item[tgt] or ""))
    return pairs


def _load_files(files: list[str], src: str, tgt: str) -> list[Pair]:
    paths = [Path(f) for f in files]
    for path in paths:
        if not path.is_file():
            raise DataError(f"corpus file not found: {path}")
    if len(paths) == 2 and paths[0].suffix == f".{src}" and paths[1].suffix == f".{tgt}":
        return _load_parallel(paths[0], paths[1])
    pairs: list[Pair] = []
    for path in paths:
        name = path.name.removesuffix(".gz")
        if name.endswith((".jsonl", ".json")):
            pairs += _load_jsonl(path, src, tgt)
        elif name.endswith(".tsv"):
            pairs += _load_tsv(path)
        else:
            raise DataError(
                f"{path}: unknown corpus format (use .jsonl[.gz], .tsv, or two aligned files *.{src} *.{tgt})"
            )
    return pairs


def read_lines(path: Path) -> Iterator[str]:
    """A UTF-8 text file's lines (gzip-compressed if it ends in .gz), without their line ends.

    Lines end at "\n" only (a "\r" before it is dropped), as `wc -l` and sacreBLEU count them: Python's
    universal newlines and str.splitlines() also split at a lone "\r", U+0085 or U+2028 inside a
    sentence, which misaligns parallel files. Bytes that are not UTF-8 are a one-line error."""
    try:
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rt", encoding="utf-8", newline="\n") as handle:
            for line in handle:
                yield line.removesuffix("\n").removesuffix("\r")
    except UnicodeDecodeError as err:
        raise DataError(f"{path}: not UTF-8 text (it holds the byte 0x{err.object[err.start]:02x})") from None
    except (OSError, EOFError) as err:  # gzip.BadGzipFile is an OSError
        raise DataError(f"{path}: cannot be read: {err}") from None


def _load_jsonl(path: Path, src: str, tgt: str) -> list[Pair]:
    pairs = []
    for number, line in enumerate(read_lines(path), 1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)["translation"]
            pairs.append((item[src] or "", item[tgt] or ""))
        except (json.JSONDecodeError, KeyError, TypeError):
            raise DataError(
                f"{path}:{number}: expected {{\"translation\": {{\"{src}\": ..., \"{tgt}\": ...}}}}"
            ) from None
    return pairs


def _load_tsv(path: Path) -> list[Pair]:
    pairs = []
    for number, line in enumerate(read_lines(path), 1):
        fields = line.split("\t")
        if len(fields) < 2:
            raise DataError(f"{path}:{number}: expected source<TAB>target")
        pairs.append((fields[0], fields[1]))
    return pairs


def _load_parallel(src_path: Path, tgt_path: Path) -> list[Pair]:
    sources, targets = list(read_lines(src_path)), list(read_lines(tgt_path))
    if len(sources) != len(targets):
        raise DataError(f"{src_path} has {len(sources)} lines but {tgt_path} has {len(targets)}: not aligned")
    return list(zip(sources, targets))


def clean(pairs: list[Pair], cfg: DataConfig) -> list[Pair]:
    """Normalise both sides and drop empty, over-long and badly length-mismatched pairs."""
    kept = []
    for src, tgt in pairs:
        src, tgt = normalise(src), normalise(tgt)
        if not src or not tgt:
            continue
        if max(src.count(" "), tgt.count(" ")) + 1 > cfg.max_words:
            continue
        if max(len(src), len(tgt)) > cfg.max_length_ratio * min(len(src), len(tgt)):
            continue
        kept.append((src, tgt))
    return kept


def split(pairs: list[Pair], cfg: DataConfig) -> Splits:
    """Seeded train/valid/test split grouped by source sentence, so no source appears in two splits."""
    groups: dict[str, list[Pair]] = {}
    for pair in pairs:
        groups.setdefault(pair[0], []).append(pair)
    sources = sorted(groups)
    rng = random.Random(cfg.seed)
    rng.shuffle(sources)
    if cfg.valid_size + cfg.test_size >= len(sources):
        raise DataError(
            f"corpus has {len(sources)} distinct source sentences: too few for "
            f"data.valid_size={cfg.valid_size} + data.test_size={cfg.test_size} plus training data"
        )
    valid = sources[: cfg.valid_size]
    test = sources[cfg.valid_size : cfg.valid_size + cfg.test_size]
    train = sources[cfg.valid_size + cfg.test_size :]
    flatten = lambda keys: [pair for key in keys for pair in groups[key]]  # noqa: E731
    return Splits(train=flatten(train)[: cfg.max_pairs], valid=flatten(valid), test=flatten(test))


def prepare(cfg: DataConfig) -> Splits:
    pairs = clean(load_pairs(cfg), cfg)
    if not pairs:
        raise DataError("the corpus is empty after cleaning")
    return split(pairs, cfg)


def write_split(pairs: list[Pair], src_path: Path, tgt_path: Path) -> None:
    src_path.write_text("".join(s + "\n" for s, _ in pairs), encoding="utf-8")
    tgt_path.write_text("".join(t + "\n" for _, t in pairs), encoding="utf-8")


def read_split(src_path: Path, tgt_path: Path) -> list[Pair]:
    return _load_parallel(src_path, tgt_path)
