"""`nanochat-tui bench`: a readable summary, then one JSON object as the last stdout line."""

from __future__ import annotations

import argparse
import json
import sys

from nanochat_core.errors import NanochatError

from .cli_options import LOCAL_FLAGS, PROG, Parser, UsageError, add_model_flags, selection_from
from .config import ModelSelection
from .console import say


def build_parser() -> argparse.ArgumentParser:
    p = Parser(
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
    add_model_flags(p)
    return p


def run(args: argparse.Namespace) -> int:
    """Entry from cli.main (which prints any error this raises)."""
    return run_bench(args, selection_from(args))


def run_bench(args: argparse.Namespace, selection: ModelSelection) -> int:
    if args.serve is not None or args.url is not None:
        return run_serve(args, selection)
    if args.api_key is not None:
        raise UsageError("--api-key is for --serve --url (a running server started with --api-key)")
    if args.batch_size is None:  # None only tells --serve "one slot per stream"; here it is 1
        args.batch_size = 1
    from nanochat_core.bench import run_benchmark, run_multi_turn, run_side_by_side

    try:
        if args.nanochat is not None and not args.random:
            raise ValueError("--nanochat compares both engines on random weights: add --random SHAPE "
                             "(e.g. --random d8:512:8192)")
        if args.nanochat is not None and args.batch_size != 1:
            raise ValueError("--nanochat measures batch 1 (nanochat's Engine decodes one conversation)")
        chat_model, label = _load_for_serving(args, selection)
        result = run_benchmark(chat_model.model, args.prompt_tokens, args.decode_tokens, args.batch_size,
                               repeats=args.repeats, naive=args.naive, seed=args.seed)
        if args.turns:
            result["multi_turn"] = run_multi_turn(chat_model, args.turns, args.reply_tokens, seed=args.seed)
        if args.random and args.batch_size == 1:  # side by side with nanochat's Engine, or why not
            result["nanochat"] = run_side_by_side(args.random, chat_model, args.nanochat, args.prompt_tokens,
                                                  args.decode_tokens, max(args.repeats, 3), args.seed)
    except ValueError as e:  # the benchmark's own checks (sizes, shapes): one line, exit 2
        if isinstance(e, NanochatError):
            raise
        raise UsageError(str(e)) from None
    result["model"] = label
    say(f"model            {label} ({result['params'] / 1e6:.1f}M params, {result['weight_bytes'] / 1e6:.1f} MB of matrices per step)")
    say(f"device           {result['device']} {result['dtype']}, batch {result['batch_size']}")
    say(f"first token      {result['ttft_ms']:.1f} ms for {result['prompt_tokens']} prompt tokens")
    say(f"decode           {result['decode_tok_s']:.1f} tok/s over {result['decode_tokens']} steps ({result['step_ms']:.2f} ms/step)")
    if "mbu" in result:
        say(f"bandwidth use    {result['mbu'] * 100:.1f}% (limit {result['bandwidth_limit_tok_s']:.0f} tok/s)")
    if "naive_decode_tok_s" in result:
        say(f"naive baseline   {result['naive_decode_tok_s']:.1f} tok/s (full recompute, {result['naive_decode_steps']} steps): {result['speedup_vs_naive']}x")
    if "multi_turn" in result:
        mt = result["multi_turn"]
        say(f"multi-turn       {mt['turns']} turns, history re-sent as text: first token {mt['ttft_turn1_ms']:.1f} ms "
              f"at turn 1, {mt['ttft_last_turn_ms']:.1f} ms at turn {mt['turns']} ({mt['ttft_last_vs_first']}x; "
              f"{mt['last_turn_cached_tokens']}/{mt['last_turn_prompt_tokens']} prompt tokens from the cache)")
        say(f"  without reuse  {mt['no_reuse_ttft_last_turn_ms']:.1f} ms at turn {mt['turns']} ({mt['no_reuse_last_vs_first']}x)")
    say(f"memory traffic   {result['decode_bytes_per_s'] / 1e9:.1f} GB/s of weights read while decoding, "
        f"{result['bandwidth_fraction']:.0%} of this machine's {result['memory_bandwidth_bytes_per_s'] / 1e9:.1f} GB/s (copy test)")
    say(f"peak memory      {result['peak_memory_mb']:.0f} MB (KV cache {result['kv_cache_bytes'] / 2**20:.1f} MB)")
    side = result.get("nanochat")
    if side and side["run"]:
        say(f"nanochat Engine  first token {side['nanochat']['ttft_ms']:.1f} ms, decode {side['nanochat']['decode_tok_s']:.1f} tok/s "
            f"(fp32); ours {side['ours']['ttft_ms']:.1f} ms, {side['ours']['decode_tok_s']:.1f} tok/s")
        say(f"  ratios         decode {side['decode_ratio']}x, first token {side['ttft_ratio']}x "
            f"(medians; {side['repeats']} runs, steps alternating; >1: ours faster)")
    elif side:
        say(f"nanochat Engine  {side['note']}")
    print(json.dumps(result))
    return 0


# ---------------------------------------------------------------- --serve N


LOCAL_MODEL_FLAGS = {"random": "--random", **LOCAL_FLAGS}


def _check_serve_flags(args: argparse.Namespace) -> None:
    from .bench_serving import ServingBenchError

    if args.serve is None:
        raise ServingBenchError("--url needs --serve N (the number of concurrent streams)")
    engine_only = [flag for flag, on in (("--naive", args.naive), ("--turns", args.turns),
                                         ("--repeats", args.repeats != 1),
                                         ("--nanochat", args.nanochat is not None)) if on]
    if engine_only:
        raise ServingBenchError(f"{', '.join(engine_only)} is for the engine benchmark, not --serve")
    if args.url is not None:
        local = [flag for name, flag in LOCAL_MODEL_FLAGS.items() if getattr(args, name) is not None]
        if local:
            raise ServingBenchError(f"{', '.join(local)} chooses a model to serve here; --url "
                                    "benchmarks the model the running server has")
        if args.batch_size is not None:
            raise ServingBenchError("--batch-size sets the in-process worker's slots; a --url server "
                                    "has its own (its --batch-size)")
    elif args.api_key is not None:
        raise ServingBenchError("--api-key is for --url (a running server started with --api-key)")


def _load_for_serving(args: argparse.Namespace, selection: ModelSelection):
    """The model to serve in-process and its label, as the engine benchmark picks them."""
    from nanochat_core.api import resolve_compute
    from nanochat_core.bench import random_chat_model

    if args.random:
        compute = resolve_compute(selection.device_type, selection.dtype, selection.quantize)
        for notice in compute.notices:
            say(notice, sys.stderr)
        chat_model = random_chat_model(args.random, compute.device, compute.dtype, compute.quantize)
        return chat_model, f"random gen5 {args.random}"
    chat_model = selection.load()
    for notice in chat_model.notices:
        say(notice, sys.stderr)
    return chat_model, chat_model.info.short_name


def run_serve(args: argparse.Namespace, selection: ModelSelection) -> int:
    """`bench --serve N [--url URL]`: progress on stderr, a summary, then the JSON line."""
    from .bench_serving import check_numbers, check_url, run_serving_benchmark

    def progress(line: str) -> None:
        say(line, sys.stderr)

    try:
        _check_serve_flags(args)
        # Bad numbers and URLs fail before a model is loaded.
        check_numbers(args.serve, args.prompt_tokens, args.decode_tokens, args.batch_size)
        if args.url is not None:
            check_url(args.url)
            result = run_serving_benchmark(args.serve, args.prompt_tokens, args.decode_tokens,
                                           url=args.url, seed=args.seed, say=progress,
                                           api_key=args.api_key)
        else:
            chat_model, label = _load_for_serving(args, selection)
            result = run_serving_benchmark(args.serve, args.prompt_tokens, args.decode_tokens,
                                           chat_model=chat_model, batch_size=args.batch_size,
                                           label=label, seed=args.seed, say=progress)
    except ValueError as e:  # ServingBenchError and CheckpointError are NanochatErrors already
        if isinstance(e, NanochatError):
            raise
        raise UsageError(str(e)) from None
    for line in serve_summary(result):
        say(line)
    print(json.dumps(result))
    return 0


def serve_summary(r: dict) -> list[str]:
    """The readable lines above the JSON."""
    where = "in-process server" if r["server"] == "in-process" else r["server"]
    slots = (f"{r['batch_size']} slot{'' if r['batch_size'] == 1 else 's'}" if r.get("batch_size")
             else "slots unknown")
    on = " ".join(str(x) for x in (r.get("device"), r.get("dtype")) if x)
    cached = f" ({r['cached_tokens']:g} cached, mean)" if r.get("cached_tokens") else ""
    ttft, health, per = r["ttft_ms"], r["health_ms"], r["per_stream_tok_s"]
    same = ("yes: every stream equals its solo run" if r["identical_to_solo"] else
            f"NO: {r['mismatches']} of {r['streams']} streams differ from their solo run")
    return [
        f"model            {r['model']} ({where}, {slots}{', ' + on if on else ''})",
        f"streams          {r['streams']} at once, {r['distinct_prompts']} distinct prompts of "
        f"~{r['prompt_tokens']} tokens{cached}, up to {r['decode_tokens']} tokens each",
        f"aggregate        {r['aggregate_tok_s']:.1f} tok/s ({r['generated_tokens']} tokens in {r['wall_s']:.2f} s)",
        f"per stream       {per['mean']:.1f} tok/s mean, {per['min']:.1f} min",
        f"first token      p50 {ttft['p50']:.0f} ms, p95 {ttft['p95']:.0f} ms, max {ttft['max']:.0f} ms",
        f"/health          p50 {health['p50']:.1f} ms, p95 {health['p95']:.1f} ms, max {health['max']:.1f} ms "
        f"({health['samples']} polls during the pass)",
        f"identical        {same}",
    ]
