"""`nanochat-tui bench`: a readable summary, then one JSON object as the last stdout line."""

from __future__ import annotations

import argparse
import json
import sys

from .config import ModelSelection


def run_bench(args: argparse.Namespace, selection: ModelSelection) -> int:
    from nanochat_core.api import resolve_device_and_dtype
    from nanochat_core.bench import random_chat_model, run_benchmark, run_multi_turn

    try:
        if args.random:
            device, dtype = resolve_device_and_dtype(selection.device_type, selection.dtype)
            chat_model = random_chat_model(args.random, device, dtype)
            label = f"random gen5 {args.random}"
        else:
            chat_model = selection.load()
            for notice in chat_model.notices:
                print(notice, file=sys.stderr)
            label = chat_model.info.short_name
        result = run_benchmark(chat_model.model, args.prompt_tokens, args.decode_tokens, args.batch_size,
                               repeats=args.repeats, naive=args.naive, seed=args.seed)
        if args.turns:
            result["multi_turn"] = run_multi_turn(chat_model, args.turns, args.reply_tokens, seed=args.seed)
    except ValueError as e:
        print(f"nanochat-tui bench: error: {e}", file=sys.stderr)
        return 2
    result["model"] = label
    print(f"model            {label} ({result['params'] / 1e6:.1f}M params, {result['weight_bytes'] / 1e6:.1f} MB of matrices per step)")
    print(f"device           {result['device']} {result['dtype']}, batch {result['batch_size']}")
    print(f"first token      {result['ttft_ms']:.1f} ms for {result['prompt_tokens']} prompt tokens")
    print(f"decode           {result['decode_tok_s']:.1f} tok/s over {result['decode_tokens']} steps ({result['step_ms']:.2f} ms/step)")
    if "mbu" in result:
        print(f"bandwidth use    {result['mbu'] * 100:.1f}% (limit {result['bandwidth_limit_tok_s']:.0f} tok/s)")
    if "naive_decode_tok_s" in result:
        print(f"naive baseline   {result['naive_decode_tok_s']:.1f} tok/s (full recompute, {result['naive_decode_steps']} steps): {result['speedup_vs_naive']}x")
    if "multi_turn" in result:
        mt = result["multi_turn"]
        print(f"multi-turn       {mt['turns']} turns, history re-sent as text: first token {mt['ttft_turn1_ms']:.1f} ms "
              f"at turn 1, {mt['ttft_last_turn_ms']:.1f} ms at turn {mt['turns']} ({mt['ttft_last_vs_first']}x; "
              f"{mt['last_turn_cached_tokens']}/{mt['last_turn_prompt_tokens']} prompt tokens from the cache)")
        print(f"  without reuse  {mt['no_reuse_ttft_last_turn_ms']:.1f} ms at turn {mt['turns']} ({mt['no_reuse_last_vs_first']}x)")
    print(f"peak memory      {result['peak_memory_mb']:.0f} MB")
    print(json.dumps(result))
    return 0
