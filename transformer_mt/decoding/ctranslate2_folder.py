"""What a CTranslate2 export folder holds (export/ctranslate2.py writes it) and how it is read back.

Plain Python and CTranslate2, no PyTorch: translating with or serving an export never loads PyTorch.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from ..config import DecodeConfig
from ..errors import UserError

FORMAT = 1
META = "transformer_mt.json"
SRC_TOKENIZER, TGT_TOKENIZER = "tokenizer-src.json", "tokenizer-tgt.json"
QUANTIZATIONS = ("float32", "int8", "int8_float32", "int16", "float16", "bfloat16")


def require_ctranslate2():
    try:
        import ctranslate2
    except ImportError:
        raise UserError("this needs CTranslate2: pip install -e '.[deploy]' (or pip install ctranslate2)") from None
    return ctranslate2


@dataclass
class ExportMeta:
    decode: dict
    max_positions: int
    joint_vocab: bool
    checkpoint: str
    step: int
    quantization: str
    format: int = FORMAT
    exporter: str = "transformer-mt"

    @property
    def decode_config(self) -> DecodeConfig:
        return DecodeConfig(**self.decode)


def read_meta(folder: Path) -> ExportMeta:
    """An export folder's description, checked: one line for anything that is not a whole export of ours."""
    if not folder.is_dir():
        raise UserError(f"export folder not found: {folder}")
    path = folder / META
    if not path.is_file():
        other = " (a CTranslate2 model from another tool?)" if (folder / "model.bin").is_file() else ""
        raise UserError(f"{folder} is not a transformer-mt export: it has no {META}{other}")
    try:
        raw = json.loads(path.read_text())
        fmt = raw.get("format") if isinstance(raw, dict) else None
        if isinstance(fmt, int) and fmt > FORMAT:
            raise UserError(f"{folder} was exported in format {fmt}, newer than this transformer-mt reads "
                            f"({FORMAT}): upgrade transformer-mt")
        meta = ExportMeta(**raw)
    except (ValueError, TypeError):
        raise UserError(f"{path} is damaged: export the run again") from None
    for name in ("model.bin", SRC_TOKENIZER, TGT_TOKENIZER):
        if not (folder / name).is_file():
            raise UserError(f"{folder} is incomplete: {name} is missing (export the run again)")
    return meta
