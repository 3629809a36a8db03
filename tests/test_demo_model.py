"""The bundled demo model (assets/demo): nanochat's on-disk format, loadable by the real loader,
and it really chats in its narrow world. Also: the data generator and BPE trainer that made it.

See docs/demo-model.md; regenerate with `python scripts/train_demo.py`.
"""

from __future__ import annotations

import json
import pickle
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
DEMO = REPO / "assets" / "demo"
SCRIPTS = REPO / "scripts"

# nanochat's SPLIT_PATTERN (cl100k with digit groups of 1-2).
NANOCHAT_PATTERN = (
    r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}+|\p{N}{1,2}| ?[^\s\p{L}\p{N}]++[\r\n]*|\s*[\r\n]|\s+(?!\S)|\s+"""
)
SPECIALS = ["<|bos|>", "<|user_start|>", "<|user_end|>", "<|assistant_start|>", "<|assistant_end|>",
            "<|python_start|>", "<|python_end|>", "<|output_start|>", "<|output_end|>"]


@pytest.fixture(scope="module")
def scripts_path():
    sys.path.insert(0, str(SCRIPTS))
    yield
    sys.path.remove(str(SCRIPTS))


def _ckpt_files():
    tag_dirs = list((DEMO / "chatsft_checkpoints").iterdir())
    assert len(tag_dirs) == 1, tag_dirs
    models = sorted(tag_dirs[0].glob("model_*.pt"))
    metas = sorted(tag_dirs[0].glob("meta_*.json"))
    assert len(models) == 1 and len(metas) == 1
    assert models[0].name.removeprefix("model_") == metas[0].name.removeprefix("meta_").replace(".json", ".pt")
    return models[0], metas[0]


# ---- data generator and tokenizer trainer -------------------------------------------------------

def test_data_generator_is_deterministic(scripts_path):
    from make_demo_data import generate_conversations

    a = generate_conversations(300, seed=7)
    assert a == generate_conversations(300, seed=7)
    assert a != generate_conversations(300, seed=8)
    assert json.loads(json.dumps(a)) == a  # plain JSON, nanochat's message format


def test_data_generator_tool_turns_match_the_engine_calculator(scripts_path):
    from make_demo_data import generate_conversations

    from nanochat_core.calculator import calculate

    tool_turns = 0
    for conv in generate_conversations(500, seed=3):
        msgs = conv["messages"]
        if msgs[0]["role"] == "system":
            msgs = msgs[1:]
        assert [m["role"] for m in msgs] == ["user", "assistant"] * (len(msgs) // 2)
        for m in msgs[1::2]:
            if isinstance(m["content"], list):
                types = [p["type"] for p in m["content"]]
                assert types == ["text", "python", "python_output", "text"]
                expr, out = m["content"][1]["text"], m["content"][2]["text"]
                assert calculate(expr) == out  # exactly what the engine will insert
                assert out in m["content"][3]["text"]  # restated
                tool_turns += 1
    assert tool_turns > 100


def test_bpe_trainer_builds_a_nanochat_style_encoding(scripts_path):
    from bpe import SPLIT_PATTERN, build_encoding, token_byte_lengths, train_bpe

    texts = ["hello world, hello nanochat!", "what is 37*12? 444", "héllo wörld 🙂"] * 5
    ranks = train_bpe(texts, 256 + 9 + 30)
    assert ranks == train_bpe(texts, 256 + 9 + 30)  # deterministic
    assert sorted(ranks.values()) == list(range(len(ranks)))
    assert all(ranks[bytes([i])] == i for i in range(256))
    enc = build_encoding(ranks)
    assert SPLIT_PATTERN == NANOCHAT_PATTERN
    for t in texts + ["unseen text ⚡ 123456"]:
        assert enc.decode(enc.encode_ordinary(t)) == t
    assert len(enc.encode_ordinary("hello world")) < len("hello world")
    assert [enc._special_tokens[s] for s in SPECIALS] == list(range(len(ranks), len(ranks) + 9))
    lengths = token_byte_lengths(enc)
    assert lengths[:256] == [1] * 256 and lengths[-9:] == [0] * 9


# ---- the shipped files ---------------------------------------------------------------------------

def test_demo_is_small_and_complete():
    files = [p for p in DEMO.rglob("*") if p.is_file()]
    names = {p.relative_to(DEMO).parts[0] for p in files}
    assert names == {"tokenizer", "chatsft_checkpoints"}
    assert (DEMO / "tokenizer" / "tokenizer.pkl").is_file()
    assert (DEMO / "tokenizer" / "token_bytes.pt").is_file()
    assert sum(p.stat().st_size for p in files) < 8_000_000


def test_demo_tokenizer_pickle_is_nanochats_format():
    import tiktoken

    from nanochat_core.tokenizer import load_encoding

    raw = (DEMO / "tokenizer" / "tokenizer.pkl").read_bytes()
    plain = pickle.loads(raw)  # our own file; the app itself never does this
    assert isinstance(plain, tiktoken.Encoding)
    assert plain.name == "rustbpe" and plain._pat_str == NANOCHAT_PATTERN
    ranks = plain._mergeable_ranks
    assert sorted(ranks.values()) == list(range(len(ranks)))
    assert all(ranks[bytes([i])] == i for i in range(256))
    assert [plain._special_tokens[s] for s in SPECIALS] == list(range(len(ranks), len(ranks) + 9))
    # The app's restricted unpickler gives the same encoding, and it round-trips through pickle.
    safe = load_encoding(DEMO / "tokenizer" / "tokenizer.pkl")
    text = "what is 37*12? héllo 🙂 <|bos|> --model-dir ~/.cache/nanochat"
    assert safe.encode_ordinary(text) == plain.encode_ordinary(text)
    assert safe._mergeable_ranks == ranks and safe._special_tokens == plain._special_tokens
    again = pickle.loads(pickle.dumps(plain, protocol=4))
    assert again.encode_ordinary(text) == plain.encode_ordinary(text)
    assert plain.decode(plain.encode_ordinary(text)) == text


def test_demo_token_bytes():
    import torch

    from nanochat_core.tokenizer import load_encoding

    enc = load_encoding(DEMO / "tokenizer" / "tokenizer.pkl")
    tb = torch.load(DEMO / "tokenizer" / "token_bytes.pt", weights_only=True)
    assert tb.dtype == torch.int32 and tb.shape == (enc.n_vocab,)
    specials = set(enc._special_tokens.values())
    for i in range(enc.n_vocab):
        expected = 0 if i in specials else len(enc.decode_single_token_bytes(i))
        assert int(tb[i]) == expected


def test_demo_checkpoint_is_gen5_in_nanochat_format():
    import torch

    from nanochat_core.checkpoints import detect_generation
    from nanochat_core.tokenizer import load_encoding

    model_path, meta_path = _ckpt_files()
    meta = json.loads(meta_path.read_text())
    step = int(model_path.stem.split("_")[1])
    assert meta["step"] == step and model_path.name == f"model_{step:06d}.pt"
    assert "val_bpb" in meta and "user_config" in meta
    cfg = meta["model_config"]
    assert set(cfg) == {"sequence_len", "vocab_size", "n_layer", "n_head", "n_kv_head", "n_embd", "window_pattern"}
    assert cfg["vocab_size"] == load_encoding(DEMO / "tokenizer" / "tokenizer.pkl").n_vocab

    state = torch.load(model_path, weights_only=True, map_location="cpu")
    assert detect_generation(state) == "gen5-smear-backout"
    rows = -(-cfg["vocab_size"] // 64) * 64
    C, n = cfg["n_embd"], cfg["n_layer"]
    D = C // cfg["n_head"]
    assert state["transformer.wte.weight"].shape == (rows, C)
    assert state["lm_head.weight"].shape == (rows, C)
    assert state["smear_gate.weight"].shape == (1, 24)
    ve_layers = [i for i in range(n) if i % 2 == (n - 1) % 2]
    for i in ve_layers:
        assert state[f"transformer.h.{i}.attn.ve_gate.weight"].shape == (cfg["n_kv_head"], 12)
        assert state[f"value_embeds.{i}.weight"].shape == (rows, cfg["n_kv_head"] * D)
    assert {k for k in state if k.startswith("value_embeds.")} == {f"value_embeds.{i}.weight" for i in ve_layers}
    for k, v in state.items():  # as a CUDA run of nanochat stores them
        bf16 = k == "transformer.wte.weight" or k.startswith("value_embeds.")
        assert v.dtype == (torch.bfloat16 if bf16 else torch.float32), k
        assert not k.startswith("_orig_mod.")


# ---- through the real loader and engine ------------------------------------------------------------

@pytest.fixture(scope="module")
def demo_model():
    from nanochat_core import load_chat_model

    return load_chat_model(base_dir=DEMO, device="cpu")


def _greedy(model, prompt: str | list[dict]):
    from nanochat_core import Done, SamplingParams, ToolCall, ToolResult

    messages = [{"role": "user", "content": prompt}] if isinstance(prompt, str) else prompt
    calls, results, done = [], [], None
    for ev in model.chat(messages, SamplingParams(temperature=0.0, max_tokens=256)):
        if isinstance(ev, ToolCall):
            calls.append(ev.expression)
        elif isinstance(ev, ToolResult):
            results.append(ev.result)
        elif isinstance(ev, Done):
            done = ev
    assert done is not None and done.reason == "stop", done
    return done.text, calls, results


def test_demo_fallback_loads_when_no_checkpoints(tmp_path, monkeypatch):
    from nanochat_core import load_chat_model

    monkeypatch.setenv("NANOCHAT_BASE_DIR", str(tmp_path))
    m = load_chat_model(device="cpu")
    assert m.info.is_demo and m.info.generation == "gen5-smear-backout"
    assert any("demo" in n for n in m.notices)


def test_demo_multiplies_through_the_calculator(demo_model):
    text, calls, results = _greedy(demo_model, "what is 37*12?")
    assert calls == ["37*12"] and results == ["444"]
    assert "444" in text


@pytest.mark.parametrize("question, expr, result", [
    ("How much is 4821 - 977?", "4821-977", "3844"),
    ("what is 1234 divided by 4?", "1234/4", "308.5"),
    ("calculate 58+261", "58+261", "319"),
])
def test_demo_arithmetic_with_unseen_numbers(demo_model, question, expr, result):
    text, calls, results = _greedy(demo_model, question)
    assert [c.replace(" ", "") for c in calls] == [expr] and results == [result]
    assert result in text


@pytest.mark.parametrize("question, must_contain", [
    ("hi", "demo model"),
    ("what are you?", "not a trained nanochat"),
    ("how do I start a new conversation?", "Ctrl+N"),
    ("how do I load my own checkpoint?", "--model-dir"),
    ("what does --web do?", "8000"),
    ("how do I quit?", "Ctrl+Q"),
    ("what is the capital of France?", "train one with nanochat"),
])
def test_demo_answers_in_its_world(demo_model, question, must_contain):
    text, calls, _ = _greedy(demo_model, question)
    assert not calls
    assert must_contain in text, text


def test_demo_multi_turn(demo_model):
    first, calls, _ = _greedy(demo_model, "hello")
    assert not calls
    history = [{"role": "user", "content": "hello"}, {"role": "assistant", "content": first},
               {"role": "user", "content": "what is 25*4?"}]
    text, calls, results = _greedy(demo_model, history)
    assert calls == ["25*4"] and results == ["100"] and "100" in text
