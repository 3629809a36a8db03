"""`bench`: bandwidth against a copy test, KV cache and peak memory, int8, and nanochat's Engine
side by side (run when a nanochat checkout is given; otherwise the JSON says why there are no
ratios)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from nanochat_tui.cli import main

SHAPE = ["--random", "d2:128:512", "--prompt-tokens", "16", "--decode-tokens", "4"]


def bench(capsys, *argv: str) -> tuple[int, dict | None, str]:
    code = main(["bench", *argv])
    out = capsys.readouterr()
    lines = out.out.strip().splitlines()
    return code, (json.loads(lines[-1]) if code == 0 else None), out.out + out.err


def nanochat_checkout() -> Path | None:
    path = os.environ.get("NANOCHAT_SRC")
    return Path(path) if path and (Path(path) / "nanochat" / "engine.py").is_file() else None


def test_bench_reports_bandwidth_memory_and_no_ratios_without_nanochat(capsys, monkeypatch):
    monkeypatch.delenv("NANOCHAT_SRC", raising=False)
    code, r, text = bench(capsys, *SHAPE)
    assert code == 0, text
    assert r["memory_bandwidth_bytes_per_s"] > 0
    assert r["bandwidth_fraction"] == pytest.approx(r["decode_bytes_per_s"] / r["memory_bandwidth_bytes_per_s"], abs=1e-4)
    assert r["decode_bytes_per_s"] == pytest.approx(r["weight_bytes"] / (r["step_ms"] / 1000), rel=0.01)
    assert r["kv_cache_bytes"] > 0 and r["peak_memory_mb"] > 0 and r["quantize"] is None
    assert r["nanochat"] == {"run": False, "note": "nanochat's Engine not run: no checkout given "
                                                   "(--nanochat PATH or $NANOCHAT_SRC), so no ratios"}
    assert "no ratios" in text and "of this machine's" in text


def test_bench_int8_reads_a_quarter_of_the_bytes(capsys, monkeypatch):
    monkeypatch.delenv("NANOCHAT_SRC", raising=False)
    _, fp32, _ = bench(capsys, *SHAPE)
    code, q, text = bench(capsys, *SHAPE, "--quantize", "int8")
    assert code == 0, text
    assert q["quantize"] == "int8" and q["dtype"] == "bfloat16" and q["params"] == fp32["params"]
    assert 0.25 < q["weight_bytes"] / fp32["weight_bytes"] < 0.3  # int8 + one bf16 scale per row


def test_bench_nanochat_flag_mistakes_are_one_line(capsys, tmp_path):
    code, _, text = bench(capsys, "--nanochat", str(tmp_path), "--prompt-tokens", "8")
    assert code == 2 and "--nanochat compares both engines on random weights: add --random" in text
    code, _, text = bench(capsys, *SHAPE, "--nanochat", str(tmp_path))
    assert code == 2 and f"{tmp_path} is not a nanochat checkout" in text and "Traceback" not in text


@pytest.mark.skipif(nanochat_checkout() is None, reason="no nanochat checkout in $NANOCHAT_SRC")
def test_bench_side_by_side_with_nanochats_engine(capsys):
    code, r, text = bench(capsys, *SHAPE, "--nanochat", str(nanochat_checkout()))
    assert code == 0, text
    side = r["nanochat"]
    assert side["run"] and side["repeats"] == 3
    assert side["same_tokens_before_divergence"] == side["tokens"] == 5  # the same model, float32
    assert side["decode_ratio"] > 0 and side["ttft_ratio"] > 0
    assert len(side["nanochat"]["runs_ttft_ms"]) == len(side["ours"]["runs_ttft_ms"]) == 3
