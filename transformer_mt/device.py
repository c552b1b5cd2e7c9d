"""Device, precision and kernel choices shared by training and decoding."""
from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

import torch
from torch.nn.attention import SDPBackend, sdpa_kernel

from .errors import UserError

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def pick_device(name: str, setting: str = "train.device") -> torch.device:
    """`setting` names where `name` came from, for the error message."""
    if name == "cuda" and not torch.cuda.is_available():
        raise UserError(f"{setting} is cuda but no CUDA GPU is visible: use auto or cpu")
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and "LOCAL_RANK" in os.environ:
        return torch.device("cuda", int(os.environ["LOCAL_RANK"]))
    return torch.device(name)


def cpu_supports_bf16() -> bool:
    """bf16 matmuls are fast on CPUs with AVX512-BF16 or AMX; elsewhere they are emulated and slow."""
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(getattr(torch.cpu, name, lambda: False)() for name in checks)


def slow_precision_warning(precision: str, device: torch.device) -> str | None:
    """A warning when `precision` is emulated on this CPU: it runs, but tens of times slower than fp32."""
    native = {"fp32": True, "bf16": cpu_supports_bf16(),
              "fp16": getattr(torch.cpu, "_is_amx_fp16_supported", lambda: False)()}
    if device.type != "cpu" or native[precision]:
        return None
    return f"{precision} on this CPU is emulated (no native {precision} matmuls) and far slower than fp32: use fp32"


def pick_precision(name: str, device: torch.device) -> str:
    if name == "auto":
        if device.type == "cuda":
            return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
        return "bf16" if cpu_supports_bf16() else "fp32"
    if name == "fp16" and device.type != "cuda":
        raise UserError("train.precision fp16 needs CUDA (it relies on a gradient scaler): use bf16 or fp32 on CPU")
    return name


def row_multiple(setting: int | None, device: torch.device, precision: str) -> int:
    """train.row_multiple, `None` resolved: on CPU in bf16 the encoder's rows are rounded up to 32
    (oneDNN builds its bf16 kernels per shape, and the encoder's row count changes almost every
    batch), costing ~1% more encoder rows; elsewhere they are not (docs/performance.md)."""
    if setting is not None:
        return setting
    return 32 if device.type == "cpu" and precision == "bf16" else 1


def set_fp32_matmuls(device: torch.device, tf32: bool) -> None:
    """On CUDA, fp32 matmuls and convolutions on TF32 tensor cores (PyTorch's default is full fp32,
    several times slower on Ampere and later) unless `tf32` is off."""
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = tf32
        torch.backends.cudnn.allow_tf32 = tf32


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=DTYPES[precision])


@contextlib.contextmanager
def attention_kernels(device: torch.device) -> Iterator[None]:
    """Where CPU attention calls SDPA (bf16 training and translation; fp32 spells the maths out, see
    `model.attend`) the plain (math) kernel beats the flash kernel on short sentences, backward
    especially (docs/performance.md); on CUDA let PyTorch pick."""
    if device.type == "cpu":
        with sdpa_kernel([SDPBackend.MATH]):
            yield
    else:
        yield
