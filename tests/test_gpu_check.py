"""The GPU check (scripts/gpu_check.sh) runs end to end on CPU with small sizes, so it stays
runnable for whoever has a GPU; no CUDA is needed here."""

from __future__ import annotations

import json

from nanochat_tui.gpu_check import main


def test_gpu_check_smoke_run_on_cpu(tmp_path):
    out = tmp_path / "gpu_check.json"
    code = main(["--device", "cpu", "--out", str(out), "--shape", "d2:128:512", "--prompt-tokens", "32",
                 "--decode-tokens", "8", "--streams", "2", "--stream-tokens", "8",
                 "--fixtures", "gen5-smear-backout", "gen1-original"])
    report = json.loads(out.read_text())
    assert code == 0 and report["correct"] is True
    assert [(r["generation"], r["dtype"]) for r in report["fixtures"]] == [
        ("gen1-original", "float32"), ("gen1-original", "bfloat16"),
        ("gen5-smear-backout", "float32"), ("gen5-smear-backout", "bfloat16")] or \
        all(r["dtype"] in ("float32", "bfloat16") for r in report["fixtures"])
    assert all(r["ok"] for r in report["fixtures"])
    assert all(r["graph_equals_eager"] for r in report["fixtures"] if r["dtype"] == "float32")
    assert report["random_graph"][0]["graph_equals_eager"]
    assert report["batch1"]["prompt_tokens"] == 32 and report["serve"]["streams"] == 2
    assert set(report["target_results"]) == {"decode_tok_s", "ttft_ms", "serve_aggregate_tok_s"}


def test_gpu_check_says_when_there_is_no_cuda(capsys):
    import torch

    if torch.cuda.is_available():
        return
    assert main(["--out", "/dev/null"]) == 2
    assert "no CUDA device here" in capsys.readouterr().err
