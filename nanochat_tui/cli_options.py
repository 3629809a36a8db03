"""The command line's shared pieces: flag groups declared ONCE and used by every mode and
subcommand (chat, --web, bench, export, …), and turning parsed flags into a ModelSelection and
SamplingParams through the one rulebook.

No torch / Textual / aiohttp import here: `--help` must stay instant.
"""

from __future__ import annotations

import argparse
import os
from typing import NoReturn

from nanochat_core.chat import (
    SamplingParams,
    ValidationError,
    check_seed,
    parse_max_tokens,
    parse_temperature,
    parse_top_k,
)
from nanochat_core.errors import NanochatError

from .config import ModelSelection

PROG = "nanochat-tui"
SOURCES = ("base", "mid", "sft", "rl")  # nanochat's training stages (mid: until 2026-01-31)
DEFAULT_SOURCE = "sft"


class UsageError(NanochatError):
    """A bad command line; printed by main() as `nanochat-tui: error: …`, exit 2."""


class Parser(argparse.ArgumentParser):
    """argparse, except that a bad command line raises UsageError instead of printing and
    exiting, so main() is the only place that prints errors and picks exit codes."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{message} (see {self.prog} --help)")


def add_model_flags(p: argparse.ArgumentParser, *, device_help: str | None = None,
                    dtype_help: str | None = None) -> None:
    """Model selection: which checkpoint, and how to run it. Defaults are None so that a
    subcommand can tell "given" from "not given" (see selection_from)."""
    g = p.add_argument_group("model selection (see README 'Your checkpoints' and docs/checkpoints.md)")
    g.add_argument("-i", "--source", choices=SOURCES, default=None,
                   help="training stage: base|mid|sft|rl (default: sft, else the only stage there is)")
    g.add_argument("-g", "--model-tag", default=None,
                   help="model tag directory, e.g. d20 (default: largest dNN, else newest)")
    g.add_argument("-s", "--step", type=int, default=None, help="checkpoint step (default: largest)")
    g.add_argument("--model-dir", default=None, metavar="DIR",
                   help="a folder holding checkpoints: nanochat's base dir, a stage or tag folder, or a "
                        "flat folder of model_*.pt + meta_*.json (default: $NANOCHAT_BASE_DIR, else ~/.cache/nanochat)")
    g.add_argument("--hf", default=None, metavar="OWNER/REPO[@REV]",
                   help="a nanochat checkpoint on the Hugging Face Hub: downloads only the chosen "
                        "checkpoint's files into the HF cache ($HF_HOME, $HF_TOKEN, $HF_HUB_OFFLINE apply)")
    g.add_argument("--device-type", choices=["cuda", "cpu", "mps"], default=None,
                   help=device_help or "device (default: autodetect cuda > mps > cpu)")
    g.add_argument("-d", "--dtype", choices=["bfloat16", "float32"], default=None,
                   help=dtype_help or DTYPE_HELP)
    g.add_argument("--softcap", type=float, default=None,
                   help="logit softcap override: 20 for checkpoints from nanochat's 2026-03-02..09 "
                        "week (gen3-softcap20), which files cannot tell apart from gen3 (15)")
    g.add_argument("--quantize", choices=["int8"], default=None,
                   help="int8 weights on CPU (per-channel, bf16 activations): about a quarter of the "
                        "bytes per token, so faster decode, at a small quality cost (docs/benchmarks.md)")


DTYPE_HELP = ("compute dtype (default: bfloat16 on CUDA as nanochat does; float32 on CPU/MPS, where "
              "nanochat's reference logits are fp32; -d bfloat16 on a CPU with native bf16 is faster)")

# Model-selection flags that choose a LOCAL checkpoint (refused next to --server).
LOCAL_FLAGS = {"source": "-i/--source", "model_tag": "-g/--model-tag", "step": "-s/--step",
               "model_dir": "--model-dir", "hf": "--hf", "device_type": "--device-type", "dtype": "-d/--dtype",
               "softcap": "--softcap", "quantize": "--quantize"}


def add_sampling_flags(p: argparse.ArgumentParser, t: float, k: int, m: int, m_note: str) -> None:
    g = p.add_argument_group("sampling")
    g.add_argument("-t", "--temperature", default=str(t), metavar="T",
                   help=f"0.0-2.0; 0 = greedy (default: {t})")
    g.add_argument("-k", "--top-k", default=str(k), metavar="K",
                   help=f"0-200; 0 = full vocabulary (default: {k})")
    g.add_argument("-m", "--max-tokens", default=str(m), metavar="N",
                   help=f"1-4096 tokens per reply (default: {m}, {m_note})")


def add_remote_flags(p: argparse.ArgumentParser, key_flag: str) -> None:
    g = p.add_argument_group("client mode (an OpenAI-compatible server instead of a local model)")
    g.add_argument("--server", default=None, metavar="URL",
                   help="chat through this OpenAI-compatible API, e.g. http://gpu-box:8000/v1 (vLLM, "
                        "SGLang, llama.cpp, another nanochat-tui --web); torch is not needed")
    g.add_argument(key_flag, dest="server_api_key", default=None, metavar="KEY",
                   help="API key for --server (default: $NANOCHAT_SERVER_API_KEY, else $OPENAI_API_KEY)")
    g.add_argument("--model", dest="server_model", default=None, metavar="ID",
                   help="which of the server's models to use (default: the first it lists)")
    g.add_argument("--server-timeout", default=None, metavar="first=S,idle=S,total=S",
                   help="deadlines for --server in seconds, any of: first (request to first event, "
                        "default 120), idle (between events, 60), total (one reply, 1800), connect "
                        "(10); 'none' = no limit (default: $NANOCHAT_SERVER_TIMEOUT); docs/security.md")


def selection_from(args: argparse.Namespace, *, key_flag: str = "--api-key",
                   allow_demo: bool = True) -> ModelSelection:
    """The ModelSelection the flags ask for. Only a choice that differs from the defaults counts
    as explicit (`-i sft` is the default: it keeps the demo-model fallback)."""
    server = getattr(args, "server", None)
    key = getattr(args, "server_api_key", None)
    if server is not None:
        if not server.strip():
            raise UsageError("--server needs a URL such as http://HOST:8000/v1")
        local = [flag for name, flag in LOCAL_FLAGS.items() if getattr(args, name, None) is not None]
        if local:
            raise UsageError(f"{', '.join(local)} chooses a local checkpoint and cannot be used with --server")
        if key is None:
            key = os.environ.get("NANOCHAT_SERVER_API_KEY") or os.environ.get("OPENAI_API_KEY") or None
        return ModelSelection(server=server.strip(), server_api_key=key,
                              server_model=getattr(args, "server_model", None),
                              server_limits=_server_limits(args), explicit=True)
    client_only = {key_flag: key, "--model": getattr(args, "server_model", None),
                   "--server-timeout": getattr(args, "server_timeout", None)}
    given = next((flag for flag, value in client_only.items() if value is not None), None)
    if given:
        raise UsageError(f"{given} is for client mode: add --server URL (a local checkpoint is chosen "
                         "with --model-dir, -i, -g and -s)")
    hf = getattr(args, "hf", None)
    if hf is not None:
        if args.model_dir is not None:
            raise UsageError("--hf and --model-dir both name a checkpoint: give one of them")
        from nanochat_core.hub import parse_repo_spec  # no torch, no huggingface_hub import

        try:
            parse_repo_spec(hf)
        except NanochatError as e:
            raise UsageError(str(e)) from None
    explicit = (args.model_dir is not None or args.model_tag is not None or args.step is not None
                or hf is not None or (args.source or DEFAULT_SOURCE) != DEFAULT_SOURCE or not allow_demo)
    return ModelSelection(
        base_dir=args.model_dir, source=args.source, model_tag=args.model_tag,
        step=args.step, device_type=args.device_type, dtype=args.dtype, softcap=args.softcap,
        quantize=getattr(args, "quantize", None), explicit=explicit, hf=hf,
    )


def _server_limits(args: argparse.Namespace):
    """--server-timeout, else $NANOCHAT_SERVER_TIMEOUT, over the default bounds (None: defaults)."""
    spec, source = getattr(args, "server_timeout", None), "--server-timeout"
    if spec is None:
        spec, source = os.environ.get("NANOCHAT_SERVER_TIMEOUT") or None, "NANOCHAT_SERVER_TIMEOUT"
    if spec is None:
        return None
    from nanochat_core.remote_limits import LimitsError, parse_server_timeout

    try:
        return parse_server_timeout(spec, source=source)
    except LimitsError as e:
        raise UsageError(str(e)) from None


def sampling_from(args: argparse.Namespace, seed: int | None) -> SamplingParams:
    """Sampling flags through the rulebook's parsers (the words every front-end uses)."""
    try:
        return SamplingParams(
            temperature=parse_temperature(args.temperature),
            top_k=parse_top_k(args.top_k),
            max_tokens=parse_max_tokens(args.max_tokens),
            seed=None if seed is None else check_seed(seed),
        )
    except ValidationError as e:
        from .commands import terminal_words

        raise UsageError(terminal_words(str(e), flag=True)) from None


def version() -> str:
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as dist_version

    try:
        return dist_version("nanochat-tui")
    except PackageNotFoundError:  # pragma: no cover - running from a bare checkout
        return "unknown (not installed)"
