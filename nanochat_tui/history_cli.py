"""`nanochat-tui history`: the saved conversations from the command line.

    nanochat-tui history list [-n N] [--json]
    nanochat-tui history show ID                      Markdown on stdout
    nanochat-tui history export ID|--all [--format md|json] [-o FILE]
    nanochat-tui history search TEXT [--json]
    nanochat-tui history rename ID TITLE
    nanochat-tui history delete ID [--yes]
    nanochat-tui history import FILE                  a JSON export (docs/conversation-format.md)
    nanochat-tui history path                         where the database is

ID is the number `list` shows (or a prefix of the conversation's uid). Errors raise; cli.main
prints them. Titles and messages are outside text: sanitized on a terminal.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from nanochat_core.history import (
    HistoryStore,
    HistoryUnavailable,
    Summary,
    export_json,
    export_markdown,
)
from nanochat_core.text import one_line, sanitize_for_terminal

from .cli_options import PROG, Parser, UsageError
from .config import HistorySettings
from .console import say


def build_parser() -> argparse.ArgumentParser:
    p = Parser(prog=f"{PROG} history", description="Saved conversations (one SQLite file; see README 'History').")
    p.add_argument("--history-db", default=None, metavar="PATH",
                   help="the conversations database (default: $NANOCHAT_TUI_HOME/history.sqlite3, else the user data dir)")
    p.add_argument("--debug", action="store_true", help=argparse.SUPPRESS)
    sub = p.add_subparsers(dest="action", metavar="ACTION", parser_class=Parser)
    sub.required = True
    ls = sub.add_parser("list", help="conversations, newest first")
    ls.add_argument("-n", "--limit", type=int, default=None, help="at most N")
    ls.add_argument("--json", action="store_true", help="one JSON array (id, uid, title, messages, model, created, updated)")
    show = sub.add_parser("show", help="a conversation as Markdown")
    show.add_argument("id", metavar="ID")
    ex = sub.add_parser("export", help="one conversation, or all, as Markdown or JSON")
    ex.add_argument("id", metavar="ID", nargs="?")
    ex.add_argument("--all", action="store_true", help="every conversation")
    ex.add_argument("--format", choices=["md", "json"], default="json", help="json (default; every branch) or md")
    ex.add_argument("-o", "--output", metavar="FILE", default=None, help="write to FILE instead of stdout")
    se = sub.add_parser("search", help="conversations whose title or messages contain TEXT")
    se.add_argument("text", metavar="TEXT")
    se.add_argument("--json", action="store_true")
    rn = sub.add_parser("rename", help="give a conversation a title")
    rn.add_argument("id", metavar="ID")
    rn.add_argument("title", metavar="TITLE")
    rm = sub.add_parser("delete", help="delete a conversation")
    rm.add_argument("id", metavar="ID")
    rm.add_argument("-y", "--yes", action="store_true", help="do not ask (needed when stdin is not a terminal)")
    im = sub.add_parser("import", help="add conversations from a JSON export")
    im.add_argument("file", metavar="FILE")
    sub.add_parser("path", help="print where the database is")
    return p


def _open(args: argparse.Namespace) -> HistoryStore:
    return HistoryStore.open(HistorySettings(path=args.history_db).db_path)


def _ago(t: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(t))


def _print_list(rows: list[Summary], as_json: bool) -> None:
    if as_json:
        print(json.dumps([{"id": r.id, "uid": r.uid, "title": r.title, "messages": r.messages,
                           "model": r.model, "created": r.created, "updated": r.updated} for r in rows],
                         ensure_ascii=False, indent=2))
        return
    if not rows:
        say("no saved conversations", sys.stderr)
        return
    width = max(len(str(r.id)) for r in rows)
    for r in rows:
        model = f" · {r.model}" if r.model else ""
        say(f"{str(r.id).rjust(width)}  {_ago(r.updated)}  {r.messages:>3} msgs{model}  {one_line(r.title, 80)}")


def _write(text: str, output: str | None) -> None:
    if output is not None:
        try:
            Path(output).expanduser().write_text(text, encoding="utf-8")
        except OSError as e:
            raise UsageError(f"cannot write {output}: {e.strerror or e}") from None
        say(f"wrote {output}", sys.stderr)
        return
    sys.stdout.write(sanitize_for_terminal(text) if sys.stdout.isatty() else text)
    sys.stdout.flush()


def run(args: argparse.Namespace) -> int:
    if args.action == "path":
        print(HistorySettings(path=args.history_db).db_path)
        return 0
    store = _open(args)
    try:
        return _run(args, store)
    finally:
        store.close()


def _run(args: argparse.Namespace, store: HistoryStore) -> int:
    if args.action == "list":
        if args.limit is not None and args.limit < 1:
            raise UsageError("--limit must be at least 1")
        _print_list(store.list(args.limit), args.json)
    elif args.action == "search":
        _print_list(store.search(args.text), args.json)
    elif args.action == "show":
        _write(export_markdown(store.load(store.resolve(args.id))), None)
    elif args.action == "export":
        if args.all == (args.id is not None):
            raise UsageError("history export needs one conversation ID, or --all")
        ids = list(store.all_ids()) if args.all else [store.resolve(args.id)]
        conversations = [store.load(i) for i in ids]
        if args.format == "md":
            text = "\n---\n\n".join(export_markdown(c) for c in conversations)
        else:
            data = [export_json(c) for c in conversations]
            text = json.dumps(data if args.all else data[0], ensure_ascii=False, indent=2) + "\n"
        _write(text, args.output)
    elif args.action == "rename":
        store.rename(store.resolve(args.id), args.title)
    elif args.action == "delete":
        conv_id = store.resolve(args.id)
        if not args.yes:
            if not sys.stdin.isatty():
                raise UsageError("history delete asks first; add --yes when stdin is not a terminal")
            title = store.load(conv_id).title or "(untitled)"
            answer = input(f"Delete conversation {conv_id} \"{one_line(title, 60)}\"? [y/N] ")
            if answer.strip().lower() not in ("y", "yes"):
                say("kept", sys.stderr)
                return 1
        store.delete(conv_id)
        say(f"deleted conversation {conv_id}", sys.stderr)
    elif args.action == "import":
        from nanochat_core.history import import_json

        try:
            data = json.loads(Path(args.file).expanduser().read_text(encoding="utf-8"))
        except OSError as e:
            raise UsageError(f"cannot read {args.file}: {e.strerror or e}") from None
        except ValueError as e:
            raise UsageError(f"{args.file} is not JSON: {e}") from None
        items = data if isinstance(data, list) else [data]
        for item in items:
            conv = import_json(item)
            say(f"imported conversation {store.save(conv)} \"{one_line(conv.title or '', 60)}\"", sys.stderr)
    else:  # pragma: no cover - argparse allows only the actions above
        raise HistoryUnavailable(f"unknown history action {args.action}")
    return 0
