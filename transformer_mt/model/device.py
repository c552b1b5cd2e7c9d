"""Device, precision and kernel choices shared by training and decoding."""
from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

import torch
from torch.nn.attention import SDPBackend, sdpa_kernel

from ..errors import UserError

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


SDPA_KERNELS = {"flash": SDPBackend.FLASH_ATTENTION, "efficient": SDPBackend.EFFICIENT_ATTENTION,
                "cudnn": SDPBackend.CUDNN_ATTENTION, "math": SDPBackend.MATH}
# The profiler's name of each kernel's forward op, by the names train.sdpa_backends takes.
_SDPA_OPS = (("cudnn", "_scaled_dot_product_cudnn_attention"), ("flash", "_scaled_dot_product_flash_attention"),
             ("efficient", "_scaled_dot_product_efficient_attention"), ("math", "_scaled_dot_product_attention_math"))


@contextlib.contextmanager
def attention_kernels(device: torch.device, backends: list[str] | None = None) -> Iterator[None]:
    """Where CPU attention calls SDPA (bf16 training and translation; fp32 spells the maths out, see
    `model.attend`) the plain (math) kernel beats the flash kernel on short sentences, backward
    especially (docs/performance.md). On CUDA, the kernels `backends` names (train.sdpa_backends),
    or PyTorch's own dispatch when it names none."""
    if device.type == "cpu":
        with sdpa_kernel([SDPBackend.MATH]):
            yield
    elif backends:
        with sdpa_kernel([SDPA_KERNELS[name] for name in backends]):
            yield
    else:
        yield


def attention_kernels_chosen(device: torch.device, dtype: torch.dtype, heads: int, head_dim: int, batch: int,
                             src_len: int, tgt_len: int, backends: list[str] | None = None) -> dict[str, str]:
    """The SDPA kernel PyTorch runs for each kind of attention call of a training batch of this shape
    (queries that need gradients, the model's masks), read from the profiler's op names: where
    cuDNN's kernel, which builds an execution graph per shape, comes first in the dispatch, a run's
    speed with length-bucketed batches depends on it (docs/gpu-check.md)."""
    calls = {"encoder_self": (src_len, src_len, True, False), "decoder_self": (tgt_len, tgt_len, False, True),
             "cross": (tgt_len, src_len, True, False)}
    chosen = {}
    for name, (queries, keys, masked, causal) in calls.items():
        q = torch.randn(batch, heads, queries, head_dim, device=device, dtype=dtype, requires_grad=True)
        k, v = (torch.randn(batch, heads, keys, head_dim, device=device, dtype=dtype) for _ in range(2))
        mask = torch.ones(batch, 1, 1, keys, dtype=torch.bool, device=device) if masked else None
        if mask is not None:
            mask[0, ..., keys // 2:] = False  # a padded sentence, as bucketed batches have
        with attention_kernels(device, backends), torch.profiler.profile() as profile:
            torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=causal)
        ops = " ".join(event.name for event in profile.events())
        chosen[name] = next((kernel for kernel, op in _SDPA_OPS if op in ops), "other")
    return chosen
