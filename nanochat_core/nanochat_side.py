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


def nanochat_stream(engine, prompt: list[int], tokens: int):
    """nanochat's greedy generation, one token per next() (the first includes the prefill)."""
    for column, _masks in engine.generate(list(prompt), num_samples=1, max_tokens=tokens, temperature=0.0):
        yield column[0]


def our_stream(engine, prompt: list[int], tokens: int):
    """The same for our Engine: cold cache (no reuse between runs), stops and tools disabled."""
    engine.reset_cache()
    for step in engine.generate(list(prompt), temperature=0.0, max_tokens=tokens):
        yield step.token


def disable_stops(engine) -> None:
    """Make our engine's stop and tool tokens unreachable (for fixed-length timing)."""
    ids = engine.ids
    ids.bos = ids.assistant_end = NEVER
    ids.python_start = ids.python_end = ids.output_start = ids.output_end = NEVER
    ids.stops = (NEVER, NEVER)


@torch.inference_mode()
def side_by_side(ours, theirs, prompt: list[int], decode_tokens: int, repeats: int) -> dict:
    """Both engines generate the same greedy continuation, step by step in alternation (the
    first token, i.e. the prefill, then each decode step: ours, nanochat's, ours, ... with the
    order swapped every repeat), so both see the same machine at the same moments. Medians of
    the first-token times and of the per-step times; ratios > 1 mean ours is faster."""
    import statistics

    repeats = max(1, repeats)
    for stream in (our_stream(ours, prompt[:16], 3), nanochat_stream(theirs, prompt[:16], 3)):
        list(stream)  # warm-up of each
    first: dict[str, list[float]] = {"ours": [], "nanochat": []}
    steps: dict[str, list[float]] = {"ours": [], "nanochat": []}
    tokens: dict[str, list[int]] = {"ours": [], "nanochat": []}
    for r in range(repeats):
        streams = {"ours": our_stream(ours, prompt, decode_tokens + 1),
                   "nanochat": nanochat_stream(theirs, prompt, decode_tokens + 1)}
        order = ["ours", "nanochat"] if r % 2 == 0 else ["nanochat", "ours"]
        for i in range(decode_tokens + 1):
            for name in order:
                t0 = time.perf_counter()
                token = next(streams[name])
                (first if i == 0 else steps)[name].append(time.perf_counter() - t0)
                if r == 0:
                    tokens[name].append(token)
        for stream in streams.values():
            stream.close()
    out: dict = {}
    for name in ("ours", "nanochat"):
        out[name] = {"ttft_ms": round(statistics.median(first[name]) * 1000, 2),
                     "decode_tok_s": round(1 / statistics.median(steps[name]), 2),
                     "runs_ttft_ms": [round(t * 1000, 1) for t in first[name]],
                     "decode_step_ms_min": round(min(steps[name]) * 1000, 3)}
    # Same weights, same greedy tokens (float32 both; in bf16/int8 ours drifts, as measured in
    # docs/benchmarks.md): a check that the two really ran the same model.
    want, got = tokens["nanochat"], tokens["ours"]
    out["same_tokens_before_divergence"] = next((i for i, (a, b) in enumerate(zip(want, got)) if a != b), len(want))
    out["tokens"] = decode_tokens + 1
    out["decode_ratio"] = round(out["ours"]["decode_tok_s"] / out["nanochat"]["decode_tok_s"], 3)
    out["ttft_ratio"] = round(out["nanochat"]["ttft_ms"] / out["ours"]["ttft_ms"], 3)
    out["repeats"] = repeats
    return out
