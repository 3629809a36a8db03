"""--hf OWNER/REPO[@REVISION]: checkpoints from the Hugging Face Hub, never touching the network.

Two kinds of Hub stand in for the real one: a cache laid out as huggingface_hub lays it out,
read with HF_HUB_OFFLINE=1 (hub_cache.py), and a tiny Hub on loopback that HF_ENDPOINT points at
(fake_hub.py), which records which files were downloaded."""

from __future__ import annotations

import json
import subprocess

import pytest
from conftest import cli_command, cli_env
from hub_cache import GEN1, GEN5, add_snapshot, flat_files

from nanochat_core import CheckpointError, load_chat_model
from nanochat_core.hub import parse_repo_spec

COMMIT_A, COMMIT_B = "a" * 40, "b" * 40


@pytest.fixture
def offline(tmp_path, monkeypatch):
    home = tmp_path / "hf"
    monkeypatch.setenv("HF_HOME", str(home))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.delenv("HF_ENDPOINT", raising=False)
    return home


def two_stages_two_steps() -> dict:
    """A repo holding base and sft checkpoints of d4, sft at two steps, one tokenizer at the root."""
    files = {}
    files |= {k: v for k, v in flat_files(GEN5, "base_checkpoints/d4/", as_step=100).items() if "tokenizer" not in k}
    files |= {k: v for k, v in flat_files(GEN5, "chatsft_checkpoints/d4/", as_step=200).items() if "tokenizer" not in k}
    files |= {k: v for k, v in flat_files(GEN1, "chatsft_checkpoints/d4/", as_step=300).items() if "tokenizer" not in k}
    files["tokenizer/tokenizer.pkl"] = GEN5 / "tokenizer" / "tokenizer.pkl"
    files["chatsft_checkpoints/d4/optim_000300_rank0.pt"] = b"optimizer state"
    files["README.md"] = b"# a nanochat model"
    return files


def test_repo_with_two_stages_and_two_steps_is_navigated_with_i_g_s(offline):
    files = two_stages_two_steps()
    # gen1's weights need gen1's tokenizer: keep the step-300 files out of this snapshot
    add_snapshot(offline, "alice/nanochat-d4", {k: v for k, v in files.items() if "000300" not in k}, COMMIT_A)
    notes: list[str] = []
    m = load_chat_model(hf="alice/nanochat-d4", device="cpu", progress=notes.append)
    assert (m.info.source, m.info.model_tag, m.info.step) == ("sft", "d4", 200)
    assert (m.info.hf_repo, m.info.hf_revision, m.info.hf_commit) == ("alice/nanochat-d4", "main", COMMIT_A)
    assert m.info.origin == f"hf:alice/nanochat-d4@main (commit {COMMIT_A[:12]})"
    assert m.info.identity()["hf"] == {"repo": "alice/nanochat-d4", "revision": "main", "commit": COMMIT_A}
    assert notes[0] == "Looking for nanochat checkpoints in hf:alice/nanochat-d4"
    base = load_chat_model(hf="alice/nanochat-d4", source="base", device="cpu")
    assert (base.info.source, base.info.step) == ("base", 100)
    with pytest.raises(CheckpointError, match=r"no step 5 in hf:alice/nanochat-d4/chatsft_checkpoints/d4 "
                                              r"\(steps present: 200\)"):
        load_chat_model(hf="alice/nanochat-d4", step=5, device="cpu")
    with pytest.raises(CheckpointError, match=r"no model tag 'd20' in hf:alice/nanochat-d4 \(tags present: d4\)"):
        load_chat_model(hf="alice/nanochat-d4", model_tag="d20", device="cpu")


def test_a_revision_picks_that_commit(offline):
    add_snapshot(offline, "alice/nanochat-d4", flat_files(GEN5), COMMIT_A, refs=("main",))
    add_snapshot(offline, "alice/nanochat-d4", flat_files(GEN1), COMMIT_B, refs=("v1",))
    assert load_chat_model(hf="alice/nanochat-d4", device="cpu").info.generation == "gen5-smear-backout"
    old = load_chat_model(hf="alice/nanochat-d4@v1", device="cpu")
    assert (old.info.generation, old.info.hf_revision, old.info.hf_commit) == ("gen1-original", "v1", COMMIT_B)
    by_commit = load_chat_model(hf=f"alice/nanochat-d4@{COMMIT_B}", device="cpu")
    assert by_commit.info.generation == "gen1-original"
    with pytest.raises(CheckpointError, match=r"^alice/nanochat-d4@v2 is not in the Hugging Face cache .*HF_HUB_OFFLINE is set"):
        load_chat_model(hf="alice/nanochat-d4@v2", device="cpu")


def test_a_repo_without_a_checkpoint_is_one_line(offline):
    add_snapshot(offline, "bob/not-nanochat", {"config.json": b"{}", "model.safetensors": b"x", "README.md": b"hi"},
                 COMMIT_A)
    with pytest.raises(CheckpointError) as caught:
        load_chat_model(hf="bob/not-nanochat", device="cpu")
    assert str(caught.value) == (
        "no nanochat checkpoint in hf:bob/not-nanochat: looked for model_<step>.pt with meta_<step>.json "
        "(a checkpoint folder), stage folders such as chatsft_checkpoints/ (a base dir), or checkpoint "
        "folders up to 3 levels down; found README.md, config.json, model.safetensors")


@pytest.mark.parametrize("spec,ok", [("alice/nanochat-d4", ("alice/nanochat-d4", "main")),
                                     ("alice/nanochat-d4@v1.0", ("alice/nanochat-d4", "v1.0")),
                                     ("https://huggingface.co/alice/nanochat-d4", ("alice/nanochat-d4", "main")),
                                     ("https://huggingface.co/alice/nanochat-d4/tree/dev", ("alice/nanochat-d4", "dev")),
                                     ("alice", None), ("alice/../etc", None), ("a/b@../x", None), ("/x/y", None)])
def test_repo_specs(spec, ok):
    if ok is None:
        with pytest.raises(CheckpointError):
            parse_repo_spec(spec)
    else:
        assert parse_repo_spec(spec) == ok


# ---- downloads from a Hub on loopback ----

@pytest.fixture
def hub(tmp_path, monkeypatch):
    from fake_hub import FakeHub

    server = FakeHub().start()
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_ENDPOINT", server.url)
    monkeypatch.setenv("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    yield server
    server.stop()


def test_only_the_chosen_checkpoints_files_are_downloaded_then_offline_works(hub, monkeypatch):
    files = {k: v for k, v in two_stages_two_steps().items() if "000300" not in k}
    files["chatsft_checkpoints/d4/optim_000200_rank0.pt"] = b"o" * 10_000
    hub.add("alice/nanochat-d4", files, COMMIT_A)
    hub.cut_once.add("chatsft_checkpoints/d4/model_000200.pt")  # dropped half-way: the library retries
    reports: list[tuple[str, int, int | None]] = []
    m = load_chat_model(hf="alice/nanochat-d4", device="cpu",
                        download_progress=lambda name, done, total: reports.append((name, done, total)))
    assert (m.info.source, m.info.step, m.info.hf_commit) == ("sft", 200, COMMIT_A)
    assert set(hub.downloaded()) == {"chatsft_checkpoints/d4/model_000200.pt", "chatsft_checkpoints/d4/meta_000200.json",
                                     "tokenizer/tokenizer.pkl"}
    assert any(name.endswith("model_000200.pt") and done == total and total > 0 for name, done, total in reports)
    # A second run and an offline run use the cache: nothing is downloaded again.
    before = len(hub.downloaded())
    load_chat_model(hf="alice/nanochat-d4", device="cpu")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert load_chat_model(hf="alice/nanochat-d4", device="cpu").info.step == 200
    assert len(hub.downloaded()) == before


def test_hub_errors_are_one_line_each(hub, monkeypatch):
    hub.add("alice/nanochat-d4", flat_files(GEN5), COMMIT_A)
    hub.add("carol/gated", flat_files(GEN5), COMMIT_B, gated=True)
    cases = {
        "nobody/missing": "no model repo nobody/missing on the Hugging Face Hub (a private repo needs HF_TOKEN)",
        "carol/gated": "carol/gated is a gated repo: accept its conditions on the Hub, then set HF_TOKEN to a "
                       "token of that account",
        "alice/nanochat-d4@v9": "no revision 'v9' in alice/nanochat-d4 (a branch, tag or commit of the repo)",
    }
    for spec, message in cases.items():
        with pytest.raises(CheckpointError) as caught:
            load_chat_model(hf=spec, device="cpu")
        assert str(caught.value) == message
    import socket

    with socket.socket() as sock:  # a port nobody listens on: the Hub is unreachable
        sock.bind(("127.0.0.1", 0))
        monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{sock.getsockname()[1]}")
    with pytest.raises(CheckpointError) as caught:
        load_chat_model(hf="alice/nanochat-d4", device="cpu")
    text = str(caught.value)
    assert text.startswith("cannot reach the Hugging Face Hub for alice/nanochat-d4 (")
    assert text.endswith("check the network, or set HF_HUB_OFFLINE=1 to use the cache") and "\n" not in text


def test_cli_hf_one_shot_offline_and_flag_errors(offline):
    """`nanochat-tui --hf REPO -p …` end to end (the console script), offline from the cache."""
    add_snapshot(offline, "alice/nanochat-d4", flat_files(GEN5, "d4/"), COMMIT_A)
    env = cli_env(HF_HOME=str(offline), HF_HUB_OFFLINE="1")
    done = subprocess.run([*cli_command(), "--hf", "alice/nanochat-d4", "-t", "0", "-m", "4", "-p", "hi"],
                          capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "Loaded d4 · step 700 · gen5-smear-backout" in done.stderr and done.stdout
    both = subprocess.run([*cli_command(), "--hf", "alice/nanochat-d4", "--model-dir", ".", "-p", "hi"],
                          capture_output=True, text=True, env=env, timeout=60)
    assert both.returncode == 2
    assert both.stderr == "nanochat-tui: error: --hf and --model-dir both name a checkpoint: give one of them\n"


def test_models_lists_a_hub_repo_without_downloading(hub, capsys):
    from nanochat_tui.cli import main

    hub.add("alice/nanochat-d4", {k: v for k, v in two_stages_two_steps().items()}, COMMIT_A)
    assert main(["models", "--hf", "alice/nanochat-d4", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [(r["stage"], r["tag"], r["step"]) for r in rows] == [("base", "d4", 100), ("sft", "d4", 200),
                                                                ("sft", "d4", 300)]
    assert {r["hf_commit"] for r in rows} == {COMMIT_A} and rows[0]["tokenizer_path"] == "tokenizer/tokenizer.pkl"
    assert hub.downloaded() == []
    assert main(["models", "--hf", "alice/nanochat-d4", "-d", "float32"]) == 2
    assert "-d/--dtype is for loading a model; `models` only lists them" in capsys.readouterr().err


def test_download_lines_reports_every_ten_percent():
    from nanochat_core.hub import download_lines

    lines: list[str] = []
    report = download_lines(lines.append)
    for done in range(0, 1_000_001, 50_000):
        report("(…)abc/sub/model_000650.pt", done, 1_000_000)
    report("tokenizer.pkl", 5, None)  # unknown size: nothing to say yet
    assert lines[0] == "Downloading model_000650.pt: 0 bytes of 1.0 MB (0%)"
    assert lines[-1] == "Downloading model_000650.pt: 1.0 MB of 1.0 MB (100%)" and len(lines) == 11
