"""Parallel corpus: stream (source, target) pairs from a hub dataset or local files, normalise, filter.

Everything here streams: no function holds the corpus, so a corpus of any size reads in bounded memory.
"""
from __future__ import annotations

import gzip
import json
import re
import socket
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

from ..config import DataConfig, load_config
from ..errors import UserError
from ..run_folder import RunPaths

SAMPLE_CORPUS = "tatoeba-en-fr-sample.jsonl.gz"
_ZERO_WIDTH = re.compile("[\u200b\u200c\u200d\u2060\ufeff]")

Pair = tuple[str, str]


class DataError(UserError):
    pass


def normalise(text: str) -> str:
    """NFKC (folds U+00A0/U+202F/U+2009 to a space), drop zero-width marks, collapse whitespace.

    The tokenizer applies the same normalisation, so detokenised output equals normalise(input).
    (str.split() and the regex \\s split at the same characters: str.isspace.)
    """
    text = unicodedata.normalize("NFKC", text)
    return " ".join(_ZERO_WIDTH.sub("", text).split())


def sample_corpus_path() -> Path:
    return Path(__file__).parent / "sample" / SAMPLE_CORPUS


@dataclass
class BadLines:
    """Lines that cannot be read as a pair: an error naming file and line, or (`skip`) skipped and counted."""
    skip: bool = False
    count: int = 0
    first: list[str] = field(default_factory=list)  # the first few, for the report

    def found(self, where: str, reason: str) -> None:
        if not self.skip:
            raise DataError(f"{where}: {reason} (data.skip_bad_lines=true skips such lines)")
        self.count += 1
        if len(self.first) < 3:
            self.first.append(f"{where}: {reason}")

    def summary(self) -> str | None:
        if not self.count:
            return None
        return f"skipped {self.count} bad line(s) (data.skip_bad_lines), e.g. {'; '.join(self.first)}"


def corpus_files(cfg: DataConfig) -> list[Path]:
    """The local files a `sample` or `files` corpus is read from."""
    paths = [sample_corpus_path()] if cfg.source == "sample" else [Path(f) for f in cfg.files]
    for path in paths:
        if not path.is_file():
            raise DataError(f"corpus file not found: {path}")
    return paths


def iter_pairs(cfg: DataConfig, bad: BadLines | None = None) -> Iterator[Pair]:
    """The raw (source, target) pairs named by the config, in corpus order, one at a time."""
    bad = bad or BadLines(cfg.skip_bad_lines)
    if cfg.source == "hub":
        yield from _hub_pairs(cfg)
        return
    paths = corpus_files(cfg)
    suffixes = [Path(path.name.removesuffix(".gz")).suffix for path in paths]
    if suffixes == [f".{cfg.src_lang}", f".{cfg.tgt_lang}"]:
        yield from _parallel_pairs(paths[0], paths[1], bad)
        return
    for path in paths:
        name = path.name.removesuffix(".gz")
        if name.endswith((".jsonl", ".json")):
            yield from _jsonl_pairs(path, cfg.src_lang, cfg.tgt_lang, bad)
        elif name.endswith(".tsv"):
            yield from _tsv_pairs(path, bad)
        else:
            raise DataError(f"{path}: unknown corpus format (use .jsonl[.gz], .tsv[.gz], or two aligned files "
                            f"*.{cfg.src_lang}[.gz] *.{cfg.tgt_lang}[.gz])")


def hub_rows(cfg: DataConfig):
    """The hub dataset (or a local dataset folder) as a memory-mapped Arrow `datasets.Dataset`."""
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
    if "translation" not in rows.column_names:
        raise DataError(f"{cfg.dataset}: expected a 'translation' column (opus_books schema), got {rows.column_names}")
    return rows


def _hub_pairs(cfg: DataConfig, chunk: int = 10000) -> Iterator[Pair]:
    rows = hub_rows(cfg)
    src, tgt = cfg.src_lang, cfg.tgt_lang
    for batch in rows.select_columns(["translation"]).iter(batch_size=chunk):
        for item in batch["translation"]:
            if not item or src not in item or tgt not in item:
                raise DataError(f"{cfg.dataset}: a row has no {src!r}/{tgt!r} translation: {item}")
            yield item[src] or "", item[tgt] or ""


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


def _numbered_lines(path: Path, bad: BadLines | None) -> Iterator[tuple[int, str | None]]:
    """(line number, text) of a UTF-8 file (gzip-compressed if it ends in .gz), without line ends.

    Lines end at "\\n" only (a "\\r" before it is dropped), as `wc -l` and sacreBLEU count them: Python's
    universal newlines and str.splitlines() also split at a lone "\\r", U+0085 or U+2028 inside a
    sentence, which misaligns parallel files. A line that is not UTF-8 is an error naming it, or, with
    `bad` skipping, counted and yielded as None (so that parallel files stay in step)."""
    try:
        with (gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")) as handle:
            for number, raw in enumerate(handle, 1):
                try:
                    yield number, raw.decode("utf-8").removesuffix("\n").removesuffix("\r")
                except UnicodeDecodeError as err:
                    reason = f"not UTF-8 text (it holds the byte 0x{err.object[err.start]:02x})"
                    if bad is None:
                        raise DataError(f"{path}:{number}: {reason}") from None
                    bad.found(f"{path}:{number}", reason)
                    yield number, None
    except (OSError, EOFError) as err:  # gzip.BadGzipFile is an OSError
        raise DataError(f"{path}: cannot be read: {err}") from None


def read_lines(path: Path) -> Iterator[str]:
    """A UTF-8 text file's lines, split as _numbered_lines does; bytes that are not UTF-8 are an error."""
    for _, line in _numbered_lines(path, None):
        yield line


def _jsonl_pairs(path: Path, src: str, tgt: str, bad: BadLines) -> Iterator[Pair]:
    for number, line in _numbered_lines(path, bad):
        if line is None or not line.strip():
            continue
        try:
            item = json.loads(line)["translation"]
            pair = (item[src] or "", item[tgt] or "")
        except (json.JSONDecodeError, KeyError, TypeError):
            bad.found(f"{path}:{number}", f"expected {{\"translation\": {{\"{src}\": ..., \"{tgt}\": ...}}}}")
            continue
        if isinstance(pair[0], str) and isinstance(pair[1], str):
            yield pair
        else:
            bad.found(f"{path}:{number}", f"the {src!r} and {tgt!r} translations must be strings")


def _tsv_pairs(path: Path, bad: BadLines) -> Iterator[Pair]:
    for number, line in _numbered_lines(path, bad):
        if line is None:
            continue
        fields = line.split("\t")
        if len(fields) != 2:
            bad.found(f"{path}:{number}", f"expected source<TAB>target, got {len(fields)} field(s)")
            continue
        yield fields[0], fields[1]


def _parallel_pairs(src_path: Path, tgt_path: Path, bad: BadLines) -> Iterator[Pair]:
    """Line n of one file with line n of the other. Files of different lengths are always an error:
    a missing line shifts every pair after it, which no skipping can mend."""
    sources, targets = _numbered_lines(src_path, bad), _numbered_lines(tgt_path, bad)
    count = 0
    while True:
        src, tgt = next(sources, None), next(targets, None)
        if src is None or tgt is None:
            break
        count += 1
        if src[1] is not None and tgt[1] is not None:
            yield src[1], tgt[1]
    if src is not None or tgt is not None:
        (longer, rest), shorter = ((src_path, sources), tgt_path) if src is not None else ((tgt_path, targets),
                                                                                           src_path)
        total = count + 1 + sum(1 for _ in rest)
        raise DataError(f"{shorter} has {count} lines but {longer} has {total}: not aligned "
                        f"(line {count + 1} of {longer} has no partner)")


def clean_pair(src: str, tgt: str, cfg: DataConfig) -> Pair | None:
    """Both sides normalised, or None for an empty, over-long or badly length-mismatched pair."""
    src, tgt = normalise(src), normalise(tgt)
    if not src or not tgt:
        return None
    if max(src.count(" "), tgt.count(" ")) + 1 > cfg.max_words:
        return None
    if max(len(src), len(tgt)) > cfg.max_length_ratio * min(len(src), len(tgt)):
        return None
    return src, tgt


def write_split(pairs: list[Pair], src_path: Path, tgt_path: Path) -> None:
    src_path.write_text("".join(s + "\n" for s, _ in pairs), encoding="utf-8")
    tgt_path.write_text("".join(t + "\n" for _, t in pairs), encoding="utf-8")


def read_split(src_path: Path, tgt_path: Path) -> list[Pair]:
    """A held-out split written by write_split (small: it is read whole)."""
    return list(_parallel_pairs(src_path, tgt_path, BadLines()))


def held_out_files(run: RunPaths, split: str, data: DataConfig | None = None,
                   corpus: str | None = None) -> tuple[Path, Path]:
    """Where a run folder holds its held-out `split` ("valid" or "test"): source and reference files,
    named by the run's languages (`data`, or the run's config.yaml); one `corpus`'s of a run that reads
    several (data.corpora), or the whole run's."""
    data = data or load_config(run.config).data
    if corpus is None:
        return run.split_files(split, data.src_lang, data.tgt_lang)
    names = [c.name for c in data.mixture()] if data.mixed else []
    if corpus not in names:
        raise UserError(f"{run.root} has no corpus {corpus!r}" + (f" (its corpora: {', '.join(names)})" if names
                                                                  else ": it reads one corpus"))
    return run.corpus_split_files(corpus, split, data.src_lang, data.tgt_lang)


def read_held_out(run: RunPaths, split: str, data: DataConfig | None = None, corpus: str | None = None) -> list[Pair]:
    """A run's held-out `split` as its preparation wrote it (one `corpus`'s, or the whole run's); empty
    where the run folder has none (an export's run folder copied without its data)."""
    src, ref = held_out_files(run, split, data, corpus)
    return read_split(src, ref) if src.is_file() and ref.is_file() else []
