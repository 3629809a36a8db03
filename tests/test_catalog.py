"""The model catalog (nanochat_core.catalog) and `nanochat-tui models`: every checkpoint found
(base dir, extra folders, the HF cache, the demo model last), and loading one entry in the
background with progress."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import cli_command, cli_env
from hub_cache import GEN1, GEN5, add_snapshot, flat_files

from nanochat_core.catalog import list_models, load_entry, load_in_background

COMMIT = "c" * 40


@pytest.fixture
def machine(tmp_path, monkeypatch):
    """A base dir with sft and rl, an extra flat folder, a repo in the HF cache."""
    base = tmp_path / "nanochat"
    shutil.copytree(GEN5, base)
    shutil.copytree(GEN5 / "chatsft_checkpoints", base / "chatrl_checkpoints")
    extra = tmp_path / "downloads" / "friend-d4"
    extra.mkdir(parents=True)
    for name, src in flat_files(GEN1).items():
        shutil.copy(src, extra / name)
    home = tmp_path / "hf"
    add_snapshot(home, "alice/nanochat-d4", {**flat_files(GEN5, "d4/"), "README.md": b"hi"}, COMMIT)
    add_snapshot(home, "bob/bert", {"config.json": b"{}"}, "d" * 40)  # not nanochat: not listed
    monkeypatch.setenv("HF_HOME", str(home))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.delenv("NANOCHAT_BASE_DIR", raising=False)
    return base, extra, home


def test_list_models_finds_every_place_demo_last(machine):
    base, extra, _home = machine
    entries = list_models(base, [extra])
    summary = [(e.kind, e.stage, e.tag, e.step, e.generation) for e in entries]
    assert summary == [
        ("folder", "sft", "d4", 700, "gen5-smear-backout"),
        ("folder", "rl", "d4", 700, "gen5-smear-backout"),
        ("folder", None, "d4", 700, "gen1-original"),
        ("hf", None, "d4", 700, "gen5-smear-backout"),
        ("demo", "sft", "d4", 1200, "gen5-smear-backout"),
    ]
    sft, _rl, flat, hub, demo = entries
    assert sft.where == str(base / "chatsft_checkpoints" / "d4") and flat.where == str(extra)
    assert hub.where == "hf:alice/nanochat-d4" and (hub.hf_revision, hub.hf_commit) == ("main", COMMIT)
    assert sft.params and sft.params > 100_000
    assert sft.size_bytes == sum(Path(p).stat().st_size for p in (sft.model_path, sft.meta_path, sft.tokenizer_path))
    assert demo.is_demo and all(not e.is_demo for e in entries[:-1])
    assert list_models(base, [extra, base])[:3] == entries[:3]  # a folder named twice: listed once


def test_load_entry_in_the_background_with_progress(machine):
    base, extra, _home = machine
    entries = list_models(base, [extra])
    lines: list[str] = []
    finished: list[tuple[object, object]] = []
    job = load_in_background(entries[3], progress=lines.append, device="cpu",
                             on_done=lambda model, error: finished.append((model, error)))
    model = job.wait(120)
    assert finished == [(model, None)]
    assert model.info.hf_repo == "alice/nanochat-d4" and model.info.hf_commit == COMMIT
    assert any(line.startswith("Loading weights ") for line in lines)
    demo = load_entry(entries[-1], device="cpu")
    assert demo.info.is_demo
    flat = load_entry(entries[2], device="cpu")
    assert (flat.info.generation, flat.info.checkpoint_dir) == ("gen1-original", str(extra))


def test_background_load_hands_back_the_error(machine, tmp_path):
    base, extra, _home = machine
    entry = list_models(base, [extra])[2]
    Path(entry.meta_path).write_text("{not json")
    job = load_in_background(entry, device="cpu")
    with pytest.raises(Exception, match="cannot read .*meta_000700.json: not JSON"):
        job.wait(120)


def test_models_command_lists_the_settings_files_folders(machine, tmp_path, monkeypatch, capsys):
    """model_dir and model_dirs of the settings file, as the app's /model picker lists them."""
    from nanochat_tui import models_cli

    base, extra, _home = machine
    tui_home = tmp_path / "tui-home"
    tui_home.mkdir()
    (tui_home / "config.toml").write_text(f"model_dir = {json.dumps(str(base))}\n"
                                          f"model_dirs = [{json.dumps(str(extra))}]\n")
    monkeypatch.setenv("NANOCHAT_TUI_HOME", str(tui_home))
    assert models_cli.run(models_cli.build_parser().parse_args(["--json"])) == 0
    listed = [e["model_path"] for e in json.loads(capsys.readouterr().out)]
    assert listed == [e.model_path for e in list_models(base, [extra])] and len(listed) == 5


def test_models_command_json_and_table(machine):
    base, extra, home = machine
    env = cli_env(HF_HOME=str(home), HF_HUB_OFFLINE="1", NANOCHAT_BASE_DIR=str(base))
    done = subprocess.run([*cli_command(), "models", "--json", "--dir", str(extra)],
                          capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    entries = json.loads(done.stdout)
    assert [(e["kind"], e["stage"], e["generation"]) for e in entries] == [
        ("folder", "sft", "gen5-smear-backout"), ("folder", "rl", "gen5-smear-backout"),
        ("folder", None, "gen1-original"), ("hf", None, "gen5-smear-backout"), ("demo", "sft", "gen5-smear-backout")]
    assert entries[-1]["demo"] is True and entries[3]["hf_commit"] == COMMIT
    assert {"stage", "tag", "step", "generation", "params", "size_bytes", "where"} <= set(entries[0])

    table = subprocess.run([*cli_command(), "models", "-i", "rl"], capture_output=True, text=True, env=env,
                           timeout=120)
    assert table.returncode == 0, table.stderr
    lines = table.stdout.splitlines()
    assert lines[0].split() == ["STAGE", "TAG", "STEP", "GENERATION", "PARAMS", "SIZE", "WHERE"]
    assert len(lines) == 2 and lines[1].split()[:4] == ["rl", "d4", "700", "gen5-smear-backout"]
    assert lines[1].endswith(str(base / "chatrl_checkpoints" / "d4"))
