"""`nanochat-tui export --format hf`: the export round-trips through Hugging Face transformers.

The gen1 fixture is exported, loaded back with transformers' AutoModelForCausalLM /
AutoTokenizer, and compared with nanochat-tui's own model and nanochat's reference logits:

- Logits: same argmax at every prompt position; the values differ from nanochat's by about 1e-2
  (measured 0.0140 on this fixture, as nanochat-format.md §11 says), and that difference comes
  only from nanochat's bf16-rounded rotary tables: against our model with exact float32 tables
  the two agree to float rounding (measured: 0.0). transformers' greedy generate (its own KV
  cache) reproduces nanochat's 32 canonical tokens.
- The tokenizer encodes text to our ids; the chat template renders the fixture conversation
  (tool-call parts included) to nanochat's prompt ids.
- Every other generation is refused with one line naming what transformers lacks, leaving no
  OUTDIR and no temporary directory behind.

Needs the test extra's transformers (and with it safetensors and tokenizers).
"""

from __future__ import annotations

import json
import os
import struct
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from conftest import GENERATIONS, expected, fixture_dir, fixture_softcap

if os.environ.get("CI"):  # the test extra installs transformers: CI must run these
    import tokenizers
    import transformers
else:
    transformers = pytest.importorskip("transformers")
    tokenizers = pytest.importorskip("tokenizers")

from nanochat_core.export_hf import ExportError, export_hf, tokenizer_json  # noqa: E402
from nanochat_tui.export_cli import main as export_main  # noqa: E402

GEN1 = "gen1-original"
MIXED_TEXT = ("Hello world!  It's 2024-12-31, 12345 apples; I'M sure we'll see.\n\n\tTabs & ünïcödé "
              "日本語 🙂 emoji 👍🏽 x'll   \r\n code: def f(x): return x**2  # comment\n   end   ")


def reference(gen: str) -> dict:
    return torch.load(fixture_dir(gen) / "reference.pt", weights_only=True)


@pytest.fixture(scope="module")
def exported(tmp_path_factory, load_fixture):
    """The gen1 fixture exported once (float32), with its transformers model and tokenizer."""
    out = tmp_path_factory.mktemp("hf") / "nanochat-gen1-hf"
    lines = []
    result = export_hf(load_fixture(GEN1), out, progress=lines.append)
    assert result.outdir == out and lines[-1] == f"Exported to {out}"
    model = transformers.AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32).eval()
    tok = transformers.AutoTokenizer.from_pretrained(out)
    return out, model, tok


def hf_logits(model, ids) -> torch.Tensor:
    with torch.inference_mode():
        return model(torch.tensor([list(ids)])).logits[0].float()


def test_files_and_config(exported):
    out, model, _ = exported
    assert sorted(p.name for p in out.iterdir()) == sorted([
        ".nanochat-tui-export", "README.md", "chat_template.jinja", "config.json", "generation_config.json",
        "model.safetensors", "special_tokens_map.json", "tokenizer.json", "tokenizer_config.json"])
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["architectures"] == ["NanoChatForCausalLM"] and cfg["model_type"] == "nanochat"
    assert cfg["rms_norm_eps"] == 2.0**-23 == torch.finfo(torch.float32).eps
    assert cfg["final_logit_softcapping"] == 15.0 and cfg["hidden_act"] == "relu2"
    assert cfg["rope_parameters"]["rope_theta"] == 10000.0 and cfg["tie_word_embeddings"] is False
    assert (cfg["vocab_size"], cfg["hidden_size"], cfg["intermediate_size"]) == (560, 40, 160)
    assert (cfg["num_hidden_layers"], cfg["num_attention_heads"], cfg["num_key_value_heads"]) == (4, 4, 4)
    assert cfg["eos_token_id"] == [555, 551] and cfg["bos_token_id"] == 551  # <|assistant_end|>, <|bos|>
    assert type(model).__name__ == "NanoChatForCausalLM"
    assert model.config.final_logit_softcapping == 15.0 and model.config.rms_norm_eps == 2.0**-23
    card = (out / "README.md").read_text()
    assert "Rotary precision" in card and "bfloat16" in card and "gen1-original" in card
    assert (out / "chat_template.jinja").read_text() == json.loads((out / "tokenizer_config.json").read_text())["chat_template"]


def test_logits_match_nanochat(exported, load_fixture):
    _, model, _ = exported
    m, ref = load_fixture(GEN1), reference(GEN1)
    ids = ref["prompt_ids"].tolist()
    theirs, ours = hf_logits(model, ids), m.logits(ids)
    assert theirs.shape == ours.shape == ref["logits"].shape
    # Same choice at every position; values ~1e-2 apart from nanochat's bf16 rotary tables.
    assert torch.equal(theirs.argmax(-1), ref["logits"].argmax(-1))
    assert torch.equal(theirs.argmax(-1), ours.argmax(-1))
    diff_ref = (theirs - ref["logits"]).abs().max().item()
    diff_ours = (theirs - ours).abs().max().item()
    assert 1e-3 < diff_ref < 0.03 and 1e-3 < diff_ours < 0.03  # measured: 0.0140 both
    # ... and ONLY from those tables: with exact float32 tables our math is transformers' math.
    arch = m.model.arch
    try:
        m.model.arch = replace(arch, bf16_rotary=False)
        m.model.refresh_rotary(torch.float32)
        exact = m.logits(ids)
    finally:
        m.model.arch = arch
        m.model.refresh_rotary(torch.float32)
    assert (theirs - exact).abs().max().item() < 1e-5  # measured: 0.0


def test_transformers_generate_gives_the_canonical_tokens(exported):
    _, model, _ = exported
    ref = reference(GEN1)
    out = model.generate(ref["prompt_ids"][None], max_new_tokens=32, do_sample=False)
    assert out[0, len(ref["prompt_ids"]):].tolist() == ref["canonical_ids"].tolist()


def test_tokenizer_encodes_like_ours(exported, load_fixture):
    _, _, tok = exported
    ours = load_fixture(GEN1).tokenizer
    assert tok.encode(MIXED_TEXT) == ours.encode(MIXED_TEXT)  # no BOS added: the template adds it
    assert tok.decode(ours.encode(MIXED_TEXT)) == MIXED_TEXT
    # Special-token strings typed as text: HF parses them unless told to split them (documented).
    typed = "say <|assistant_end|> please"
    assert tok.encode(typed, split_special_tokens=True) == ours.encode(typed)
    assert ours.special("<|assistant_end|>") in tok.encode(typed)


def test_tokenizer_json_matches_tiktoken_on_a_larger_vocabulary():
    """The rank->merges conversion on an 8192-token BPE (more merge structure than the fixture)."""
    from nanochat_core.synthetic import synthetic_encoding

    enc = synthetic_encoding(8192, seed=3)
    tok = tokenizers.Tokenizer.from_str(json.dumps(tokenizer_json(enc)))
    text = MIXED_TEXT + Path(__file__).read_text(encoding="utf-8")[:6000].replace("<|", "<")  # no specials
    assert tok.encode(text, add_special_tokens=False).ids == enc.encode_ordinary(text)
    assert tok.token_to_id("<|bos|>") == enc._special_tokens["<|bos|>"] == 8183


def test_chat_template_renders_nanochat_format(exported, load_fixture):
    _, _, tok = exported
    m = load_fixture(GEN1)

    def render(messages, **kw):
        ids = tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=True, return_dict=False, **kw)
        return list(ids["input_ids"] if hasattr(ids, "keys") else ids)

    conversation = expected(GEN1)["conversation"]  # includes python / python_output parts
    assert render(conversation) == reference(GEN1)["prompt_ids"].tolist()
    text_only = [{"role": "system", "content": "You are terse."},
                 {"role": "user", "content": conversation[0]["content"]},
                 {"role": "assistant", "content": "Let me compute that. 12*7 = 84. The answer is 84."},
                 {"role": "user", "content": conversation[2]["content"]}]
    assert render(text_only) == m.render(text_only)
    assert tok.apply_chat_template(text_only[:2], add_generation_prompt=True, tokenize=False) == (
        "<|bos|><|user_start|>You are terse.\n\nWhat is 12 times 7? Please use the calculator."
        "<|user_end|><|assistant_start|>")
    # OpenAI-style content parts (what vLLM passes) render like strings.
    parts = [{"role": "user", "content": [{"type": "text", "text": conversation[0]["content"]}]}]
    assert render(parts) == m.render(conversation[:1])
    with pytest.raises(Exception, match="roles system, user and assistant"):
        render([{"role": "tool", "content": "x"}])


OTHER_GENERATIONS = [g for g in GENERATIONS if g != GEN1]
MISSING_WORDS = {
    "gen2-resid-x0-lambdas": ["resid/x0 lambdas"],
    "gen3-proto-lowrank-ve": ["lowrank value embeddings", "sliding-window attention"],
    "gen3-proto-single-ve": ["single value embeddings", "sliding-window attention"],
    "gen3-proto-perlayer-ve": ["perlayer value embeddings", "sliding-window attention"],
    "gen3-value-embeds": ["gated value embeddings", "sliding-window attention (windows 128, 128, 128, 256)"],
    "gen3-softcap20": ["gated value embeddings", "sliding-window attention"],
    "gen3-engram": ["engram bigram table", "gated value embeddings"],
    "gen4-rope100k-qkscale": ["q/k scale 1.15", "gate width 12"],
    "gen5-smear-backout": ["smear gate", "backout", "q/k scale 1.2"],
}


@pytest.mark.parametrize("gen", OTHER_GENERATIONS)
def test_other_generations_are_refused_cleanly(gen, tmp_path, capsys):
    out = tmp_path / "export"
    argv = ["--format", "hf", str(out), "--model-dir", str(fixture_dir(gen) / "base_dir")]
    if fixture_softcap(gen):
        argv += ["--softcap", str(fixture_softcap(gen))]
    assert export_main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("nanochat-tui: error: cannot export a gen")
    assert "transformers' NanoChatForCausalLM implements only nanochat's first generation" in err
    for word in MISSING_WORDS[gen]:
        assert word in err
    assert "rope" not in err.partition(" and lacks ")[2]  # rope_theta IS expressible in HF's config
    assert list(tmp_path.iterdir()) == []  # no OUTDIR, no temporary directory


def test_cli_export_verify_force_and_bfloat16(tmp_path, capsys):
    base = str(fixture_dir(GEN1) / "base_dir")
    out = tmp_path / "hf"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    assert export_main([str(out), "--model-dir", base]) == 2
    assert "exists and is not empty (use --force to replace a previous export)" in capsys.readouterr().err
    assert (out / "keep.txt").exists()
    # --force replaces only a previous export: a folder of the user's own files is refused.
    assert export_main([str(out), "--model-dir", base, "--force"]) == 2
    assert "is not a previous export (no .nanochat-tui-export marker)" in capsys.readouterr().err
    assert (out / "keep.txt").read_text() == "mine"
    (out / "keep.txt").unlink()

    assert export_main([str(out), "--model-dir", base]) == 0
    capsys.readouterr()
    assert export_main([str(out), "--model-dir", base, "--force", "--verify"]) == 0
    captured = capsys.readouterr()
    assert captured.out.strip() == str(out)
    assert "chat template ids identical; max logit difference 0.00e+00 vs nanochat-tui with float32 rotary tables" in captured.err
    assert (out / "model.safetensors").exists()
    assert "## Verification\ntransformers" in (out / "README.md").read_text()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["hf"]  # no leftovers beside it

    half = tmp_path / "hf-bf16"
    assert export_main([str(half), "--model-dir", base, "-d", "bfloat16"]) == 0
    raw = (half / "model.safetensors").read_bytes()
    header = json.loads(raw[8 : 8 + struct.unpack("<Q", raw[:8])[0]])
    assert {v["dtype"] for k, v in header.items() if k != "__metadata__"} == {"BF16"}
    model = transformers.AutoModelForCausalLM.from_pretrained(half)
    assert model.dtype == torch.bfloat16
    ids = reference(GEN1)["prompt_ids"].tolist()
    agree = (hf_logits(model, ids).argmax(-1) == reference(GEN1)["logits"].argmax(-1)).float().mean().item()
    assert agree > 0.9


def test_export_refusals_in_the_api(tmp_path, load_fixture):
    with pytest.raises(ExportError, match="unknown export dtype"):
        export_hf(load_fixture(GEN1), tmp_path / "x", dtype="float16")
    (tmp_path / "file").write_text("")
    with pytest.raises(ExportError, match="exists and is not a directory"):
        export_hf(load_fixture(GEN1), tmp_path / "file", force=True)
    assert export_main([str(tmp_path / "y"), "--model-dir", str(tmp_path / "nowhere")]) == 2
    assert not (tmp_path / "y").exists()


def test_the_nanochat_tui_command_runs_export(tmp_path):
    """`nanochat-tui export …` (the console script, not only export_cli.main) exports gen1 and
    refuses gen5 with one line; its --help imports no torch."""
    import subprocess
    import sys

    from conftest import cli_command, cli_env

    out = tmp_path / "gen1-hf"
    done = subprocess.run([*cli_command(), "export", "--format", "hf", str(out), "--model-dir",
                           str(fixture_dir(GEN1) / "base_dir")], capture_output=True, text=True,
                          env=cli_env(), timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == str(out) and (out / "model.safetensors").is_file()
    refused = subprocess.run([*cli_command(), "export", str(tmp_path / "no"), "--model-dir",
                              str(fixture_dir("gen5-smear-backout") / "base_dir")],
                             capture_output=True, text=True, env=cli_env(), timeout=120)
    assert refused.returncode == 2 and not (tmp_path / "no").exists()
    assert refused.stderr.strip().splitlines()[-1].startswith("nanochat-tui: error: cannot export a gen5")
    code = ("import sys\nfrom nanochat_tui.cli import main\n"
            "try:\n    main(['export', '--help'])\nexcept SystemExit:\n    pass\n"
            "print('torch' in sys.modules)")
    help_run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert help_run.stdout.strip().splitlines()[-1] == "False"
    assert "--format" in help_run.stdout


def test_force_never_deletes_what_an_export_did_not_write(tmp_path, load_fixture):
    """--force on a folder holding someone's work (a thesis in a subfolder) is refused and
    loses nothing; a previous export with a file added by hand is refused too; the export is
    an ordinary folder (umask permissions), not mkdtemp's 0700."""
    import os

    model = load_fixture(GEN1)
    work = tmp_path / "work"
    (work / "thesis").mkdir(parents=True)
    (work / "thesis" / "chapter1.tex").write_text("years of work")
    with pytest.raises(ExportError, match="is not a previous export"):
        export_hf(model, work, force=True)
    assert (work / "thesis" / "chapter1.tex").read_text() == "years of work"

    out = tmp_path / "export"
    export_hf(model, out)
    umask = os.umask(0)
    os.umask(umask)
    assert (out.stat().st_mode & 0o777) == (0o777 & ~umask)
    (out / "notes.txt").write_text("mine")
    with pytest.raises(ExportError, match=r"holds files the export did not write \(notes.txt\)"):
        export_hf(model, out, force=True)
    assert (out / "notes.txt").exists()
    (out / "notes.txt").unlink()
    export_hf(model, out, force=True)  # a previous export, as written: replaced
    assert (out / ".nanochat-tui-export").is_file()
