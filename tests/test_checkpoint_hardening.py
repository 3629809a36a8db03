"""Checkpoint files that try to hang, exhaust or confuse the loader (docs/security.md
"Checkpoint files"). Each case is a crafted folder built here; each load is bounded in time."""

from __future__ import annotations

import json
import os
import shutil
import threading
from pathlib import Path

import pytest
import torch
from conftest import FIXTURES

from nanochat_core import CheckpointError, checkpoint_files, load_chat_model

GEN5 = FIXTURES / "gen5-smear-backout" / "base_dir"
TAG = "chatsft_checkpoints/d4"
FILES = {"meta": f"{TAG}/meta_000700.json", "model": f"{TAG}/model_000700.pt", "tokenizer": "tokenizer/tokenizer.pkl"}
DEADLINE = 60.0  # seconds: a refusal takes milliseconds; a hang is what is being tested for


@pytest.fixture
def base(tmp_path) -> Path:
    dest = tmp_path / "base"
    shutil.copytree(GEN5, dest)
    return dest


def load_bounded(base: Path, unblock: Path | None = None) -> BaseException | None:
    """Load on a thread; fail the test if it does not end by DEADLINE. `unblock` (a FIFO) is
    opened for writing afterwards so that a loader stuck reading it is released."""
    outcome: list[BaseException | None] = []

    def run():
        try:
            load_chat_model(base_dir=base, device="cpu")
            outcome.append(None)
        except BaseException as e:  # noqa: BLE001 - the outcome is the subject of the test
            outcome.append(e)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(DEADLINE)
    hung = thread.is_alive()
    if hung and unblock is not None:
        fd = os.open(unblock, os.O_WRONLY | os.O_NONBLOCK)
        os.close(fd)
        thread.join(10)
    assert not hung, "the loader blocked on a special file"
    return outcome[0]


def meta_of(base: Path) -> dict:
    return json.loads((base / FILES["meta"]).read_text())


def write_meta(base: Path, meta: dict | str) -> None:
    (base / FILES["meta"]).write_text(meta if isinstance(meta, str) else json.dumps(meta))


# ---- special files ----

@pytest.mark.parametrize("which", ["meta", "tokenizer", "model"])
def test_a_fifo_is_refused_without_waiting(base, which):
    path = base / FILES[which]
    path.unlink()
    os.mkfifo(path)
    error = load_bounded(base, unblock=path)
    assert isinstance(error, CheckpointError)
    assert str(error).endswith("is a FIFO, not a regular file: refused") and str(path) in str(error)


@pytest.mark.parametrize("which", ["meta", "tokenizer", "model"])
def test_a_link_to_dev_zero_is_refused_without_reading_it(base, which):
    path = base / FILES[which]
    path.unlink()
    path.symlink_to("/dev/zero")
    error = load_bounded(base)
    assert isinstance(error, CheckpointError)
    assert "is a character device, not a regular file: refused" in str(error)


def test_links_to_regular_files_still_work(tmp_path):
    """A tag folder linked from elsewhere (a copy from a training box) is fine."""
    base = tmp_path / "base"
    (base / "chatsft_checkpoints").mkdir(parents=True)
    (base / "chatsft_checkpoints" / "d4").symlink_to(GEN5 / TAG)
    (base / "tokenizer").symlink_to(GEN5 / "tokenizer")
    assert load_chat_model(base_dir=base, device="cpu").info.step == 700


@pytest.mark.parametrize("which,cap", [("meta", "META_MAX_BYTES"), ("tokenizer", "TOKENIZER_MAX_BYTES")])
def test_oversized_files_are_refused_before_reading(base, which, cap):
    path = base / FILES[which]
    with open(path, "r+b") as f:  # sparse: costs no disk
        f.truncate(getattr(checkpoint_files, cap) + 1)
    error = load_bounded(base)
    assert isinstance(error, CheckpointError) and "a nanochat" in str(error) and "refused" in str(error)


def test_oversized_model_is_refused_before_reading(base, monkeypatch):
    monkeypatch.setattr(checkpoint_files, "MODEL_MAX_BYTES", 1000)
    error = load_bounded(base)
    assert isinstance(error, CheckpointError)
    assert "model file" in str(error) and "more than the 1.0 KB a nanochat model file can be" in str(error)


# ---- meta that asks for giant allocations, or that Python cannot parse ----

@pytest.mark.parametrize("key,value", [("sequence_len", 10**6), ("sequence_len", 10**8), ("n_layer", 10**5),
                                       ("vocab_size", 2**21), ("n_embd", 2**20)])
def test_meta_fields_are_bounded(base, key, value):
    meta = meta_of(base)
    meta["model_config"][key] = value
    write_meta(base, meta)
    error = load_bounded(base)
    assert isinstance(error, CheckpointError)
    bound = checkpoint_files.META_BOUNDS[key]
    assert f"model_config.{key} is {value}, above the {bound} this program accepts" in str(error)


def test_window_pattern_is_bounded(base):
    meta = meta_of(base)
    meta["model_config"]["window_pattern"] = "S" * 10_000
    write_meta(base, meta)
    error = load_bounded(base)
    assert isinstance(error, CheckpointError) and "window_pattern must be a string of at most 256" in str(error)


def test_a_5000_digit_integer_in_meta_is_one_line_naming_the_file(base):
    text = (base / FILES["meta"]).read_text()
    write_meta(base, text.replace('"step": 700', '"step": ' + "7" * 5000, 1))
    error = load_bounded(base)
    assert isinstance(error, CheckpointError)
    assert str(error) == f"cannot read {base / FILES['meta']}: a number with 5000 digits (at most 40 are accepted)"


def test_deeply_nested_meta_is_one_line_naming_the_file(base):
    write_meta(base, '{"model_config": {}, "x": ' + "[" * 100_000 + "]" * 100_000 + "}")
    error = load_bounded(base)
    assert isinstance(error, CheckpointError)
    assert str(error) == f"cannot read {base / FILES['meta']}: its JSON is nested too deeply"


# ---- tensors ----

def rewrite_state(base: Path, change) -> None:
    path = base / FILES["model"]
    state = torch.load(path, weights_only=True)
    change(state)
    torch.save(state, path)


def test_stride_zero_tensors_are_refused(base):
    """A small file whose tensors claim more elements than their storage holds."""
    def expand(state):
        w = state["lm_head.weight"]
        state["lm_head.weight"] = torch.zeros(1, dtype=w.dtype).expand(w.shape)

    rewrite_state(base, expand)
    error = load_bounded(base)
    assert isinstance(error, CheckpointError)
    assert "tensor 'lm_head.weight' of shape [576, 40] needs 92.2 KB but its storage holds 4 bytes" in str(error)


@pytest.mark.parametrize("dtype", [torch.int64, torch.bool, torch.complex64])
def test_non_float_weights_are_refused_with_the_reason(base, dtype):
    rewrite_state(base, lambda state: state.__setitem__("lm_head.weight", state["lm_head.weight"].to(dtype)))
    error = load_bounded(base)
    assert isinstance(error, CheckpointError)
    name = str(dtype).removeprefix("torch.")
    assert str(error) == (f"{base / FILES['model']}: tensor 'lm_head.weight' has dtype {name}; nanochat "
                          "weights are float32 or bfloat16 or float16: refused")
    assert "\t" not in str(error)


def test_shape_mismatch_is_one_line_with_its_reason(base):
    rewrite_state(base, lambda state: state.__setitem__("transformer.h.1.mlp.c_fc.weight", torch.zeros(8, 40)))
    error = load_bounded(base)
    assert isinstance(error, CheckpointError)
    text = str(error)
    assert "size mismatch for transformer.h.1.mlp.c_fc.weight" in text and "\t" not in text and "\n" not in text


def test_memory_is_checked_before_it_is_taken(base, monkeypatch):
    monkeypatch.setattr(checkpoint_files, "available_memory", lambda device: 100_000)
    error = load_bounded(base)
    assert isinstance(error, CheckpointError)
    assert str(error).startswith("this checkpoint needs ") and "; 100.0 KB available in memory" in str(error)


def test_memory_needed_counts_weights_rotary_and_kv():
    from nanochat_core.model import ModelConfig

    config = ModelConfig(sequence_len=2048, vocab_size=65536, n_layer=20, n_head=10, n_kv_head=10, n_embd=1280)
    state = {"w": torch.zeros(1).expand(1000, 1000)}  # only shapes are read
    need = checkpoint_files.memory_needed(state, config, 2)
    weights, rotary = 1_000_000 * 2, 10 * 2048 * 64 * 2 * (4 + 2)
    kv = 2 * 20 * 10 * 128 * 2048 * 2
    assert need == weights + rotary + kv
