"""`nanochat-tui` command line: parse the arguments of each mode and start it.

Modes:
  nanochat-tui                 full-screen terminal chat (Textual)
  nanochat-tui -p "question"   one reply streamed to stdout, then exit
  nanochat-tui --plain         line-by-line chat (also when stdin/stdout is not a terminal)
  nanochat-tui --web           browser chat served by aiohttp (here -p means --port)
  nanochat-tui bench           decode / time-to-first-token benchmark, JSON on the last line
  nanochat-tui export ...      write a checkpoint as a Hugging Face transformers model
  --server URL (any mode but bench/export): chat with an OpenAI-compatible server instead

This module imports neither torch nor Textual nor aiohttp at import time, so `--help` is instant
and each mode pays only for what it uses.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Sequence

from nanochat_core.chat import (
    SamplingParams,
    ValidationError,
    check_seed,
    parse_max_tokens,
    parse_temperature,
    parse_top_k,
)
from nanochat_core.errors import NanochatError

from .config import ChatConfig, ModelSelection, WebConfig
from .console import error_line

PROG = "nanochat-tui"

EPILOG_CHAT = """\
modes:
  nanochat-tui                  full-screen chat (the default on a terminal)
  nanochat-tui -p "Hi"          one reply to stdout, then exit; -p - reads the prompt from stdin
  nanochat-tui --plain          line chat (User:/Assistant:); automatic when not on a terminal
  nanochat-tui --web --help     browser chat; in web mode -p means --port
  nanochat-tui bench --help     speed benchmark
  nanochat-tui export --help    export to Hugging Face format (for vLLM and other servers)
  nanochat-tui --server http://HOST:8000/v1   any mode above, on a remote OpenAI-compatible server

checkpoints: --model-dir, else $NANOCHAT_BASE_DIR, else ~/.cache/nanochat; inside it
base_checkpoints/ chatsft_checkpoints/ chatrl_checkpoints/ as nanochat writes them. With none
found (and none asked for) the bundled demo model is used.
sampling values outside the ranges (temperature 0.0-2.0, top-k 0-200, max tokens 1-4096) are
rejected, never clamped: the same rule as the web API and the /temperature commands.
"""


def _add_model_flags(p: argparse.ArgumentParser, dtype_default_help: str) -> None:
    g = p.add_argument_group("model selection (nanochat's rules)")
    g.add_argument("-i", "--source", choices=["base", "sft", "rl"], default=None,
                   help="which training stage to load: base|sft|rl (default: sft)")
    g.add_argument("-g", "--model-tag", default=None,
                   help="model tag directory, e.g. d20 (default: largest dNN, else newest)")
    g.add_argument("-s", "--step", type=int, default=None, help="checkpoint step (default: largest)")
    g.add_argument("--model-dir", default=None, metavar="DIR",
                   help="nanochat base dir (default: $NANOCHAT_BASE_DIR, else ~/.cache/nanochat)")
    g.add_argument("--device-type", choices=["cuda", "cpu", "mps"], default=None,
                   help="device (default: autodetect cuda > mps > cpu)")
    g.add_argument("-d", "--dtype", choices=["bfloat16", "float32"], default=None, help=dtype_default_help)
    g.add_argument("--softcap", type=float, default=None,
                   help="logit softcap override: 20 for checkpoints from nanochat's 2026-03-02..09 "
                        "week (gen3-softcap20), which files cannot tell apart from gen3 (15)")
    g.add_argument("--quantize", choices=["int8"], default=None,
                   help="int8 weights on CPU (per-channel, bf16 activations): about a quarter of the "
                        "bytes per token, so faster decode, at a small quality cost (docs/benchmarks.md)")


def _add_sampling_flags(p: argparse.ArgumentParser, t: float, k: int, m: int) -> None:
    g = p.add_argument_group("sampling")
    g.add_argument("-t", "--temperature", default=str(t), metavar="T",
                   help=f"0.0-2.0; 0 = greedy (default: {t})")
    g.add_argument("-k", "--top-k", default=str(k), metavar="K",
                   help=f"0-200; 0 = full vocabulary (default: {k})")
    g.add_argument("-m", "--max-tokens", default=str(m), metavar="N",
                   help=f"1-4096 tokens per reply (default: {m})")


def _add_remote_flags(p: argparse.ArgumentParser, key_flag: str) -> None:
    g = p.add_argument_group("client mode (an OpenAI-compatible server instead of a local model)")
    g.add_argument("--server", default=None, metavar="URL",
                   help="chat through this OpenAI-compatible API, e.g. http://gpu-box:8000/v1 (vLLM, "
                        "SGLang, llama.cpp, another nanochat-tui --web); torch is not needed")
    g.add_argument(key_flag, dest="server_api_key", default=None, metavar="KEY",
                   help="API key for --server (default: $NANOCHAT_SERVER_API_KEY, else $OPENAI_API_KEY)")
    g.add_argument("--model", dest="server_model", default=None, metavar="ID",
                   help="which of the server's models to use (default: the first it lists)")


DTYPE_HELP = ("compute dtype (default: bfloat16 on CUDA as nanochat does; float32 on CPU/MPS, where "
              "nanochat's reference logits are fp32; -d bfloat16 on a CPU with native bf16 is faster)")


def build_chat_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=PROG, description="Chat with a nanochat model in the terminal.",
        epilog=EPILOG_CHAT, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("-p", "--prompt", default=None, metavar="TEXT",
                   help="answer TEXT once on stdout and exit ('-' reads the prompt from stdin)")
    p.add_argument("--plain", action="store_true", help="line-by-line chat instead of the full-screen app")
    p.add_argument("--web", action="store_true", help="serve the browser chat (see --web --help)")
    p.add_argument("--system", default=None, metavar="TEXT", help="a system message (folded into the first user turn)")
    p.add_argument("--seed", type=int, default=42, help="sampling seed, reset every reply as nanochat does (default: 42)")
    p.add_argument("--debug", action="store_true", help="show tracebacks instead of one-line errors")
    _add_sampling_flags(p, 0.6, 50, 512)
    _add_model_flags(p, DTYPE_HELP)
    _add_remote_flags(p, "--api-key")
    return p


def build_web_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
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
    p.add_argument("--api-key", default=None, help="require 'Authorization: Bearer KEY' on the API")
    p.add_argument("--batch-size", type=int, default=8, metavar="B",
                   help="streams each worker runs at once, sharing decode steps (continuous batching); "
                        "with --server, requests sent to the server at once (default: 8)")
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    _add_sampling_flags(p, 0.8, 50, 512)
    _add_model_flags(p, "compute dtype (default: bfloat16 on CUDA as nanochat's server; float32 on CPU/MPS)")
    _add_remote_flags(p, "--server-api-key")
    return p


def build_bench_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=f"{PROG} bench",
        description="Measure time to first token and decode speed. Runs exactly --decode-tokens "
                    "steps (stop tokens ignored); prints a summary, then one JSON object as the last line. "
                    "With --serve N: N concurrent chat streams through the web server instead "
                    "(aggregate and per-stream tok/s, time to first token, /health latency, and "
                    "whether every stream equals its solo run at temperature 0).",
    )
    p.add_argument("--prompt-tokens", type=int, default=512, metavar="N", help="prompt length (default: 512)")
    p.add_argument("--decode-tokens", type=int, default=128, metavar="M", help="decode steps (default: 128)")
    p.add_argument("--batch-size", type=int, default=None, metavar="B",
                   help="rows decoded together (default: 1); with --serve: the in-process worker's "
                        "slots, streams sharing decode steps (default: one per stream, at most 256)")
    p.add_argument("--repeats", type=int, default=1, help="repeat and report the best run (default: 1)")
    p.add_argument("--naive", action="store_true",
                   help="also measure the naive baseline (full recompute every step, no KV cache)")
    p.add_argument("--random", default=None, metavar="dDEPTH[:WIDTH[:VOCAB]]",
                   help="benchmark a random-weight gen5 model of this shape (synthetic tokenizer) "
                        "instead of a checkpoint, e.g. d8:512:8192 or d20 (width = 64*depth rounded "
                        "up to 128, vocab 32768: nanochat's d20)")
    p.add_argument("--turns", type=int, default=0, metavar="N",
                   help="also run an N-turn chat with the history re-sent as text, with and without "
                        "KV-cache reuse, and report time to first token per turn")
    p.add_argument("--reply-tokens", type=int, default=32, metavar="R",
                   help="reply length per turn for --turns (default: 32)")
    p.add_argument("--seed", type=int, default=0, help="seed for the random prompt (default: 0)")
    g = p.add_argument_group("serving benchmark (the web server's path, continuous batching)")
    g.add_argument("--serve", type=int, default=None, metavar="N",
                   help="run N chat streams at once against the web server (started in-process "
                        "with one worker on 127.0.0.1, or --url) instead of the engine benchmark; "
                        "--prompt-tokens and --decode-tokens size each stream")
    g.add_argument("--url", default=None, metavar="URL",
                   help="with --serve: benchmark this running server (nanochat-tui --web or "
                        "nanochat's chat_web.py), e.g. http://gpu-box:8000; nothing is loaded here")
    g.add_argument("--api-key", default=None, metavar="KEY",
                   help="with --url: the key of a server started with --api-key")
    p.add_argument("--nanochat", default=None, metavar="PATH",
                   help="also run nanochat's own Engine from this checkout (default: $NANOCHAT_SRC) on "
                        "the same weights, alternating runs, and report the ratios")
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    _add_model_flags(p, DTYPE_HELP)
    return p


class UsageError(Exception):
    """A bad command line; message printed as `nanochat-tui: error: ...`, exit 2."""


LOCAL_FLAGS = {"source": "-i/--source", "model_tag": "-g/--model-tag", "step": "-s/--step",
               "model_dir": "--model-dir", "device_type": "--device-type", "dtype": "-d/--dtype",
               "softcap": "--softcap", "quantize": "--quantize"}


def _selection(args: argparse.Namespace) -> ModelSelection:
    server = getattr(args, "server", None)
    key = getattr(args, "server_api_key", None)
    key_flag = "--server-api-key" if getattr(args, "web", False) else "--api-key"
    if server is not None:
        if not server.strip():
            raise UsageError("--server needs a URL such as http://HOST:8000/v1")
        local = [flag for name, flag in LOCAL_FLAGS.items() if getattr(args, name, None) is not None]
        if local:
            raise UsageError(f"{', '.join(local)} chooses a local checkpoint and cannot be used with --server")
        if key is None:
            key = os.environ.get("NANOCHAT_SERVER_API_KEY") or os.environ.get("OPENAI_API_KEY") or None
        return ModelSelection(server=server.strip(), server_api_key=key,
                              server_model=args.server_model, explicit=True)
    if key is not None or getattr(args, "server_model", None) is not None:
        given = key_flag if key is not None else "--model"
        raise UsageError(f"{given} is for client mode: add --server URL (a local checkpoint is chosen "
                         "with --model-dir, -i, -g and -s)")
    explicit = any(v is not None for v in (args.source, args.model_tag, args.step, args.model_dir))
    return ModelSelection(
        base_dir=args.model_dir, source=args.source or "sft", model_tag=args.model_tag,
        step=args.step, device_type=args.device_type, dtype=args.dtype, softcap=args.softcap,
        quantize=args.quantize, explicit=explicit,
    )


def _sampling(args: argparse.Namespace, seed: int | None) -> SamplingParams:
    try:
        return SamplingParams(
            temperature=parse_temperature(args.temperature),
            top_k=parse_top_k(args.top_k),
            max_tokens=parse_max_tokens(args.max_tokens),
            seed=None if seed is None else check_seed(seed),
        )
    except ValidationError as e:
        raise UsageError(str(e)) from None


def _fail(message: str) -> int:
    print(error_line(message), file=sys.stderr)
    return 2


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    try:
        return _dispatch(argv)
    except UsageError as e:
        return _fail(str(e))
    except KeyboardInterrupt:
        print("\nGoodbye!", file=sys.stderr)
        return 130
    except Exception as e:  # one line for the user; --debug shows the traceback
        if debug:
            raise
        if isinstance(e, NanochatError):
            return _fail(str(e))
        return _fail(f"{type(e).__name__}: {e} (run with --debug for the traceback)")


def _dispatch(argv: list[str]) -> int:
    if argv[:1] == ["bench"]:
        args = build_bench_parser().parse_args(argv[1:])
        from .bench_cli import run_bench

        return run_bench(args, _selection(args))
    if argv[:1] == ["export"]:
        from .export_cli import build_export_parser, run_export

        return run_export(build_export_parser().parse_args(argv[1:]))
    if "--web" in argv:
        args = build_web_parser().parse_args(argv)
        if args.num_gpus < 1:
            raise UsageError("--num-gpus must be at least 1")
        if not (0 <= args.port <= 65535):
            raise UsageError("--port must be between 0 and 65535")
        if args.queue_size < 0:
            raise UsageError("--queue-size must be 0 or more")
        if not (1 <= args.batch_size <= 256):
            raise UsageError("--batch-size must be between 1 and 256")
        if args.server is not None and args.num_gpus != 1:
            raise UsageError("--num-gpus is for local models; with --server the server runs the GPUs")
        config = WebConfig(
            model=_selection(args), sampling=_sampling(args, args.seed), system=args.system,
            host=args.host, port=args.port, num_gpus=args.num_gpus, queue_size=args.queue_size,
            log_conversations=args.log_conversations, cors_origin=args.cors_origin,
            api_key=args.api_key, max_batch=args.batch_size, debug=args.debug,
        )
        from .web import run_web

        return run_web(config)

    args = build_chat_parser().parse_args(argv)
    config = ChatConfig(model=_selection(args), sampling=_sampling(args, args.seed),
                        system=args.system, debug=args.debug)
    if args.system is not None and not args.system.strip():
        raise UsageError("--system needs some text")
    if args.prompt is not None:
        from .oneshot import run_oneshot

        prompt = sys.stdin.read() if args.prompt == "-" else args.prompt
        return run_oneshot(config, prompt)
    interactive = sys.stdin.isatty() and sys.stdout.isatty()
    if args.plain or not interactive or os.environ.get("TERM") == "dumb":
        from .plain import run_plain

        return run_plain(config)
    from .app import run_tui

    return run_tui(config)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
