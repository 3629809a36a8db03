"""Finding, checking and loading nanochat checkpoints (nanochat-format.md §1-§3, §9.3, §10).

Everything a user can get wrong (a missing directory, a typo in a tag, a truncated or hostile
file) ends in a `CheckpointError` whose message is one line naming what was looked for and what
exists. Loading never executes code from the files: `torch.load(weights_only=True)` for weights
and the restricted unpickler in tokenizer.py for the tokenizer.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

from .errors import NanochatError

SOURCE_DIRS = {
    "base": ("base_checkpoints",),
    # sft_checkpoints: chat_sft wrote there for one day (2026-01-31, nanochat 1ddaad1).
    "sft": ("chatsft_checkpoints", "sft_checkpoints"),
    "rl": ("chatrl_checkpoints",),
    "mid": ("mid_checkpoints",),  # midtraining existed until 2026-01-31
}
MODEL_FILE = re.compile(r"^model_(\d+)\.pt$")
TAG_DEPTH = re.compile(r"^d(\d+)")  # prefix match, so "d12-long" counts as depth 12
COMPILED_PREFIX = "_orig_mod."

Progress = Callable[[str], None]


class CheckpointError(NanochatError):
    """A user-facing problem with finding or loading a checkpoint. `str()` is one line."""


@dataclass(frozen=True)
class CheckpointLocation:
    base_dir: Path
    source: str
    tag_dir: Path
    model_tag: str
    step: int

    @property
    def model_path(self) -> Path:
        return self.tag_dir / f"model_{self.step:06d}.pt"

    @property
    def meta_path(self) -> Path:
        return self.tag_dir / f"meta_{self.step:06d}.json"

    @property
    def tokenizer_path(self) -> Path:
        return self.base_dir / "tokenizer" / "tokenizer.pkl"


def default_base_dir() -> Path:
    env = os.environ.get("NANOCHAT_BASE_DIR")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "nanochat"


def _steps_in(tag_dir: Path) -> list[int]:
    try:
        names = os.listdir(tag_dir)
    except OSError:
        return []
    return sorted(int(m.group(1)) for n in names if (m := MODEL_FILE.match(n)))


def _subdirs(path: Path) -> list[Path]:
    try:
        return [p for p in path.iterdir() if p.is_dir()]
    except OSError:
        return []


def _guess_tag(source_dir: Path) -> Path | None:
    """nanochat's rule: the largest dNN tag, else the most recently modified sub-directory."""
    dirs = _subdirs(source_dir)
    if not dirs:
        return None
    with_depth = [(int(m.group(1)), d) for d in dirs if (m := TAG_DEPTH.match(d.name))]
    if with_depth:
        return max(with_depth, key=lambda pair: pair[0])[1]
    return max(dirs, key=lambda d: d.stat().st_mtime)


def describe_available(base_dir: Path) -> str:
    """What checkpoints exist under base_dir, e.g. `sft: d20 (steps 700, 800); base: d20 (21400)`."""
    found = []
    for source, dirnames in SOURCE_DIRS.items():
        for dirname in dirnames:
            tags = []
            for tag_dir in sorted(_subdirs(base_dir / dirname)):
                steps = _steps_in(tag_dir)
                tags.append(f"{tag_dir.name} (steps {', '.join(map(str, steps))})" if steps else f"{tag_dir.name} (no model_*.pt)")
            if tags:
                found.append(f"{source} [{dirname}]: {'; '.join(tags)}")
    return " | ".join(found) if found else "no checkpoints at all"


def find_checkpoint(base_dir: Path, source: str = "sft", model_tag: str | None = None,
                    step: int | None = None) -> CheckpointLocation:
    """Resolve source / tag / step as nanochat does. Raises CheckpointError naming what exists."""
    if source not in SOURCE_DIRS:
        raise CheckpointError(f"unknown source {source!r}: choose base, sft or rl")
    candidates = [base_dir / d for d in SOURCE_DIRS[source]]
    source_dir = next((d for d in candidates if _subdirs(d)), None)
    if source_dir is None:
        raise CheckpointError(
            f"no {source} checkpoints in {candidates[0]} (found: {describe_available(base_dir)})"
        )
    if model_tag is not None:
        tag_dir = source_dir / model_tag
        if not tag_dir.is_dir():
            tags = ", ".join(sorted(d.name for d in _subdirs(source_dir)))
            raise CheckpointError(f"no model tag {model_tag!r} in {source_dir} (tags present: {tags})")
    else:
        tag_dir = _guess_tag(source_dir)
        assert tag_dir is not None
    steps = _steps_in(tag_dir)
    if not steps:
        raise CheckpointError(f"no model_<step>.pt files in {tag_dir}")
    if step is None:
        step = steps[-1]
    elif step not in steps:
        raise CheckpointError(
            f"no step {step} in {tag_dir} (steps present: {', '.join(map(str, steps))})"
        )
    return CheckpointLocation(base_dir, source, tag_dir, tag_dir.name, step)


# ---------------------------------------------------------------------------------------------
# Reading the files


def read_model_config(meta_path: Path):
    """meta_<step>.json -> ModelConfig, with every field checked."""
    from .model import ModelConfig

    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CheckpointError(f"missing metadata file {meta_path}") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CheckpointError(f"cannot read {meta_path}: {e}") from None
    cfg = meta.get("model_config") if isinstance(meta, dict) else None
    if not isinstance(cfg, dict):
        raise CheckpointError(f"{meta_path} has no model_config object")
    fields = {}
    for key in ("sequence_len", "vocab_size", "n_layer", "n_head", "n_kv_head", "n_embd"):
        value = cfg.get(key)
        if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
            raise CheckpointError(f"{meta_path}: model_config.{key} must be a positive integer, got {value!r}")
        fields[key] = value
    pattern = cfg.get("window_pattern")
    if pattern is not None and (not isinstance(pattern, str) or not re.fullmatch(r"[SsLl]+", pattern)):
        raise CheckpointError(f"{meta_path}: window_pattern must be a string of S and L, got {pattern!r}")
    config = ModelConfig(window_pattern=pattern, **fields)
    if config.n_embd % config.n_head or config.head_dim % 2:
        raise CheckpointError(f"{meta_path}: n_embd {config.n_embd} does not split into {config.n_head} heads of even size")
    if config.n_head % config.n_kv_head:
        raise CheckpointError(f"{meta_path}: n_head {config.n_head} is not a multiple of n_kv_head {config.n_kv_head}")
    return config


def _load_failure(model_path: Path, e: Exception) -> str:
    """torch.load's reason in one short line: the kind of damage, not torch's paragraph."""
    import zipfile

    text = " ".join(str(e).split()) or type(e).__name__
    # torch.save writes a zip archive; a cut-off file fails in many ways ("Invalid argument",
    # "failed finding central directory"), all of which mean the same to a user.
    if "central directory" in text or "zip archive" in text or not zipfile.is_zipfile(model_path):
        return "the file is truncated or not a PyTorch checkpoint (its zip archive cannot be read)"
    if "Weights only load failed" in text:
        return "it holds objects other than tensors, which are never unpickled here (weights_only=True)"
    first = text.split(". ")[0]
    return first if len(first) <= 200 else first[:199] + "…"


def read_state_dict(model_path: Path) -> dict:
    """torch.load with weights_only=True (no code runs), then strip torch.compile's prefix."""
    import torch

    try:
        state = torch.load(model_path, map_location="cpu", weights_only=True, mmap=True)
    except FileNotFoundError:
        raise CheckpointError(f"missing model file {model_path}") from None
    except Exception as e:
        raise CheckpointError(f"cannot load {model_path}: {_load_failure(model_path, e)}") from None
    if not isinstance(state, dict) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()
    ):
        raise CheckpointError(f"{model_path} is not a state dict of tensors")
    # A real prefix removal (nanochat once used lstrip, which strips a character set).
    return {k.removeprefix(COMPILED_PREFIX): v for k, v in state.items()}


def detect_generation(state: dict) -> str:
    """nanochat-format.md §9.3, applied in order."""
    if "smear_gate.weight" in state:
        return "gen5-smear-backout"
    gates = [v for k, v in state.items() if k.startswith("transformer.h.") and k.endswith(".attn.ve_gate.weight")]
    if gates:
        if gates[0].shape[1] == 12:
            return "gen4-rope100k-qkscale"
        return "gen3-engram" if "bigram_embed.embed.weight" in state else "gen3-value-embeds"
    if "v0_lambdas" in state:
        if "value_embed_A.weight" in state:
            return "gen3-proto-lowrank-ve"
        if "value_embed.weight" in state:
            return "gen3-proto-single-ve"
        return "gen3-proto-perlayer-ve"
    if "resid_lambdas" in state:
        return "gen2-resid-x0-lambdas"
    return "gen1-original"


def _check_shapes(state: dict, config, path: Path) -> int:
    """Cross-check the meta against the tensors; return the embedding's row count."""
    wte = state.get("transformer.wte.weight")
    if wte is None or wte.ndim != 2:
        raise CheckpointError(f"{path} has no transformer.wte.weight matrix: not a nanochat checkpoint")
    layers = {int(m.group(1)) for k in state if (m := re.match(r"transformer\.h\.(\d+)\.", k))}
    if len(layers) != config.n_layer:
        raise CheckpointError(f"{path} has {len(layers)} layers but its meta says n_layer {config.n_layer}")
    rows, width = wte.shape
    if width != config.n_embd:
        raise CheckpointError(f"{path}: embedding width {width} but meta n_embd {config.n_embd}")
    if rows < config.vocab_size:
        raise CheckpointError(f"{path}: embedding has {rows} rows, fewer than vocab_size {config.vocab_size}")
    c_k = state.get("transformer.h.0.attn.c_k.weight")
    if c_k is not None and c_k.shape[0] != config.n_kv_head * config.head_dim:
        raise CheckpointError(
            f"{path}: key projection has {c_k.shape[0]} rows, expected n_kv_head {config.n_kv_head} x head_dim {config.head_dim}"
        )
    return rows


def build_model(state: dict, config, generation: str, softcap: float | None, path: Path):
    """Construct the detected generation's model and load the weights strictly."""
    import torch

    from .model import GENERATIONS, GPT

    arch = GENERATIONS[generation]
    if softcap is not None:
        arch = replace(arch, softcap=float(softcap))
    rows = _check_shapes(state, config, path)
    with torch.device("meta"):  # no wasted random init; real tensors come from the file
        model = GPT(config, arch, vocab_rows=rows)
    expected = set(model.state_dict().keys())
    missing, unexpected = sorted(expected - state.keys()), sorted(state.keys() - expected)
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"missing {', '.join(missing[:4])}{' …' if len(missing) > 4 else ''}")
        if unexpected:
            parts.append(f"unexpected {', '.join(unexpected[:4])}{' …' if len(unexpected) > 4 else ''}")
        raise CheckpointError(f"{path} does not match a {generation} model: {'; '.join(parts)}")
    try:
        model.load_state_dict(state, strict=True, assign=True)
    except RuntimeError as e:
        raise CheckpointError(f"{path}: {str(e).strip().splitlines()[-1][:200]}") from None
    model.refresh_rotary(torch.float32)  # the tables were built on the meta device
    return model
