"""The settings file: defaults for the terminal chat modes (the full-screen app, --plain, -p).

One TOML file at `paths.config_path()` ($NANOCHAT_TUI_HOME/config.toml, else the platform's user
config dir, e.g. ~/.config/nanochat-tui/config.toml). Every key is optional; flags given on the
command line win over it. Values go through the one rulebook (nanochat_core.chat), so a bad
value gets the same words as the flag, plus the file and the key:

    nanochat-tui: error: ~/.config/nanochat-tui/config.toml: top_k: top-k must be between 0 and 200

The app writes to the file only when the user asks (a theme chosen, "Save as defaults" in the
settings screen), changing just the lines of those keys: comments and the rest stay as written.

No Textual / torch import (the CLI reads this before choosing a mode).
"""

from __future__ import annotations

import json
import os
import tempfile
import tomllib
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Callable

from nanochat_core.chat import ValidationError, check_max_tokens, check_temperature, check_top_k
from nanochat_core.errors import NanochatError

from .commands import terminal_words
from .paths import config_path


class SettingsError(NanochatError):
    """The settings file cannot be used; one line naming the file and the key."""


def _text(value: Any) -> str:
    if not isinstance(value, str):
        raise ValidationError("must be a string")
    return value


def _system(value: Any) -> str | None:
    text = _text(value)
    return text if text.strip() else None


def _folder(value: Any) -> str:
    text = _text(value)
    if not text.strip():
        raise ValidationError("must name a folder")
    return os.path.expanduser(text)


def _folders(value: Any) -> tuple[str, ...]:
    if not isinstance(value, list):
        raise ValidationError('must be a list of folders, e.g. ["~/models"]')
    return tuple(_folder(item) for item in value)


def _theme(value: Any) -> str:
    text = _text(value).strip()
    if not text:
        raise ValidationError("must name a theme")
    return text


def _flag(value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValidationError("must be true or false")
    return value


# key -> (how to check it, what it is): the file's whole vocabulary.
KEYS: dict[str, tuple[Callable[[Any], Any], str]] = {
    "temperature": (check_temperature, "0.0-2.0; 0 = greedy (like -t)"),
    "top_k": (check_top_k, "0-200; 0 = the full vocabulary (like -k)"),
    "max_tokens": (check_max_tokens, "1-4096 tokens per reply (like -m)"),
    "system": (_system, "a system message for every new conversation (like --system)"),
    "model_dir": (_folder, "the nanochat base dir (like --model-dir)"),
    "model_dirs": (_folders, "more folders with checkpoints, for the model list"),
    "theme": (_theme, "the full-screen app's color theme (Ctrl+P, Theme)"),
    "history": (_flag, "save conversations (false: like --no-history)"),
}


@dataclass(frozen=True)
class Settings:
    """What the file says (None: not set, the built-in default applies)."""

    temperature: float | None = None
    top_k: int | None = None
    max_tokens: int | None = None
    system: str | None = None
    model_dir: str | None = None
    model_dirs: tuple[str, ...] = ()
    theme: str | None = None
    history: bool | None = None
    path: Path | None = field(default=None, compare=False)  # the file read (None: there is none)

    def values(self) -> dict[str, Any]:
        """The keys that are set."""
        out = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name != "path" and value not in (None, ()):
                out[f.name] = value
        return out


def _shown(path: Path) -> str:
    home = str(Path.home())
    text = str(path)
    return "~" + text[len(home):] if home not in ("", "/") and text.startswith(home + os.sep) else text


def parse(text: str, where: str) -> Settings:
    """Settings from TOML text; SettingsError names `where` and the key at fault."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise SettingsError(f"{where}: not valid TOML: {e}") from None
    values: dict[str, Any] = {}
    for key, value in data.items():
        if key not in KEYS:
            known = ", ".join(KEYS)
            raise SettingsError(f"{where}: unknown key {key!r} (known keys: {known})")
        check, _ = KEYS[key]
        try:
            values[key] = check(value)
        except ValidationError as e:
            raise SettingsError(f"{where}: {key}: {terminal_words(str(e))}") from None
    return Settings(**values)


def load(path: Path | None = None) -> Settings:
    """The settings file (an absent file: all defaults). SettingsError when it cannot be used."""
    path = path or config_path()
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return Settings()
    except UnicodeDecodeError:
        raise SettingsError(f"{_shown(path)}: not UTF-8 text") from None
    except OSError as e:
        raise SettingsError(f"cannot read {_shown(path)}: {e.strerror or e}") from None
    return replace(parse(text, _shown(path)), path=path)


# ---- writing ----

TEMPLATE = """\
# nanochat-tui settings: defaults for the terminal chat (the full-screen app, --plain and -p).
# Flags on the command line win over these. Remove the # in front of a line to use it.
# `nanochat-tui config show` prints what applies; a mistake here is one error line naming the key.

# temperature = 0.6               # 0.0-2.0; 0 = greedy
# top_k = 50                      # 0-200; 0 = the full vocabulary
# max_tokens = 256                # 1-4096 tokens per reply
# system = "Be concise."          # a system message for every new conversation
# model_dir = "~/.cache/nanochat" # the nanochat base dir (like --model-dir)
# model_dirs = ["~/models"]       # more folders with checkpoints, for the model list
# theme = "textual-dark"          # the full-screen app's color theme (Ctrl+P, Theme)
# history = true                  # save conversations (false: like --no-history)
"""


def toml_value(value: Any) -> str:
    """A value as TOML (JSON's string escapes are valid TOML basic-string escapes)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    raise TypeError(f"cannot write {type(value).__name__} to TOML")


def _assignment_span(lines: list[str], key: str) -> tuple[int, int] | None:
    """Where `key = …` sits among the top-level lines: (first, last) line indexes, the value
    possibly spanning lines (a multi-line string or array); None if the key is not set."""
    for i, line in enumerate(lines):
        stripped = line.strip()
        if stripped.startswith("["):
            return None  # a table starts: top-level keys end here
        if not stripped.startswith(key):
            continue
        rest = stripped[len(key):].lstrip()
        if not rest.startswith("="):
            continue
        for j in range(i, len(lines)):
            try:
                if key in tomllib.loads("".join(lines[i:j + 1])):
                    return i, j
            except tomllib.TOMLDecodeError:
                continue
        return None
    return None


def save_values(changes: dict[str, Any], path: Path | None = None) -> Path:
    """Set (or, with None, remove) keys in the settings file, keeping everything else as written.
    Creates the file from the template when there is none. Returns its path."""
    path = path or config_path()
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        text = TEMPLATE
    except OSError as e:
        raise SettingsError(f"cannot read {_shown(path)}: {e.strerror or e}") from None
    lines = text.splitlines(keepends=True)
    if lines and not lines[-1].endswith("\n"):
        lines[-1] += "\n"
    for key, value in changes.items():
        if key not in KEYS:
            raise SettingsError(f"unknown settings key {key!r}")
        span = _assignment_span(lines, key)
        new = [] if value is None else [f"{key} = {toml_value(value)}\n"]
        if span is not None:
            lines[span[0]:span[1] + 1] = new
        elif new:
            # before the first table, else at the end
            at = next((i for i, line in enumerate(lines) if line.strip().startswith("[")), len(lines))
            lines[at:at] = new
    result = "".join(lines)
    parse(result, _shown(path))  # never write a file this module would refuse
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".config-", suffix=".toml", dir=path.parent)
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(result)
        os.replace(tmp, path)
    except OSError as e:
        raise SettingsError(f"cannot write {_shown(path)}: {e.strerror or e}") from None
    return path


def ensure_file(path: Path | None = None) -> tuple[Path, bool]:
    """The settings file, created from the commented template if missing. (path, created)."""
    path = path or config_path()
    if path.exists():
        return path, False
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(TEMPLATE, encoding="utf-8")
    except OSError as e:
        raise SettingsError(f"cannot create {_shown(path)}: {e.strerror or e}") from None
    return path, True


def shown_path(path: Path | None = None) -> str:
    """The settings file's path as people read it (~ for the home folder)."""
    return _shown(path or config_path())
