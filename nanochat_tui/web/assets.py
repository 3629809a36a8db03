"""Where the browser files live: `nanochat_tui/_web` in a wheel, the checkout's `web/` otherwise.

`web/` is deliberately not a Python package (no __init__.py): the wheel ships it inside
nanochat_tui as the data folder `_web` (pyproject force-include), so no generic top-level `web`
module is ever installed. This package (`nanochat_tui/web/`, the server) and that data folder
(`nanochat_tui/_web/`, the page) are two different names.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

_TUI_PACKAGE = Path(__file__).resolve().parent.parent  # nanochat_tui/


def web_dir() -> Path:
    packaged = _TUI_PACKAGE / "_web"
    return packaged if packaged.is_dir() else _TUI_PACKAGE.parent / "web"


def templates_dir() -> Path:
    return web_dir() / "templates"


def static_dir() -> Path:
    return web_dir() / "static"


def static_version() -> str:
    """A short hash of the static files, appended to their URLs so browsers never run stale JS."""
    digest = hashlib.sha256()
    root = static_dir()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        digest.update(path.relative_to(root).as_posix().encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:12]
