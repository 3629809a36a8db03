"""nanochat's own Engine on the same weights, for side-by-side benchmarks (`bench --nanochat`).

Speed claims are ratios against nanochat measured in the same run (docs/benchmarks.md). This
module imports nanochat's code from a checkout (a path, or $NANOCHAT_SRC; it is never bundled),
builds nanochat's GPT with the same config and float32 weights as ours, and times its
Engine.generate exactly as nanochat's scripts/infer_bench.py does: the first token (prefill and
one sample), then one decode step per token. nanochat computes in float32 on CPU.

Both engines run with their stop and tool tokens disabled, so each makes exactly the asked
number of steps.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import torch

from .errors import NanochatError

ENV = "NANOCHAT_SRC"
NEVER = -1  # a token id no model samples: disables stops and tools


class NanochatCodeError(NanochatError):
    """nanochat's code cannot be used from the given path (one line)."""


def nanochat_path(path: str | None) -> Path | None:
    """The checkout to use: `path`, else $NANOCHAT_SRC, else None (side-by-side not run)."""
    chosen = path or os.environ.get(ENV)
    return Path(chosen).expanduser() if chosen else None


def import_nanochat(path: Path) -> SimpleNamespace:
    """nanochat.gpt and nanochat.engine from the checkout at `path`."""
    if not (path / "nanochat" / "engine.py").is_file():
        raise NanochatCodeError(f"{path} is not a nanochat checkout (no nanochat/engine.py in it)")
    loaded = sys.modules.get("nanochat")
    if loaded is not None and Path(loaded.__file__).resolve().parent.parent != path.resolve():
        raise NanochatCodeError(f"another nanochat ({Path(loaded.__file__).parent}) is already imported")
    sys.path.insert(0, str(path))
    try:
        gpt = importlib.import_module("nanochat.gpt")
        engine = importlib.import_module("nanochat.engine")
    except ImportError as e:
        raise NanochatCodeError(f"nanochat's code at {path} cannot be imported here: {e} "
                                "(it needs its own dependencies, e.g. pip install rustbpe filelock)") from None
    finally:
        sys.path.remove(str(path))
    return SimpleNamespace(GPT=gpt.GPT, GPTConfig=gpt.GPTConfig, Engine=engine.Engine, path=path)


class _Tokenizer:
    """What nanochat's Engine asks of a tokenizer, with every special id unreachable."""

    def encode_special(self, _name: str) -> int:
        return NEVER

    def get_bos_token_id(self) -> int:
        return NEVER

    def encode(self, _text: str) -> list[int]:
        return []

    def decode(self, _ids) -> str:
        return ""


def nanochat_engine(ns: SimpleNamespace, state: dict, config):
    """nanochat's Engine over nanochat's GPT built from `config` (ModelConfig) and our float32
    state dict (same names: nanochat's)."""
    fields = ("sequence_len", "vocab_size", "n_layer", "n_head", "n_kv_head", "n_embd", "window_pattern")
    with contextlib.redirect_stdout(sys.stderr):  # nanochat prints notes; stdout ends with our JSON
        model = ns.GPT(ns.GPTConfig(**{f: getattr(config, f) for f in fields}))
    try:
        model.load_state_dict({k: v.float() for k, v in state.items()}, strict=True)
    except RuntimeError as e:
        raise NanochatCodeError("nanochat's GPT at this checkout is another architecture than the "
                                f"benchmarked model: {str(e).splitlines()[0][:160]}") from None
    model.eval().requires_grad_(False)
    return ns.Engine(model, _Tokenizer())


def time_nanochat(engine, prompt: list[int], decode_tokens: int) -> tuple[float, float, list[int]]:
    """(first token seconds, seconds for `decode_tokens` decode steps, the tokens) of one greedy
    generation."""
    stream = engine.generate(list(prompt), num_samples=1, max_tokens=decode_tokens + 1, temperature=0.0)
    t0 = time.perf_counter()
    tokens = [next(stream)[0][0]]
    t1 = time.perf_counter()
    for _ in range(decode_tokens):
        tokens.append(next(stream)[0][0])
    t2 = time.perf_counter()
    stream.close()
    return t1 - t0, t2 - t1, tokens


def time_ours(engine, prompt: list[int], decode_tokens: int) -> tuple[float, float, list[int]]:
    """The same for our Engine: cold cache (no reuse between runs), stops and tools disabled."""
    engine.reset_cache()
    stream = engine.generate(list(prompt), temperature=0.0, max_tokens=decode_tokens + 1)
    t0 = time.perf_counter()
    tokens = [next(stream).token]
    t1 = time.perf_counter()
    for _ in range(decode_tokens):
        tokens.append(next(stream).token)
    t2 = time.perf_counter()
    stream.close()
    return t1 - t0, t2 - t1, tokens


def disable_stops(engine) -> None:
    """Make our engine's stop and tool tokens unreachable (for fixed-length timing)."""
    ids = engine.ids
    ids.bos = ids.assistant_end = NEVER
    ids.python_start = ids.python_end = ids.output_start = ids.output_end = NEVER
    ids.stops = (NEVER, NEVER)


@torch.inference_mode()
def side_by_side(ours, theirs, prompt: list[int], decode_tokens: int, repeats: int) -> dict:
    """Alternate runs of both engines (ours first, then nanochat's, `repeats` times each after
    one warm-up of each); medians and ratios (>1: ours is faster)."""
    import statistics

    time_ours(ours, prompt[:16], 2)
    time_nanochat(theirs, prompt[:16], 2)
    runs: dict[str, list[tuple]] = {"ours": [], "nanochat": []}
    for _ in range(max(1, repeats)):
        runs["ours"].append(time_ours(ours, prompt, decode_tokens))
        runs["nanochat"].append(time_nanochat(theirs, prompt, decode_tokens))
    out = {}
    # Same weights, same greedy tokens (float32 both; in bf16/int8 ours drifts, as measured in
    # docs/benchmarks.md): a check that the two really ran the same model.
    want, got = runs["nanochat"][0][2], runs["ours"][0][2]
    out["same_tokens_before_divergence"] = next((i for i, (a, b) in enumerate(zip(want, got)) if a != b), len(want))
    for name, rows in runs.items():
        ttft = statistics.median(r[0] for r in rows)
        decode = statistics.median(r[1] for r in rows)
        out[name] = {"ttft_ms": round(ttft * 1000, 2), "decode_tok_s": round(decode_tokens / decode, 2),
                     "runs_ttft_ms": [round(r[0] * 1000, 1) for r in rows],
                     "runs_decode_tok_s": [round(decode_tokens / r[1], 2) for r in rows]}
    out["tokens"] = decode_tokens + 1
    out["decode_ratio"] = round(out["ours"]["decode_tok_s"] / out["nanochat"]["decode_tok_s"], 3)
    out["ttft_ratio"] = round(out["nanochat"]["ttft_ms"] / out["ours"]["ttft_ms"], 3)
    out["repeats"] = max(1, repeats)
    return out
