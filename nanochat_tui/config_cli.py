"""`nanochat-tui config`: the settings file from the command line.

    nanochat-tui config path     where the file is (whether or not it exists yet)
    nanochat-tui config show     what applies: each key, its value, and whether the file set it
    nanochat-tui config edit     open it in $VISUAL / $EDITOR (created from a commented template)

Errors raise; cli.main prints them (one line, exit 2). A broken file never stops `path` or `edit`:
they are how it gets fixed.
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import subprocess
import sys

from nanochat_core.text import one_line

from . import settings as settings_file
from .cli_options import PROG, Parser, UsageError
from .console import say
from .paths import config_path

# What applies when the file leaves a key out (the terminal modes' built-in defaults).
BUILT_IN = {
    "temperature": 0.6, "top_k": 50, "max_tokens": 256, "system": None,
    "model_dir": "$NANOCHAT_BASE_DIR, else ~/.cache/nanochat", "model_dirs": [],
    "theme": "textual-dark", "history": True,
}
FALLBACK_EDITORS = ("editor", "nano", "vi")


def build_parser() -> argparse.ArgumentParser:
    p = Parser(prog=f"{PROG} config",
               description="The settings file: defaults for the terminal chat (see README 'Settings').")
    p.add_argument("--debug", action="store_true", help=argparse.SUPPRESS)
    sub = p.add_subparsers(dest="action", metavar="ACTION", parser_class=Parser)
    sub.required = True
    sub.add_parser("path", help="print where the settings file is")
    sub.add_parser("show", help="print the settings that apply and where each comes from")
    sub.add_parser("edit", help="open the settings file in $VISUAL / $EDITOR (created if missing)")
    return p


def run(args: argparse.Namespace) -> int:
    if args.action == "path":
        print(config_path())
        return 0
    if args.action == "show":
        return _show()
    return _edit()


def _show() -> int:
    current = settings_file.load()
    where = settings_file.shown_path()
    print(f"# {where}" + ("" if current.path is not None else " (not created yet: every value is the default)"))
    values = current.values()
    for key, (_, meaning) in settings_file.KEYS.items():
        if key in values:
            print(f"{key} = {one_line(settings_file.toml_value(values[key]))}  # set in the file")
            continue
        default = BUILT_IN[key]
        shown = "(none)" if default is None else (default if isinstance(default, str) and "$" in default
                                                  else settings_file.toml_value(default))
        print(f"# {key} = {shown}  # default: {meaning}")
    return 0


def _editor() -> list[str]:
    for variable in ("VISUAL", "EDITOR"):
        value = os.environ.get(variable, "").strip()
        if value:
            return shlex.split(value)
    for name in FALLBACK_EDITORS:
        if shutil.which(name):
            return [name]
    raise UsageError("no editor found: set $EDITOR (e.g. EDITOR=nano), or edit "
                     f"{settings_file.shown_path()} yourself")


def _edit() -> int:
    path, created = settings_file.ensure_file()
    if created:
        say(f"created {settings_file.shown_path(path)} (every line commented out)", sys.stderr)
    command = _editor() + [str(path)]
    try:
        status = subprocess.call(command)
    except OSError as e:
        raise UsageError(f"cannot start the editor {command[0]!r}: {e.strerror or e} (set $EDITOR)") from None
    if status != 0:
        raise UsageError(f"the editor {command[0]!r} exited with status {status}")
    settings_file.load(path)  # a mistake is reported now, naming the key, rather than at the next start
    say(f"{settings_file.shown_path(path)} is valid", sys.stderr)
    return 0
