"""Where nanochat-tui keeps its own files: the saved conversations and the settings file.

`$NANOCHAT_TUI_HOME` puts everything in one folder (handy for tests, portable installs and
several profiles); otherwise the platform's user dirs from platformdirs (on Linux
`~/.local/share/nanochat-tui` and `~/.config/nanochat-tui`, following XDG_* variables).
"""

from __future__ import annotations

import os
from pathlib import Path

APP = "nanochat-tui"
HISTORY_FILE = "history.sqlite3"
CONFIG_FILE = "config.toml"


def _home() -> Path | None:
    home = os.environ.get("NANOCHAT_TUI_HOME")
    return Path(home).expanduser() if home else None


def data_dir() -> Path:
    home = _home()
    if home is not None:
        return home
    import platformdirs

    return Path(platformdirs.user_data_dir(APP, appauthor=False))


def config_dir() -> Path:
    home = _home()
    if home is not None:
        return home
    import platformdirs

    return Path(platformdirs.user_config_dir(APP, appauthor=False))


def history_path() -> Path:
    """The default conversations database (--history-db overrides it)."""
    return data_dir() / HISTORY_FILE


def config_path() -> Path:
    return config_dir() / CONFIG_FILE
