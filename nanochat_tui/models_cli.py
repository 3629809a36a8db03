"""`nanochat-tui models`: every checkpoint this machine has (nanochat_core.catalog), as a table
or, with --json, one JSON array for scripts.

A subcommand of cli.py (SUBCOMMANDS): `build_parser()` and `run(args)`, which raises its errors
for cli.main to print. The model flags are the shared ones (cli_options.add_model_flags):
--model-dir names the base dir to list, -i/-g/-s filter, --hf lists one Hub repo's checkpoints
(asked of the Hub, nothing downloaded).
"""

from __future__ import annotations

import argparse
import json
import sys

from nanochat_core.text import one_line

from .cli_options import PROG, Parser, UsageError, add_model_flags
from .console import say

EPILOG = """\
Looks in: the base dir (--model-dir, else the settings file's model_dir, else $NANOCHAT_BASE_DIR,
else ~/.cache/nanochat), the settings file's model_dirs, each --dir folder, nanochat repos in the
Hugging Face cache ($HF_HOME), then the bundled demo model (last). The full-screen app's /model
lists the same. Any layout works (docs/checkpoints.md). Load one with --model-dir WHERE (or
--hf REPO) -s STEP, or pick it with /model in the app.

examples:
  nanochat-tui models
  nanochat-tui models --json | jq '.[0]'
  nanochat-tui models --hf karpathy/nanochat-d32     # what a Hub repo holds, nothing downloaded
"""

COLUMNS = ("STAGE", "TAG", "STEP", "GENERATION", "PARAMS", "SIZE", "WHERE")


def build_parser() -> argparse.ArgumentParser:
    p = Parser(prog=f"{PROG} models", description="List the nanochat checkpoints this machine has.",
               epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--json", action="store_true", help="one JSON array of entries on stdout")
    p.add_argument("--dir", dest="dirs", action="append", default=[], metavar="DIR",
                   help="also list this folder (any layout); repeatable")
    p.add_argument("--debug", action="store_true", help="show tracebacks instead of one-line errors")
    add_model_flags(p)
    return p


def _params(n: int | None) -> str:
    if n is None:
        return "?"
    return f"{n / 1e9:.2f}B" if n >= 1e9 else f"{n / 1e6:.1f}M" if n >= 1e5 else f"{n / 1e3:.0f}K"


def run(args: argparse.Namespace) -> int:
    for name, flag in (("device_type", "--device-type"), ("dtype", "-d/--dtype"), ("softcap", "--softcap")):
        if getattr(args, name) is not None:
            raise UsageError(f"{flag} is for loading a model; `models` only lists them")
    if args.hf is not None and (args.model_dir is not None or args.dirs):
        raise UsageError("--hf lists one Hub repo: leave out --model-dir and --dir")
    if args.hf is not None:
        entries = _hub_entries(args.hf)
    else:
        from nanochat_core.catalog import list_models

        from .settings import load

        settings = load()  # its folders, as the chat modes (and so the app's /model) use them
        base = args.model_dir if args.model_dir is not None else settings.model_dir
        entries = [e.to_json() for e in list_models(base, [*settings.model_dirs, *args.dirs])]
    entries = [e for e in entries
               if (args.source is None or e["stage"] == args.source)
               and (args.model_tag is None or e["tag"] == args.model_tag)
               and (args.step is None or e["step"] == args.step)]
    if args.json:
        print(json.dumps(entries, indent=2))
        return 0
    _print_table(entries)
    return 0


def _hub_entries(spec: str) -> list[dict]:
    """One repo's checkpoints from its file list (asked of the Hub, or the cache offline)."""
    from nanochat_core.hub import parse_repo_spec, read_repo, scan_repo

    repo, revision = parse_repo_spec(spec)
    commit, files, _offline = read_repo(repo, revision, lambda line: say(line, sys.stderr))
    s = scan_repo(repo, files)
    rows = []
    for folder in s.folders:
        for step in folder.steps:
            rows.append({
                "kind": "hf", "stage": folder.stage, "tag": folder.tag, "step": step, "generation": None,
                "params": None, "size_bytes": None, "where": f"hf:{repo}@{revision}",
                "model_path": folder.model_rel(step).as_posix(), "meta_path": folder.meta_rel(step).as_posix(),
                "tokenizer_path": folder.tokenizer.as_posix() if folder.tokenizer else None,
                "layout": s.layout, "hf_repo": repo, "hf_revision": revision, "hf_commit": commit,
                "problem": None if folder.tokenizer else "no tokenizer found", "demo": False,
            })
    if not rows:
        from nanochat_core.checkpoints import LOOKED_FOR, describe_scan

        raise UsageError(f"no nanochat checkpoint in hf:{spec}: looked for {LOOKED_FOR}; found {describe_scan(s)}")
    return rows


def row_cells(e: dict) -> tuple[str, ...]:
    """One entry (`CatalogEntry.to_json()`) as the cells under COLUMNS, sanitized (so widths are
    right): this table and the full-screen app's model picker describe entries alike."""
    from nanochat_core.checkpoint_files import human_bytes

    where = e["where"] + (" (demo model)" if e["demo"] else "")
    if e.get("problem"):
        where += f"  [cannot load: {e['problem']}]"
    cells = (e["stage"] or "?", e["tag"], str(e["step"]), e["generation"] or "?", _params(e["params"]),
             human_bytes(e["size_bytes"]) if e["size_bytes"] is not None else "?", where)
    return tuple(one_line(c) for c in cells)


def _print_table(entries: list[dict]) -> None:
    if not entries:
        say("no checkpoints found (see nanochat-tui models --help for where it looks)", sys.stderr)
        return
    rows = [row_cells(e) for e in entries]
    widths = [max(len(COLUMNS[i]), *(len(r[i]) for r in rows)) for i in range(len(COLUMNS) - 1)]
    for row in (COLUMNS, *rows):
        say("  ".join(cell.ljust(w) for cell, w in zip(row, widths)) + "  " + row[-1])
