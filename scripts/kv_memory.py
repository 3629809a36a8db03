"""Resident memory of a batched server model before, during and after one long request
(docs/benchmarks.md "Memory"; hardening item 7).

    .venv/bin/python scripts/kv_memory.py [--shape d4:512:8192] [--prompt-tokens 5000] [--batch 8]

Writes a random checkpoint, loads it as the web server does (`m.batched(batch)`), answers a short
chat, then one long prompt, then the short chat again, and prints RSS (from /proc/self/status)
after each, as one JSON line.
"""

from __future__ import annotations

import argparse
import json
import re
import tempfile
from pathlib import Path

import torch

from nanochat_core import load_chat_model
from nanochat_core.chat import SamplingParams
from nanochat_core.synthetic import write_random_checkpoint


def rss_mb() -> float:
    status = Path("/proc/self/status").read_text()
    return int(re.search(r"VmRSS:\s+(\d+) kB", status).group(1)) / 1024


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--shape", default="d4:512:8192")
    p.add_argument("--prompt-tokens", type=int, default=5000)
    p.add_argument("--batch", type=int, default=8)
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        write_random_checkpoint(tmp, args.shape)
        m = load_chat_model(base_dir=tmp, device="cpu")
    bm = m.batched(args.batch)
    sp = SamplingParams(temperature=0.0, max_tokens=4)
    short = m.render([{"role": "user", "content": "hello there"}])
    ids = [m.tokenizer.bos_id] + torch.randint(0, 500, (args.prompt_tokens - 1,)).tolist()
    report = {"shape": args.shape, "batch": args.batch, "prompt_tokens": args.prompt_tokens}
    list(bm.stream(short, sp))
    report["rss_after_short_mb"] = round(rss_mb())
    list(bm.stream(ids, sp))
    report["rss_after_long_mb"] = round(rss_mb())
    list(bm.stream(short, sp))
    report["rss_after_short_again_mb"] = round(rss_mb())
    engine = bm.engine
    if hasattr(engine, "cache_bytes"):
        report["kv_cache_mb_now"] = round(engine.cache_bytes / 2**20, 1)
    bm.close()
    print(json.dumps(report))


if __name__ == "__main__":
    main()
