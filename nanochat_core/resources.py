"""Where bundled data lives: inside the package in a wheel, at the checkout's top otherwise."""

from __future__ import annotations

from pathlib import Path

_HERE = Path(__file__).resolve().parent


def assets_dir() -> Path:
    """The bundled assets (demo model). `nanochat_core/_assets` in a wheel, `assets/` in a checkout."""
    packaged = _HERE / "_assets"
    return packaged if packaged.is_dir() else _HERE.parent / "assets"


def demo_model_dir() -> Path:
    """A nanochat base dir holding the demo model (tokenizer/ + chatsft_checkpoints/)."""
    return assets_dir() / "demo"
