"""Speed measurement of the engine's model path: time to first token and decode throughput.

Runs exactly the requested number of decode steps (stop tokens ignored), reading every sampled
id back to the host each step as streaming does, so the figures are what a user sees. The naive
baseline recomputes the whole sequence every step without a KV cache (how `GPT.generate`-style
code works), for comparison.
"""

from __future__ import annotations

import resource
import time
from pathlib import Path

import torch

from .chat import SamplingParams
from .events import Done
from .model import GPT
from .synthetic import parse_shape, random_gpt, synthetic_encoding
from .tokenizer import Tokenizer

# Peak memory bandwidth (bytes/s) of GPUs we can name, for MBU. Unknown GPUs: MBU omitted.
PEAK_BANDWIDTH = {"H100": 3.35e12, "H200": 4.8e12, "A100": 2.0e12, "L4": 0.3e12, "A10": 0.6e12}


def random_model(spec: str, device: torch.device, dtype: torch.dtype, quantize: str | None = None) -> GPT:
    """A random-weight gen5 model of shape 'dDEPTH[:WIDTH[:VOCAB]]' on device, in dtype, made
    ready exactly as the loader makes a checkpoint ready (api.ready_model)."""
    from .api import Compute, ready_model

    model, _params = ready_model(random_gpt(parse_shape(spec)), Compute(device, dtype, quantize, []))
    return model


def random_chat_model(spec: str, device: torch.device, dtype: torch.dtype, quantize: str | None = None):
    """The same, with a synthetic tokenizer, as a ChatModel (multi-turn and side-by-side)."""
    from .api import ChatModel, Compute
    from .model_info import ModelInfo

    compute = Compute(device, dtype, quantize, [])
    model = random_model(spec, device, dtype, quantize)
    tokenizer = Tokenizer(synthetic_encoding(model.config.vocab_size))
    c = model.config
    info = ModelInfo(generation=model.arch.name, source="random", model_tag=f"d{c.n_layer}", step=0,
                     checkpoint_dir="", is_demo=False, n_layer=c.n_layer, n_embd=c.n_embd,
                     n_head=c.n_head, n_kv_head=c.n_kv_head, vocab_size=c.vocab_size,
                     sequence_len=c.sequence_len, window_pattern=c.window_pattern,
                     softcap=model.arch.softcap, params=model.param_count, device=str(device),
                     dtype=compute.label, quantize=quantize)
    return ChatModel(model, tokenizer, info)


def weight_bytes_per_step(model: GPT) -> int:
    """Bytes of weights a decode step reads: every matrix (float or int8 with its scales) except
    embedding tables, of which only one row per token is gathered."""
    total = 0
    for name, t in list(model.named_parameters()) + list(model.named_buffers()):
        if name.startswith(("transformer.wte", "value_embed", "bigram_embed")) or name in ("cos", "sin"):
            continue
        total += t.numel() * t.element_size()
    from .quantize import PackedBF16Linear

    for module in model.modules():  # packed bf16 matrices are held outside parameters/buffers
        if isinstance(module, PackedBF16Linear):
            total += module.in_features * module.out_features * 2
    return total


def copy_bandwidth(device: torch.device, megabytes: int = 512, repeats: int = 5) -> float:
    """The machine's memory bandwidth as a copy test measures it (bytes read + written per
    second, best of `repeats`): the physical limit a decode step's weight reads run into."""
    n = megabytes * 2**20 // 4
    src = torch.ones(n, dtype=torch.float32, device=device)
    dst = torch.empty_like(src)
    best = float("inf")
    for _ in range(repeats + 1):  # the first pass faults the pages in
        _sync(device)
        t0 = time.perf_counter()
        dst.copy_(src)
        _sync(device)
        best = min(best, time.perf_counter() - t0)
    del src, dst
    return 2 * n * 4 / best


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    # VmHWM is this process image's own high-water mark. ru_maxrss would also carry the
    # parent's resident size at fork (Linux keeps it across exec), which inflates the figure
    # when bench is started by a large process (a test runner, a notebook).
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024  # kB
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


@torch.inference_mode()
def _cached_run(model: GPT, prompt: torch.Tensor, decode_tokens: int, mode: str = "eager") -> tuple[float, float]:
    """Prefill + `decode_tokens` greedy steps; mode "graph" replays a CUDA graph per step."""
    device = prompt.device
    B, N = prompt.shape
    cache = model.new_cache(B, N + decode_tokens + 2)
    _sync(device)
    t0 = time.perf_counter()
    logits = model(prompt, cache=cache, last_only=True)
    token = torch.argmax(logits, dim=-1)
    token.tolist()  # the host needs the first id to stream it
    t1 = time.perf_counter()
    prev = prompt[:, -1]
    if mode == "graph":
        from .cuda_graphs import GraphedDecode

        graphed = GraphedDecode(model, cache)  # capture cost is paid once at load in the engine
        t_capture_end = time.perf_counter()
        ids = token.tolist()
        prev_id = int(prev[0])
        for _ in range(decode_tokens):
            logits = graphed(ids[0], cache.pos, prev_id)
            cache.pos += 1
            prev_id, ids = ids[0], torch.argmax(logits, dim=-1).tolist()
        t2 = time.perf_counter()
        return t1 - t0, t2 - t_capture_end
    for _ in range(decode_tokens):
        logits = model(token[:, None], cache=cache, prev_token=prev, last_only=True)
        prev, token = token, torch.argmax(logits, dim=-1)
        token.tolist()
    t2 = time.perf_counter()
    return t1 - t0, t2 - t1


@torch.inference_mode()
def _naive_run(model: GPT, prompt: torch.Tensor, decode_tokens: int) -> float:
    seq = prompt
    t0 = time.perf_counter()
    for _ in range(decode_tokens):
        logits = model(seq)[:, -1]
        token = torch.argmax(logits, dim=-1)
        token.tolist()
        seq = torch.cat([seq, token[:, None]], dim=1)
    return time.perf_counter() - t0


def run_benchmark(model: GPT, prompt_tokens: int, decode_tokens: int, batch_size: int = 1,
                  repeats: int = 1, naive: bool = False, seed: int = 0, naive_max_steps: int = 64) -> dict:
    device = model.device
    limit = model.rotary_len
    if prompt_tokens < 1 or decode_tokens < 1 or batch_size < 1:
        raise ValueError("--prompt-tokens, --decode-tokens and --batch-size must be at least 1")
    if prompt_tokens + decode_tokens + 1 > limit:
        raise ValueError(f"prompt + decode tokens must stay below the model's context of {limit}")
    g = torch.Generator().manual_seed(seed)
    prompt = torch.randint(0, model.config.vocab_size, (1, prompt_tokens), generator=g)
    prompt = prompt.expand(batch_size, -1).contiguous().to(device)

    _cached_run(model, prompt[:, : min(16, prompt_tokens)], 4)  # warm-up (kernels, allocator)
    best_ttft, best_decode = float("inf"), float("inf")
    for _ in range(max(1, repeats)):
        ttft, decode = _cached_run(model, prompt, decode_tokens)
        best_ttft, best_decode = min(best_ttft, ttft), min(best_decode, decode)
    eager_decode = best_decode
    use_graph = device.type == "cuda" and batch_size == 1
    if use_graph:  # the engine's fast path on CUDA; eager stays in the report for comparison
        best_decode = min(_cached_run(model, prompt, decode_tokens, "graph")[1] for _ in range(max(1, repeats)))

    wbytes = weight_bytes_per_step(model)
    c = model.config  # the timed runs' cache: keys + values, every layer, prompt + decode positions
    kv_bytes = (2 * c.n_layer * batch_size * c.n_kv_head * (prompt_tokens + decode_tokens + 2) * c.head_dim
                * torch.empty((), dtype=model.compute_dtype).element_size())
    step_s = best_decode / decode_tokens
    result = {
        "ttft_ms": round(best_ttft * 1000, 2),
        "decode_tok_s": round(batch_size * decode_tokens / best_decode, 2),
        "per_stream_tok_s": round(decode_tokens / best_decode, 2),
        "step_ms": round(step_s * 1000, 3),
        "decode_path": "cuda-graph" if use_graph else "eager",
        "eager_decode_tok_s": round(batch_size * decode_tokens / eager_decode, 2),
        "prompt_tokens": prompt_tokens,
        "decode_tokens": decode_tokens,
        "batch_size": batch_size,
        "device": str(device) if device.type != "cuda" else torch.cuda.get_device_name(device),
        "dtype": str(model.compute_dtype).removeprefix("torch."),
        "generation": model.arch.name,
        "n_layer": model.config.n_layer,
        "n_embd": model.config.n_embd,
        "vocab_size": model.config.vocab_size,
        "params": getattr(model, "param_count", None) or model.num_params(),
        "weight_bytes": wbytes,
        "torch_threads": torch.get_num_threads(),
    }
    # Decode is bound by memory bandwidth: each step reads every matrix once (plus the KV cache,
    # small next to the weights at these lengths). Measured in this run, against a copy test.
    result["peak_memory_mb"] = round(_peak_memory_mb(device), 1)  # before the copy test's buffers
    measured = copy_bandwidth(device)
    result["quantize"] = getattr(model, "quantized", None)
    result["decode_bytes_per_s"] = round(wbytes / step_s)
    result["memory_bandwidth_bytes_per_s"] = round(measured)
    result["bandwidth_fraction"] = round(wbytes / step_s / measured, 4)
    result["kv_cache_bytes"] = kv_bytes
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        peak = next((bw for key, bw in PEAK_BANDWIDTH.items() if key in name), None)
        if peak:
            result["mbu"] = round(wbytes / step_s / peak, 4)
            result["bandwidth_limit_tok_s"] = round(peak / wbytes, 1)
    if naive:
        steps = min(decode_tokens, naive_max_steps)
        naive_s = _naive_run(model, prompt, steps)
        result["naive_decode_steps"] = steps
        result["naive_decode_tok_s"] = round(batch_size * steps / naive_s, 2)
        result["speedup_vs_naive"] = round(result["decode_tok_s"] / result["naive_decode_tok_s"], 2)
    return result


WORDS = ("the model keeps a cache of keys and values so that each new token only attends to what "
         "was already computed instead of running the whole conversation again every step").split()


def _user_message(rng: torch.Generator, words: int) -> str:
    picks = torch.randint(0, len(WORDS), (words,), generator=rng).tolist()
    return " ".join(WORDS[i] for i in picks) + "?"


def run_multi_turn(chat_model, turns: int, reply_tokens: int, user_words: int = 24, seed: int = 0) -> dict:
    """A conversation of `turns` turns whose history goes back as TEXT each turn (as the web page
    and OpenAI clients send it). Measured twice: with KV-cache reuse across turns, and with the
    cache dropped before every turn (a full re-prefill, what nanochat's engine does)."""
    results = {}
    for mode in ("reuse", "no_reuse"):
        rng = torch.Generator().manual_seed(seed)
        history: list[dict] = []
        ttfts, contexts, cached = [], [], []
        chat_model.engine.reset_cache()
        for turn in range(turns):
            history.append({"role": "user", "content": _user_message(rng, user_words)})
            if mode == "no_reuse":
                chat_model.engine.reset_cache()
            done = None
            for event in chat_model.chat(history, SamplingParams(temperature=0.0, max_tokens=reply_tokens, seed=turn)):
                if isinstance(event, Done):
                    done = event
            assert done is not None
            ttfts.append(done.stats.ttft_s * 1000)
            contexts.append(done.stats.prompt_tokens)
            cached.append(done.stats.cached_tokens)
            history.append({"role": "assistant", "content": done.text if done.text.strip() else "ok"})
        results[mode] = {"ttft_ms": [round(t, 2) for t in ttfts], "prompt_tokens": contexts,
                         "cached_tokens": cached}
    reuse, full = results["reuse"]["ttft_ms"], results["no_reuse"]["ttft_ms"]
    return {
        "turns": turns,
        "ttft_turn1_ms": reuse[0],
        "ttft_last_turn_ms": reuse[-1],
        "ttft_last_vs_first": round(reuse[-1] / reuse[0], 3),
        "no_reuse_ttft_last_turn_ms": full[-1],
        "no_reuse_last_vs_first": round(full[-1] / full[0], 3),
        "last_turn_prompt_tokens": results["reuse"]["prompt_tokens"][-1],
        "last_turn_cached_tokens": results["reuse"]["cached_tokens"][-1],
        "per_turn": results,
    }


def run_side_by_side(spec: str, chat_model, nanochat: str | None, prompt_tokens: int, decode_tokens: int,
                     repeats: int, seed: int = 0) -> dict:
    """nanochat's Engine beside ours on the same random weights (nanochat_side.py). Without a
    checkout (`nanochat` None and no $NANOCHAT_SRC) it says so instead of giving ratios."""
    from .engine import Engine
    from .nanochat_side import disable_stops, import_nanochat, nanochat_engine, nanochat_path, side_by_side

    path = nanochat_path(nanochat)
    if path is None:
        return {"run": False, "note": "nanochat's Engine not run: no checkout given (--nanochat PATH or "
                                      "$NANOCHAT_SRC), so no ratios"}
    ns = import_nanochat(path)
    theirs = nanochat_engine(ns, random_gpt(parse_shape(spec)).state_dict(), parse_shape(spec))
    ours = Engine(chat_model.model, chat_model.tokenizer)
    disable_stops(ours)
    g = torch.Generator().manual_seed(seed)
    prompt = torch.randint(0, chat_model.model.config.vocab_size, (prompt_tokens,), generator=g).tolist()
    result = side_by_side(ours, theirs, prompt, decode_tokens, repeats)
    return {"run": True, "path": str(path), "nanochat_dtype": "float32", **result}
