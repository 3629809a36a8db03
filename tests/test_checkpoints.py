"""Finding checkpoints with nanochat's rules, and refusing broken or hostile files in one line."""

from __future__ import annotations

import json
import os
import pickle
import shutil
import time
from pathlib import Path

import pytest
import torch

from conftest import FIXTURES
from nanochat_core import CheckpointError, load_chat_model
from nanochat_core.checkpoints import find_checkpoint
from nanochat_core.tokenizer import Tokenizer, TokenizerError

GEN5 = FIXTURES / "gen5-smear-backout" / "base_dir"


def make_tags(root: Path, source_dir: str, tags: dict[str, list[int]]) -> None:
    for tag, steps in tags.items():
        d = root / source_dir / tag
        d.mkdir(parents=True)
        for s in steps:
            (d / f"model_{s:06d}.pt").write_bytes(b"")
            (d / f"optim_{s:06d}_rank0.pt").write_bytes(b"")  # never mistaken for a model
        time.sleep(0.01)


def test_largest_depth_tag_then_largest_step(tmp_path):
    make_tags(tmp_path, "chatsft_checkpoints", {"d4": [100, 900], "d12-long": [5], "d8": [7]})
    loc = find_checkpoint(tmp_path, "sft")
    assert (loc.model_tag, loc.step) == ("d12-long", 5)  # prefix match: d12-long is depth 12
    assert find_checkpoint(tmp_path, "sft", "d4").step == 900
    assert find_checkpoint(tmp_path, "sft", "d4", 100).step == 100


def test_newest_tag_when_none_is_dNN(tmp_path):
    make_tags(tmp_path, "base_checkpoints", {"alpha": [1], "beta": [2]})
    os.utime(tmp_path / "base_checkpoints" / "alpha", (time.time() + 100, time.time() + 100))
    assert find_checkpoint(tmp_path, "base").model_tag == "alpha"


def test_sources_map_to_nanochat_dirs(tmp_path):
    make_tags(tmp_path, "chatrl_checkpoints", {"d20": [3]})
    make_tags(tmp_path, "sft_checkpoints", {"d20": [4]})  # nanochat 1ddaad1 wrote here for a day
    assert find_checkpoint(tmp_path, "rl").step == 3
    assert find_checkpoint(tmp_path, "sft").step == 4


def test_missing_things_name_what_exists(tmp_path):
    make_tags(tmp_path, "chatsft_checkpoints", {"d4": [100, 200]})
    with pytest.raises(CheckpointError) as e:
        find_checkpoint(tmp_path, "sft", "d9")
    assert "no model tag 'd9'" in str(e.value) and "d4" in str(e.value)
    with pytest.raises(CheckpointError) as e:
        find_checkpoint(tmp_path, "sft", "d4", 150)
    assert "steps present: 100, 200" in str(e.value)
    with pytest.raises(CheckpointError) as e:
        find_checkpoint(tmp_path, "rl")
    assert "chatrl_checkpoints" in str(e.value) and "d4 (steps 100, 200)" in str(e.value)
    assert "\n" not in str(e.value)


def test_rl_directory_loads(tmp_path):
    shutil.copytree(GEN5 / "tokenizer", tmp_path / "tokenizer")
    shutil.copytree(GEN5 / "chatsft_checkpoints", tmp_path / "chatrl_checkpoints")
    m = load_chat_model(base_dir=tmp_path, source="rl")
    assert m.info.source == "rl" and m.info.generation == "gen5-smear-backout"


def test_compiled_prefix_is_stripped(copy_fixture, load_fixture):
    base = copy_fixture()
    path = base / "chatsft_checkpoints" / "d4" / "model_000700.pt"
    state = torch.load(path, weights_only=True)
    torch.save({"_orig_mod." + k: v for k, v in state.items()}, path)
    m = load_chat_model(base_dir=base)
    ids = m.render([{"role": "user", "content": "hello"}])
    assert torch.equal(m.logits(ids), load_fixture("gen5-smear-backout").logits(ids))


def test_demo_fallback_only_when_nothing_was_asked_for(tmp_path, monkeypatch):
    monkeypatch.setenv("NANOCHAT_BASE_DIR", str(tmp_path))
    notes = []
    m = load_chat_model(progress=notes.append)
    assert m.info.is_demo
    assert any(n.startswith(f"no checkpoints in {tmp_path}; using the bundled demo model (") for n in notes)
    with pytest.raises(CheckpointError):
        load_chat_model(base_dir=tmp_path)  # explicitly asked for: an error, not the demo


# ---- broken and hostile files ----

def test_bad_meta_json(copy_fixture):
    base = copy_fixture()
    (base / "chatsft_checkpoints/d4/meta_000700.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="cannot read .*meta_000700.json"):
        load_chat_model(base_dir=base)


def test_meta_with_bad_fields(copy_fixture):
    base = copy_fixture()
    meta_path = base / "chatsft_checkpoints/d4/meta_000700.json"
    meta = json.loads(meta_path.read_text())
    meta["model_config"]["n_head"] = "four"
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="model_config.n_head must be a positive integer"):
        load_chat_model(base_dir=base)


def test_vocab_mismatch(copy_fixture):
    base = copy_fixture()
    meta_path = base / "chatsft_checkpoints/d4/meta_000700.json"
    meta = json.loads(meta_path.read_text())
    meta["model_config"]["vocab_size"] = 600
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="vocab mismatch"):
        load_chat_model(base_dir=base)


def test_truncated_model_file(copy_fixture):
    base = copy_fixture()
    path = base / "chatsft_checkpoints/d4/model_000700.pt"
    path.write_bytes(path.read_bytes()[:5000])
    with pytest.raises(CheckpointError, match="cannot load .*model_000700.pt") as caught:
        load_chat_model(base_dir=base)
    assert str(caught.value).endswith(": the file is truncated or not a PyTorch checkpoint "
                                      "(its zip archive cannot be read)")


def test_model_file_with_code_in_it_is_refused_without_running_it(copy_fixture, tmp_path):
    base = copy_fixture()
    marker = tmp_path / "ran"
    path = base / "chatsft_checkpoints/d4/model_000700.pt"
    torch.save({"w": _Payload(str(marker))}, path)
    with pytest.raises(CheckpointError) as caught:
        load_chat_model(base_dir=base)
    assert str(caught.value).endswith("it holds objects other than tensors, which are never unpickled "
                                      "here (weights_only=True)")
    assert not marker.exists()


class _Payload:
    """Pickles to a call of os.system: what a hostile checkpoint would carry."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        import os

        return (os.system, (f"touch {self.marker}",))


def test_missing_keys(copy_fixture):
    base = copy_fixture()
    path = base / "chatsft_checkpoints/d4/model_000700.pt"
    state = torch.load(path, weights_only=True)
    del state["transformer.h.1.mlp.c_fc.weight"]
    torch.save(state, path)
    with pytest.raises(CheckpointError, match="missing transformer.h.1.mlp.c_fc.weight"):
        load_chat_model(base_dir=base)


class _Boom:
    def __reduce__(self):
        return (os.system, ("touch PWNED",))


def test_model_file_with_code_is_refused_without_running_it(copy_fixture, tmp_path, monkeypatch):
    base = copy_fixture()
    monkeypatch.chdir(tmp_path)
    with open(base / "chatsft_checkpoints/d4/model_000700.pt", "wb") as f:
        pickle.dump({"transformer.wte.weight": _Boom()}, f)
    with pytest.raises(CheckpointError):
        load_chat_model(base_dir=base)
    assert not (tmp_path / "PWNED").exists()


def test_tokenizer_pickle_with_code_is_refused_without_running_it(copy_fixture, tmp_path, monkeypatch):
    base = copy_fixture()
    monkeypatch.chdir(tmp_path)
    (base / "tokenizer/tokenizer.pkl").write_bytes(pickle.dumps(_Boom()))
    with pytest.raises(CheckpointError, match="refusing to load global"):
        load_chat_model(base_dir=base)
    assert not (tmp_path / "PWNED").exists()


def test_tokenizer_class_called_with_arguments_is_refused(tmp_path):
    """REDUCE on the one admitted class, with arguments: the inert stand-in refuses."""
    import tiktoken.core

    class CallsEncoding:
        def __reduce__(self):
            return (tiktoken.core.Encoding, ("evil",))

    path = tmp_path / "tok.pkl"
    path.write_bytes(pickle.dumps(CallsEncoding()))
    with pytest.raises(TokenizerError, match="unexpected constructor arguments"):
        Tokenizer.from_file(path)


def test_tokenizer_matches_plain_pickle_load():
    import tiktoken  # noqa: F401  (plain pickle.load needs the real class)

    path = GEN5 / "tokenizer" / "tokenizer.pkl"
    ours = Tokenizer.from_file(path).enc
    with open(path, "rb") as f:
        theirs = pickle.load(f)  # trusted fixture: the reference behaviour
    text = "Hello wörld 12345 ✓ — ok?"
    assert ours.encode_ordinary(text) == theirs.encode_ordinary(text)
    assert ours._special_tokens == theirs._special_tokens and ours.n_vocab == theirs.n_vocab


# ---- any folder: the detection rules of docs/checkpoints.md ----

GEN5_TAG = GEN5 / "chatsft_checkpoints" / "d4"
GEN5_TOKENIZER = GEN5 / "tokenizer" / "tokenizer.pkl"


def flat(dest: Path, tokenizer_at: str | None = "tokenizer.pkl", step: int = 700) -> Path:
    """model + meta in `dest` (as a published repo holds them), the tokenizer at `tokenizer_at`
    relative to `dest` ('../tokenizer/tokenizer.pkl' = in a parent's tokenizer/ folder)."""
    dest.mkdir(parents=True, exist_ok=True)
    shutil.copy(GEN5_TAG / "model_000700.pt", dest / f"model_{step:06d}.pt")
    shutil.copy(GEN5_TAG / "meta_000700.json", dest / f"meta_{step:06d}.json")
    if tokenizer_at is not None:
        target = (dest / tokenizer_at).resolve()
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(GEN5_TOKENIZER, target)
    return dest


@pytest.mark.parametrize("tokenizer_at", ["tokenizer.pkl", "tokenizer/tokenizer.pkl",
                                          "../tokenizer.pkl", "../../tokenizer/tokenizer.pkl"])
def test_flat_folder_with_the_tokenizer_in_each_place(tmp_path, tokenizer_at):
    folder = flat(tmp_path / "a" / "b" / "downloaded-d20", tokenizer_at)
    loc = find_checkpoint(folder, None)
    assert (loc.layout, loc.model_tag, loc.step, loc.source) == ("checkpoint folder", "d20", 700, "")
    assert loc.tokenizer_path.resolve() == (folder / tokenizer_at).resolve()
    assert loc.model_path == folder / "model_000700.pt"


def test_flat_folder_loads_and_chats_like_the_base_dir(tmp_path, load_fixture):
    folder = flat(tmp_path / "downloaded-d20")
    m = load_chat_model(base_dir=folder, device="cpu")
    assert (m.info.model_tag, m.info.step, m.info.source, m.info.layout) == ("d20", 700, "", "checkpoint folder")
    assert m.info.short_name == "d20 · step 700 · gen5-smear-backout"
    ids = m.render([{"role": "user", "content": "hello"}])
    assert torch.equal(m.logits(ids), load_fixture("gen5-smear-backout").logits(ids))


def test_tag_and_stage_folders_of_a_base_dir(copy_fixture):
    base = copy_fixture()
    tag = find_checkpoint(base / "chatsft_checkpoints" / "d4", None)  # tokenizer two levels up
    assert (tag.source, tag.model_tag, tag.step) == ("sft", "d4", 700)
    assert tag.tokenizer_path.resolve() == (base / "tokenizer" / "tokenizer.pkl").resolve()
    stage = find_checkpoint(base / "chatsft_checkpoints", None)
    assert (stage.source, stage.model_tag, stage.layout) == ("sft", "d4", "folder")
    m = load_chat_model(base_dir=base / "chatsft_checkpoints" / "d4", device="cpu")
    assert (m.info.source, m.info.model_tag) == ("sft", "d4")


def test_repo_like_folder_with_stages_tags_and_steps(tmp_path):
    """A published repo with subfolders: -i/-g/-s navigate; sft is the default stage."""
    root = tmp_path / "repo"
    flat(root / "base" / "d4", None, step=100)
    flat(root / "sft" / "d4", None, step=200)
    flat(root / "sft" / "d4", None, step=300)
    flat(root / "sft" / "d6", None, step=50)
    shutil.copytree(GEN5 / "tokenizer", root / "tokenizer")
    default = find_checkpoint(root, None)
    assert (default.source, default.model_tag, default.step) == ("sft", "d6", 50)
    assert find_checkpoint(root, None, "d4").step == 300
    assert find_checkpoint(root, None, "d4", 200).step == 200
    assert find_checkpoint(root, "base").step == 100
    assert find_checkpoint(root, None).tokenizer_path == root / "tokenizer" / "tokenizer.pkl"
    with pytest.raises(CheckpointError, match=r"no rl checkpoints in .*found: base d4 \(steps 100\)"):
        find_checkpoint(root, "rl")


def test_only_stage_present_is_used_and_said(tmp_path):
    shutil.copytree(GEN5 / "tokenizer", tmp_path / "tokenizer")
    flat(tmp_path / "base_checkpoints" / "d4", None)
    notes: list[str] = []
    m = load_chat_model(base_dir=tmp_path, device="cpu", progress=notes.append)
    assert m.info.source == "base"
    assert any("no sft checkpoint in" in n and "using its base checkpoint (choose with -i)" in n for n in notes)


def test_several_stages_without_sft_ask_for_i(tmp_path):
    flat(tmp_path / "base_checkpoints" / "d4", None)
    flat(tmp_path / "chatrl_checkpoints" / "d4", None)
    with pytest.raises(CheckpointError, match=r"holds several stages \(base, rl\) and no sft: choose one with -i"):
        find_checkpoint(tmp_path, None)


def test_mid_stage_loads(tmp_path):
    """nanochat before 2026-01-31 wrote mid_checkpoints/ (several published repos hold one)."""
    shutil.copytree(GEN5 / "tokenizer", tmp_path / "tokenizer")
    shutil.copytree(GEN5_TAG, tmp_path / "mid_checkpoints" / "d4")
    shutil.copytree(GEN5_TAG, tmp_path / "chatsft_checkpoints" / "d4")
    m = load_chat_model(base_dir=tmp_path, source="mid", device="cpu")
    assert (m.info.source, m.info.stage) == ("mid", "mid")
    assert m.info.checkpoint_dir == str(tmp_path / "mid_checkpoints" / "d4")


def test_a_folder_matching_no_rule_says_what_was_looked_for_and_found(tmp_path):
    (tmp_path / "notes").mkdir()
    (tmp_path / "README.md").write_text("hi")
    (tmp_path / "pytorch_model.bin").write_bytes(b"")
    with pytest.raises(CheckpointError) as caught:
        load_chat_model(base_dir=tmp_path, device="cpu")
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith(f"no nanochat checkpoint in {tmp_path}: looked for model_<step>.pt with meta_<step>.json")
    assert message.endswith("found notes/, README.md, pytorch_model.bin")


def test_missing_tokenizer_and_missing_meta_are_one_line_each(tmp_path):
    folder = flat(tmp_path / "d4", None)
    with pytest.raises(CheckpointError, match=r"no tokenizer for .*d4: looked for tokenizer.pkl and "
                                              r"tokenizer/tokenizer.pkl there and up to 2 folders above"):
        load_chat_model(base_dir=folder, device="cpu")
    shutil.copy(GEN5_TOKENIZER, folder / "tokenizer.pkl")
    (folder / "meta_000700.json").unlink()
    with pytest.raises(CheckpointError, match=r"missing metadata file .*meta_000700.json"):
        load_chat_model(base_dir=folder, device="cpu")
