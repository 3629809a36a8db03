"""`nanochat-tui` command line: parse the arguments of each mode and start it.

Modes:
  nanochat-tui                 full-screen terminal chat (Textual)
  nanochat-tui -p "question"   one reply streamed to stdout, then exit
  nanochat-tui --plain         line-by-line chat (also when stdin/stdout is not a terminal)
  nanochat-tui --web           browser chat served by aiohttp (here -p means --port)
  nanochat-tui bench           decode / time-to-first-token benchmark, JSON on the last line
  nanochat-tui export ...      write a checkpoint as a Hugging Face transformers model
  nanochat-tui models          list every checkpoint found (base dir, HF cache, demo model)
  nanochat-tui serve --ray ... the model as Ray Serve replicas; `--web --ray` is their front door
  --server URL (any mode but bench/export): chat with an OpenAI-compatible server instead

main() is the ONLY place that prints errors and picks exit codes: every mode and subcommand
raises (UsageError for a bad command line, any nanochat_core.errors.NanochatError for a user
mistake) and main() prints one line, `nanochat-tui: error: …`, exit 2. Model, sampling and client
flags are declared once, in cli_options.py, for every mode and subcommand.

This module imports neither torch nor Textual nor aiohttp at import time, so `--help` is instant
and each mode pays only for what it uses.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from typing import Sequence

from nanochat_core.errors import NanochatError

from .cli_options import (
    LOCAL_FLAGS,
    PROG,
    Parser,
    UsageError,
    add_model_flags,
    add_remote_flags,
    add_sampling_flags,
    sampling_from,
    selection_from,
    version,
)
from .config import ChatConfig, HistorySettings, RayTarget, WebConfig
from .console import error_line
from .settings import Settings

EPILOG_CHAT = """\
modes:
  nanochat-tui                  full-screen chat (the default on a terminal)
  nanochat-tui -p "Hi"          one reply to stdout, then exit; -p - reads the prompt from stdin
  nanochat-tui --plain          line chat (User:/Assistant:); automatic when not on a terminal
  nanochat-tui --web --help     browser chat; in web mode -p means --port
  nanochat-tui bench --help     speed benchmark
  nanochat-tui export --help    export to Hugging Face format (for vLLM and other servers)
  nanochat-tui history --help   saved conversations: list, show, export, delete, search
  nanochat-tui models           list the checkpoints this machine has (--json for scripts)
  nanochat-tui config edit      the settings file: defaults for these flags (config --help)
  nanochat-tui serve --help     the model as Ray Serve replicas across a cluster (extra: [ray])
  nanochat-tui --server http://HOST:8000/v1   any mode above, on a remote OpenAI-compatible server

checkpoints: --model-dir DIR (nanochat's base dir, a stage or tag folder, or a flat folder of
model_*.pt + meta_*.json + tokenizer), else $NANOCHAT_BASE_DIR, else ~/.cache/nanochat; or
--hf OWNER/REPO[@REV] from the Hugging Face Hub (see docs/checkpoints.md). With none found (and
none asked for) the bundled demo model is used.
sampling values outside the ranges (temperature 0.0-2.0, top-k 0-200, max tokens 1-4096) are
rejected, never clamped: the same rule as the web API and the /temperature commands.
max tokens: 256 per reply in the terminal modes (nanochat's chat_cli), 512 in --web (chat_web).
"""

# Subcommands: the first word of the command line -> the module that owns it. Each module has
# `build_parser() -> argparse.ArgumentParser` and `run(args) -> int` (raising, never printing,
# its errors).
SUBCOMMANDS = {
    "bench": "nanochat_tui.bench_cli",
    "export": "nanochat_tui.export_cli",
    "history": "nanochat_tui.history_cli",
    "models": "nanochat_tui.models_cli",
    "config": "nanochat_tui.config_cli",
    "serve": "nanochat_tui.serve_cli",
}


def build_chat_parser() -> argparse.ArgumentParser:
    p = Parser(
        prog=PROG, description="Chat with a nanochat model in the terminal.",
        epilog=EPILOG_CHAT, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--version", action="version", version=f"%(prog)s {version()}")
    p.add_argument("-p", "--prompt", default=None, metavar="TEXT",
                   help="answer TEXT once on stdout and exit ('-' reads the prompt from stdin)")
    p.add_argument("--plain", action="store_true", help="line-by-line chat instead of the full-screen app")
    p.add_argument("--web", action="store_true", help="serve the browser chat (see --web --help)")
    p.add_argument("--system", default=None, metavar="TEXT", help="a system message (folded into the first user turn)")
    p.add_argument("--seed", type=int, default=42, help="sampling seed, reset every reply as nanochat does (default: 42)")
    p.add_argument("--debug", action="store_true", help="show tracebacks instead of one-line errors")
    g = p.add_argument_group("saved conversations (nanochat-tui history --help)")
    g.add_argument("-c", "--continue", dest="continue_latest", action="store_true",
                   help="continue the most recent conversation (with -p too)")
    g.add_argument("--resume", default=None, metavar="ID", help="continue saved conversation ID")
    g.add_argument("--no-history", action="store_true",
                   help="do not save this chat (incognito); nothing is read or written")
    g.add_argument("--history-db", default=None, metavar="PATH",
                   help="the conversations database (default: $NANOCHAT_TUI_HOME/history.sqlite3, "
                        "else the user data dir)")
    add_sampling_flags(p, 0.6, 50, 256, "as nanochat's chat_cli")
    add_model_flags(p)
    add_remote_flags(p, "--api-key")
    return p


API_KEY_ENV = "NANOCHAT_TUI_API_KEY"  # the web server's own key (not a --server's)


def build_web_parser() -> argparse.ArgumentParser:
    p = Parser(
        prog=f"{PROG} --web", description="Serve the nanochat chat page and API (nanochat's chat_web protocol).",
        epilog="In web mode -p means --port, as in nanochat's chat_web.py.",
    )
    p.add_argument("--web", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("-n", "--num-gpus", type=int, default=1, help="workers, one per GPU (default: 1)")
    p.add_argument("-p", "--port", type=int, default=8000, help="port (default: 8000)")
    p.add_argument("--host", default="0.0.0.0", help="address to bind (default: 0.0.0.0, i.e. reachable from the network)")
    p.add_argument("--system", default=None, metavar="TEXT", help="a system message prepended to every conversation that has none")
    p.add_argument("--seed", type=int, default=None, help="fixed sampling seed (default: random per request, as nanochat)")
    p.add_argument("--queue-size", type=int, default=64, help="requests allowed to wait for a worker before 503 (default: 64)")
    p.add_argument("--log-conversations", action="store_true", help="log every message to the console (off by default)")
    p.add_argument("--cors-origin", default=None, metavar="ORIGIN", help="allow this origin to call the API (default: same origin only)")
    p.add_argument("--api-key", default=None, metavar="KEY",
                   help=f"require 'Authorization: Bearer KEY' on the API (default: ${API_KEY_ENV}, "
                        "which keeps the key out of the process list)")
    p.add_argument("--allowed-host", action="append", default=[], metavar="NAME",
                   help="also answer requests that name the server NAME (repeatable; .example.com: it "
                        "and its subdomains; *: any). Always answered: localhost, IP addresses, "
                        "--host, this machine's name; others are refused (DNS rebinding)")
    p.add_argument("--max-context", type=int, default=None, metavar="N",
                   help="tokens one conversation may take, prompt and reply (default: the model's "
                        "sequence_len; 0 = all of the model's positions); longer ones get a 400")
    p.add_argument("--batch-size", type=int, default=None, metavar="B",
                   help="streams each worker runs at once, sharing decode steps (continuous batching); "
                        "with --server, requests sent to the server at once (default: 8)")
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    add_sampling_flags(p, 0.8, 50, 512, "as nanochat's chat_web")
    add_model_flags(p, dtype_help="compute dtype (default: bfloat16 on CUDA as nanochat's server; float32 on CPU/MPS)")
    add_remote_flags(p, "--server-api-key")
    g = p.add_argument_group("Ray Serve (extra: pip install 'nanochat-tui[ray]'; docs/scaling.md)")
    g.add_argument("--ray", default=None, metavar="ADDRESS",
                   help="be a front door to the replicas `nanochat-tui serve --ray` deployed on this Ray "
                        "cluster: HOST:PORT of its head, or auto (the cluster this machine is a node of)")
    g.add_argument("--ray-app", default=None, metavar="NAME",
                   help="with --ray: the Serve application's name (default: nanochat)")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code. The only place errors are printed.

    As the console script (argv None) the process ends right after the last output is flushed:
    tearing down the interpreter with torch loaded took 1-4 s on a 2-core machine (a quarter of
    a scripted `-p` call), and nothing is left to do by then (the history database commits
    every write as it happens)."""
    as_program = argv is None
    code = _main(list(sys.argv[1:] if argv is None else argv))
    if as_program:
        _exit_now(code)
    return code


def _main(argv: list[str]) -> int:
    debug = "--debug" in argv
    try:
        return _dispatch(argv)
    except KeyboardInterrupt:
        print("\nGoodbye!", file=sys.stderr)
        return 130
    except Exception as e:  # one line for the user; --debug shows the traceback
        if debug:
            raise
        if isinstance(e, NanochatError):
            return _fail(str(e))
        return _fail(f"{type(e).__name__}: {e} (run with --debug for the traceback)")


def _exit_now(code: int) -> None:
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe: nothing more can be said
            pass
    os._exit(code)


def _fail(message: str) -> int:
    print(error_line(message), file=sys.stderr, flush=True)
    return 2


def _dispatch(argv: list[str]) -> int:
    if argv[:1] and argv[0] in SUBCOMMANDS:
        module = importlib.import_module(SUBCOMMANDS[argv[0]])
        return module.run(module.build_parser().parse_args(argv[1:]))
    if "--web" in argv:
        return _run_web(build_web_parser().parse_args(argv))
    settings = _settings(argv)
    parser = build_chat_parser()
    apply_settings(parser, settings)
    args = parser.parse_args(argv)
    if args.model_dir is None and getattr(args, "server", None) is None:
        args.model_dir = settings.model_dir  # the file's folder (never next to --server)
    if args.system is not None and not args.system.strip():
        raise UsageError("--system needs some text")
    config = ChatConfig(model=selection_from(args), sampling=sampling_from(args, args.seed),
                        system=args.system, debug=args.debug, history=history_from(args, settings),
                        theme=settings.theme, model_dirs=settings.model_dirs)
    if args.prompt is not None:
        from .oneshot import run_oneshot

        return run_oneshot(config, read_prompt(args.prompt))
    interactive = sys.stdin.isatty() and sys.stdout.isatty()
    if args.plain or not interactive or os.environ.get("TERM") == "dumb":
        from .plain import run_plain

        return run_plain(config)
    from .app import run_tui

    return run_tui(config)


def history_from(args: argparse.Namespace, settings: Settings | None = None) -> HistorySettings:
    """--no-history / --history-db / -c / --resume over the settings file's `history` (a flag
    that needs saved conversations turns history on for this run even where the file says
    `history = false`)."""
    if args.continue_latest and args.resume is not None:
        raise UsageError("-c/--continue and --resume ID both choose a conversation: give one")
    if args.no_history and (args.continue_latest or args.resume is not None):
        raise UsageError("--no-history cannot continue a saved conversation")
    if args.no_history and args.history_db is not None:
        raise UsageError("--no-history and --history-db contradict each other")
    resume = "latest" if args.continue_latest else args.resume
    asked = resume is not None or args.history_db is not None
    enabled = not args.no_history and (asked or settings is None or settings.history is not False)
    return HistorySettings(enabled=enabled, path=args.history_db, resume=resume)


def _settings(argv: list[str]) -> Settings:
    """The settings file; a broken one stops every chat mode with one line naming the key, but
    never `--help` / `--version` (which must always answer)."""
    from .settings import SettingsError, load

    try:
        return load()
    except SettingsError:
        if any(a in ("-h", "--help", "--version") for a in argv):
            return Settings()
        raise


def apply_settings(parser: argparse.ArgumentParser, settings: Settings) -> None:
    """The settings file's values as the parser's defaults: flags given still win, and they go
    through the same rulebook parsing as typed flags. (`model_dir` is applied after parsing:
    it must not count as a local-checkpoint flag next to --server.)"""
    defaults = {}
    for key in ("temperature", "top_k", "max_tokens"):
        value = getattr(settings, key)
        if value is not None:
            defaults[key] = repr(value)
    if settings.system is not None:
        defaults["system"] = settings.system
    if defaults:
        parser.set_defaults(**defaults)


def read_prompt(value: str) -> str:
    """-p TEXT, or -p - for stdin (one trailing newline, as editors and echo add, is dropped)."""
    if value != "-":
        return value
    text = sys.stdin.read()
    if text.endswith("\r\n"):
        return text[:-2]
    return text[:-1] if text.endswith("\n") else text


def _run_web(args: argparse.Namespace) -> int:
    if args.num_gpus < 1:
        raise UsageError("--num-gpus must be at least 1")
    if not (0 <= args.port <= 65535):
        raise UsageError("--port must be between 0 and 65535")
    if args.queue_size < 0:
        raise UsageError("--queue-size must be 0 or more")
    if args.batch_size is not None and not (1 <= args.batch_size <= 256):
        raise UsageError("--batch-size must be between 1 and 256")
    if args.max_context is not None and args.max_context < 0:
        raise UsageError("--max-context must be 0 (no budget) or a number of tokens")
    if args.max_context is not None and args.server is not None:
        raise UsageError("--max-context is for local models; with --server the server sets its own limit")
    if args.server is not None and args.num_gpus != 1:
        raise UsageError("--num-gpus is for local models; with --server the server runs the GPUs")
    ray = _ray_target(args)
    config = WebConfig(
        model=selection_from(args, key_flag="--server-api-key"), sampling=sampling_from(args, args.seed),
        system=args.system, host=args.host, port=args.port, num_gpus=args.num_gpus,
        queue_size=args.queue_size, log_conversations=args.log_conversations,
        cors_origin=args.cors_origin, api_key=_web_api_key(args.api_key), max_batch=args.batch_size or 8,
        max_context=args.max_context, debug=args.debug, allowed_hosts=tuple(args.allowed_host), ray=ray,
    )
    from .web import run_web

    return run_web(config)


def _ray_target(args: argparse.Namespace) -> RayTarget | None:
    """--ray ADDRESS [--ray-app NAME]: the replicas decide the model and the batching, so the
    flags that choose those here are refused next to it (and --server, another backend)."""
    if args.ray is None:
        if args.ray_app is not None:
            raise UsageError("--ray-app is for --ray ADDRESS (a Ray Serve front door)")
        return None
    if not args.ray.strip():
        raise UsageError("--ray needs the cluster's address: HOST:PORT of its head, or auto")
    if args.server is not None:
        raise UsageError("--ray and --server both choose where replies come from: give one")
    local = [flag for name, flag in LOCAL_FLAGS.items() if getattr(args, name, None) is not None]
    local += [flag for flag, given in (("-n/--num-gpus", args.num_gpus != 1),
                                       ("--batch-size", args.batch_size is not None),
                                       ("--max-context", args.max_context is not None)) if given]
    if local:
        raise UsageError(f"{', '.join(local)} chooses how the model runs, which nanochat-tui serve --ray decided "
                         "for the replicas: leave it out here")
    app = (args.ray_app if args.ray_app is not None else "nanochat").strip()
    if not app:
        raise UsageError("--ray-app needs a name, e.g. nanochat")
    from .ray_serve import require_ray

    require_ray()
    return RayTarget(address=args.ray.strip(), app=app)


def _web_api_key(flag: str | None) -> str | None:
    """--api-key, else $NANOCHAT_TUI_API_KEY; an empty key is refused (it would let a bare
    'Authorization: Bearer' in), and so is an empty variable (most likely an unset $KEY)."""
    if flag is not None:
        if not flag.strip():
            raise UsageError("--api-key is empty: give a key, or leave --api-key out to serve without one")
        return flag
    value = os.environ.get(API_KEY_ENV)
    if value is not None and not value.strip():
        raise UsageError(f"{API_KEY_ENV} is set but empty: set it to a key, or unset it to serve without one")
    return value


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
