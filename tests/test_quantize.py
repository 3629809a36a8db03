"""--quantize int8 and -d bfloat16 on CPU: the kernel's math, the loader's choices and words,
and the quality cost against float32 (nanochat_core/quantize.py, drift.py)."""

from __future__ import annotations

import pytest
import torch

from conftest import FIXTURES
from nanochat_core import api, load_chat_model
from nanochat_core.api import resolve_compute
from nanochat_core.drift import greedy_continuation, measure_drift
from nanochat_core.quantize import Int8Linear, QuantizeError, check_quantize

GEN5 = FIXTURES / "gen5-smear-backout" / "base_dir"


@pytest.mark.parametrize("k", [40, 64, 12])  # 40 and 12 are padded to the kernel's 16-wide rows
def test_int8_linear_is_the_dequantized_product(k):
    g = torch.Generator().manual_seed(0)
    w = torch.randn(24, k, generator=g)
    layer = Int8Linear.from_float(w, torch.bfloat16)
    assert layer.qweight.dtype == torch.int8 and layer.qweight.shape[1] % 16 == 0
    # half a step of 1/127 of the row's largest weight, plus the bf16 rounding of the scale
    assert ((layer.dequantized() - w).abs().amax(1) <= 0.01 * w.abs().amax(1)).all()
    x = torch.randn(2, 3, k, generator=g).bfloat16()
    want = x.float() @ layer.dequantized().t()
    got = layer(x)
    assert got.shape == (2, 3, 24) and got.dtype == torch.bfloat16
    assert (got.float() - want).abs().max() <= 0.02 * want.abs().max()


@pytest.fixture(scope="module")
def int8_gen5():
    return load_chat_model(base_dir=GEN5, device="cpu", quantize="int8")


def test_int8_model_says_so_and_holds_int8_matrices(int8_gen5):
    m = int8_gen5
    assert m.info.quantize == "int8" and m.info.dtype == "bfloat16, int8 weights"
    assert m.info.describe().endswith("on cpu (bfloat16, int8 weights)")  # /stats, header, web console
    block = m.model.transformer.h[0]
    assert isinstance(block.attn.qkv, Int8Linear) and isinstance(m.model.lm_head, Int8Linear)
    assert block.attn.c_q is None  # the float copy is released, not kept beside the int8 one
    assert m.info.params == load_chat_model(base_dir=GEN5, device="cpu").info.params


def test_int8_cached_decode_equals_its_own_full_recompute(int8_gen5):
    """The KV-cache engine and a full forward use the same int8 kernel: same greedy tokens."""
    m = int8_gen5
    ids = m.render([{"role": "user", "content": "Tell me about caches."}])
    seq, want = list(ids), []
    for _ in range(12):
        want.append(int(m.logits(seq)[-1].argmax()))
        seq.append(want[-1])
    assert greedy_continuation(m.model, ids, 12) == want


def test_int8_and_bf16_quality_on_the_demo_model():
    """The trained demo model: both keep float32's greedy answer for 64 tokens (the issue's
    target is >= 95% of tokens before the first divergence; docs/benchmarks.md has every
    fixture generation's numbers)."""
    fp32 = load_chat_model(device="cpu")
    ids = fp32.render([{"role": "user", "content": "What is a KV cache for?"}])
    q = measure_drift(fp32.model, load_chat_model(device="cpu", quantize="int8").model, ids, 64)
    assert q["greedy_fraction"] >= 0.95 and q["max_abs_dlogit"] < 1.0, q


def test_quantize_words():
    with pytest.raises(QuantizeError, match="runs on CPU only"):
        check_quantize("int8", torch.device("cuda"))
    with pytest.raises(QuantizeError, match="unknown --quantize 'int4': choose int8"):
        check_quantize("int4", torch.device("cpu"))
    with pytest.raises(QuantizeError, match="leave out --dtype float32"):
        resolve_compute("cpu", "float32", "int8")


def test_bf16_on_cpu_only_where_the_cpu_has_it(monkeypatch):
    monkeypatch.setattr(api, "cpu_has_native_bf16", lambda: False)
    c = resolve_compute("cpu", "bfloat16")
    assert c.dtype == torch.float32 and "no native bfloat16" in c.notices[0] and "float32" in c.notices[0]
    m = load_chat_model(base_dir=GEN5, device="cpu", dtype="bfloat16")
    assert m.info.dtype == "float32" and any("no native bfloat16" in n for n in m.notices)
    monkeypatch.setattr(api, "cpu_has_native_bf16", lambda: True)
    c = resolve_compute("cpu", "bfloat16")
    assert c.dtype == torch.bfloat16 and c.notices == []
    assert resolve_compute("cpu", None).dtype == torch.float32  # never bf16 unless asked on CPU


def test_bf16_on_cpu_packs_the_matrices_once_with_the_same_results(monkeypatch):
    """-d bfloat16 on a CPU with native bf16 multiplies by weights packed once for oneDNN (torch's
    plain bf16 F.linear repacks them every call and is no faster than float32 there)."""
    from nanochat_core.quantize import PackedBF16Linear, can_pack_bf16

    if not can_pack_bf16():
        pytest.skip("this torch has no oneDNN packed linear")
    monkeypatch.setattr(api, "cpu_has_native_bf16", lambda: True)
    m = load_chat_model(base_dir=GEN5, device="cpu", dtype="bfloat16")
    assert isinstance(m.model.transformer.h[0].mlp.c_fc, PackedBF16Linear)
    assert isinstance(m.model.lm_head, PackedBF16Linear)
    g = torch.Generator().manual_seed(0)
    w = torch.randn(24, 40, generator=g).bfloat16()
    x = torch.randn(2, 5, 40, generator=g).bfloat16()
    assert torch.equal(PackedBF16Linear(w)(x), torch.nn.functional.linear(x, w))
    ids = m.render([{"role": "user", "content": "Tell me about caches."}])
    seq, want = list(ids), []
    for _ in range(8):
        want.append(int(m.logits(seq)[-1].argmax()))
        seq.append(want[-1])
    assert greedy_continuation(m.model, ids, 8) == want
