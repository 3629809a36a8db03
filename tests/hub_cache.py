"""Build a Hugging Face hub cache on disk the way huggingface_hub lays it out, from local files,
so --hf runs against it with HF_HUB_OFFLINE=1 and never touches the network
(shared testing.md, "huggingface_hub offline"):

    $HF_HOME/hub/models--OWNER--NAME/
        refs/main                      the commit a branch points to
        snapshots/<commit>/<path>      relative links into blobs/
        blobs/<sha256>                 the file contents
"""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

from conftest import FIXTURES

GEN5 = FIXTURES / "gen5-smear-backout" / "base_dir"
GEN1 = FIXTURES / "gen1-original" / "base_dir"


def add_snapshot(hf_home: Path, repo: str, files: dict[str, Path | bytes], commit: str,
                 refs: tuple[str, ...] = ("main",)) -> Path:
    """Add a snapshot of `repo` at `commit` holding `files` (repo path -> source file or bytes);
    point each of `refs` at it. Returns the snapshot folder."""
    folder = hf_home / "hub" / ("models--" + repo.replace("/", "--"))
    blobs = folder / "blobs"
    blobs.mkdir(parents=True, exist_ok=True)
    snapshot = folder / "snapshots" / commit
    for rel, src in files.items():
        data = src if isinstance(src, bytes) else Path(src).read_bytes()
        digest = hashlib.sha256(data).hexdigest()
        blob = blobs / digest
        if not blob.exists():
            blob.write_bytes(data)
        link = snapshot / rel
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(os.path.relpath(blob, link.parent))
    for ref in refs:
        path = folder / "refs" / ref
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(commit)
    return snapshot


def flat_files(base: Path = GEN5, prefix: str = "", step: int = 700, as_step: int | None = None) -> dict[str, Path]:
    """A published repo's flat layout: model/meta/tokenizer side by side under `prefix`."""
    tag = base / "chatsft_checkpoints" / "d4"
    s = as_step if as_step is not None else step
    return {
        f"{prefix}model_{s:06d}.pt": tag / f"model_{step:06d}.pt",
        f"{prefix}meta_{s:06d}.json": tag / f"meta_{step:06d}.json",
        f"{prefix}tokenizer.pkl": base / "tokenizer" / "tokenizer.pkl",
    }


def copy_tree(src: Path, dest: Path) -> Path:
    shutil.copytree(src, dest)
    return dest
