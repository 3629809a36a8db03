"""int8 weight-only quantization for CPUs (`--quantize int8`), and the CPU's bf16 ability.

A decode step reads every weight matrix once, so on a CPU its speed is the memory bandwidth
divided by the bytes of the matrices. int8 weights are a quarter of float32's bytes. Each
output channel (row) keeps its own scale: w ~ int8 * scale, scale = max|row| / 127.

The product is torch's own `_weight_int8pack_mm` (chosen by measurement over dequantizing to
bfloat16 and over torchao, which adds a dependency for the same kernel on CPU: see
docs/benchmarks.md). It wants bfloat16 activations (with float32 ones it is many times slower),
so a quantized model computes in bfloat16. What is quantized: the matrices every token reads
(q/k/v, attention output, MLP, lm_head). Embedding tables (one row read per token), gates and
scalars stay as they are. The quality cost is measured per fixture generation in
docs/benchmarks.md (`scripts/drift.py`). Never on by default.
"""

from __future__ import annotations

import platform
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from .errors import NanochatError

QUANTIZE_CHOICES = ("int8",)
K_MULTIPLE = 16  # the kernel reads rows in blocks of 16: shorter rows are zero-padded


class QuantizeError(NanochatError):
    """--quantize cannot be used as asked (one line)."""


def cpu_has_native_bf16() -> bool:
    """True when this CPU multiplies bfloat16 natively (x86 AVX512-BF16 or AMX, Arm BF16), where
    bf16 matrix products beat float32; elsewhere bf16 is emulated and slower."""
    cpu = getattr(torch, "cpu", None)
    for probe in ("_is_avx512_bf16_supported", "_is_amx_tile_supported"):
        check = getattr(cpu, probe, None)
        try:
            if check is not None and check():
                return True
        except RuntimeError:
            pass
    if platform.machine().lower() in ("aarch64", "arm64"):
        try:  # Linux on Arm lists the BF16 extension among the CPU features
            return " bf16" in Path("/proc/cpuinfo").read_text().lower()
        except OSError:
            return False
    return False


def check_quantize(quantize: str | None, device: torch.device) -> None:
    if quantize is None:
        return
    if quantize not in QUANTIZE_CHOICES:
        raise QuantizeError(f"unknown --quantize {quantize!r}: choose int8")
    if device.type != "cpu":
        raise QuantizeError(f"--quantize int8 runs on CPU only (torch's int8 kernel); on {device.type} "
                            "use --dtype bfloat16 instead")
    if not hasattr(torch, "_weight_int8pack_mm"):
        raise QuantizeError(f"--quantize int8 needs torch's int8 kernel, missing from torch {torch.__version__}")


class Int8Linear(nn.Module):
    """y = x @ (q * scale).T with q int8 (N, K) and one scale per output row."""

    def __init__(self, qweight: torch.Tensor, scales: torch.Tensor, in_features: int):
        super().__init__()
        self.register_buffer("qweight", qweight)
        self.register_buffer("scales", scales)
        self.in_features, self.out_features = in_features, qweight.shape[0]
        self.pad = qweight.shape[1] - in_features

    @classmethod
    def from_float(cls, weight: torch.Tensor, dtype: torch.dtype) -> "Int8Linear":
        w = weight.detach().float()
        scales = w.abs().amax(dim=1).clamp(min=1e-12) / 127.0
        q = torch.round(w / scales[:, None]).clamp(-127, 127).to(torch.int8)
        pad = -w.shape[1] % K_MULTIPLE
        if pad:
            q = F.pad(q, (0, pad))
        return cls(q.contiguous(), scales.to(dtype), w.shape[1])

    def dequantized(self) -> torch.Tensor:
        """The float matrix this layer multiplies by (for measurements and tests)."""
        return self.qweight[:, : self.in_features].float() * self.scales.float()[:, None]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        x = x.reshape(-1, shape[-1])
        if self.pad:
            x = F.pad(x, (0, self.pad))
        y = torch._weight_int8pack_mm(x.contiguous(), self.qweight, self.scales)
        return y.view(*shape[:-1], self.out_features)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, int8 per-channel"


class PackedBF16Linear(nn.Module):
    """A bf16 matrix in oneDNN's blocked layout, packed once at load. On CPU, torch's plain
    bf16 `F.linear` repacks the weight on every call and is no faster than float32; packed,
    one d20 layer's matrices take 2.85 ms instead of 7.8 (2 threads, AVX512-BF16,
    docs/benchmarks.md). Same results as F.linear."""

    def __init__(self, weight: torch.Tensor):
        super().__init__()
        self.in_features, self.out_features = weight.shape[1], weight.shape[0]
        self.packed = torch.ops.mkldnn._reorder_linear_weight(weight.detach(), None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.ops.mkldnn._linear_pointwise(x, self.packed, None, "none", [], "")


def can_pack_bf16() -> bool:
    """oneDNN's packed linear exists in this torch build (CPU, mkldnn)."""
    ops = getattr(torch.ops, "mkldnn", None)
    try:
        return (torch.backends.mkldnn.is_available() and hasattr(ops, "_reorder_linear_weight")
                and hasattr(ops, "_linear_pointwise"))
    except (AttributeError, RuntimeError):
        return False


def pack_bf16(model) -> None:
    """Replace the per-token bf16 matrices with PackedBF16Linear, in place, releasing the
    unpacked ones (the model must be bf16 on CPU, q/k/v fused)."""
    for block in model.transformer.h:
        attn, mlp = block.attn, block.mlp
        if attn.qkv is None:
            attn.fuse_qkv()
        attn.qkv = PackedBF16Linear(attn.qkv.weight)
        attn.c_q = attn.c_k = attn.c_v = None
        attn.c_proj = PackedBF16Linear(attn.c_proj.weight)
        mlp.c_fc = PackedBF16Linear(mlp.c_fc.weight)
        mlp.c_proj = PackedBF16Linear(mlp.c_proj.weight)
    model.lm_head = PackedBF16Linear(model.lm_head.weight)
    model.packed = "onednn-bf16"


def quantize_int8(model) -> None:
    """Replace the model's per-token matrices with Int8Linear, in place, releasing the float
    ones. The model must already be in its compute dtype (bfloat16) with q/k/v fused
    (GPT.prepare_inference)."""
    dtype = model.compute_dtype
    for block in model.transformer.h:
        attn, mlp = block.attn, block.mlp
        if attn.qkv is None:
            attn.fuse_qkv()
        attn.qkv = Int8Linear.from_float(attn.qkv.weight, dtype)
        attn.c_q = attn.c_k = attn.c_v = None  # the float views of the fused matrix go
        attn.c_proj = Int8Linear.from_float(attn.c_proj.weight, dtype)
        mlp.c_fc = Int8Linear.from_float(mlp.c_fc.weight, dtype)
        mlp.c_proj = Int8Linear.from_float(mlp.c_proj.weight, dtype)
    model.lm_head = Int8Linear.from_float(model.lm_head.weight, dtype)
    model.quantized = "int8"
