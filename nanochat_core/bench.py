"""Speed measurement of the engine's model path: time to first token and decode throughput.

Runs exactly the requested number of decode steps (stop tokens ignored), reading every sampled
id back to the host each step as streaming does, so the figures are what a user sees. The naive
baseline recomputes the whole sequence every step without a KV cache (how `GPT.generate`-style
code works), for comparison.
"""

from __future__ import annotations

import resource
import time

import torch

from .model import GPT, GENERATIONS, ModelConfig

# Peak memory bandwidth (bytes/s) of GPUs we can name, for MBU. Unknown GPUs: MBU omitted.
PEAK_BANDWIDTH = {"H100": 3.35e12, "H200": 4.8e12, "A100": 2.0e12, "L4": 0.3e12, "A10": 0.6e12}


def random_model(spec: str, device: torch.device, dtype: torch.dtype) -> GPT:
    """A random-weight gen5 model from 'dDEPTH[:WIDTH[:VOCAB]]' (nanochat's d20 = d20:1280:32768)."""
    head = spec.lower().lstrip("d").split(":")
    depth = int(head[0])
    width = int(head[1]) if len(head) > 1 else -(-depth * 64 // 128) * 128
    vocab = int(head[2]) if len(head) > 2 else 32768
    n_head = max(1, width // 128)
    config = ModelConfig(sequence_len=2048, vocab_size=vocab, n_layer=depth, n_head=n_head,
                         n_kv_head=n_head, n_embd=width, window_pattern="SSSL")
    model = GPT(config, GENERATIONS["gen5-smear-backout"])
    model.init_weights(seed=0)
    with torch.no_grad():  # give zero-initialised projections some signal
        for p in model.parameters():
            if p.ndim == 2 and p.abs().sum() == 0:
                p.normal_(0, 0.02)
    model = model.to(device=device, dtype=dtype).eval()
    model.refresh_rotary(dtype)
    return model


def weight_bytes_per_step(model: GPT) -> int:
    """Bytes of weights a decode step reads: every matrix except embedding tables, of which
    only one row per token is gathered."""
    total = 0
    for name, p in model.named_parameters():
        if name.startswith(("transformer.wte", "value_embed", "bigram_embed")):
            continue
        total += p.numel() * p.element_size()
    return total


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


@torch.inference_mode()
def _cached_run(model: GPT, prompt: torch.Tensor, decode_tokens: int) -> tuple[float, float]:
    device = prompt.device
    B, N = prompt.shape
    cache = model.new_cache(B, N + decode_tokens + 1)
    _sync(device)
    t0 = time.perf_counter()
    logits = model(prompt, cache=cache, last_only=True)
    token = torch.argmax(logits, dim=-1)
    token.tolist()  # the host needs the first id to stream it
    t1 = time.perf_counter()
    prev = prompt[:, -1]
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
    device = model.lm_head.weight.device
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

    wbytes = weight_bytes_per_step(model)
    step_s = best_decode / decode_tokens
    result = {
        "ttft_ms": round(best_ttft * 1000, 2),
        "decode_tok_s": round(batch_size * decode_tokens / best_decode, 2),
        "per_stream_tok_s": round(decode_tokens / best_decode, 2),
        "step_ms": round(step_s * 1000, 3),
        "prompt_tokens": prompt_tokens,
        "decode_tokens": decode_tokens,
        "batch_size": batch_size,
        "device": str(device) if device.type != "cuda" else torch.cuda.get_device_name(device),
        "dtype": str(next(model.parameters()).dtype).removeprefix("torch."),
        "generation": model.arch.name,
        "n_layer": model.config.n_layer,
        "n_embd": model.config.n_embd,
        "vocab_size": model.config.vocab_size,
        "params": model.num_params(),
        "weight_bytes": wbytes,
        "torch_threads": torch.get_num_threads(),
    }
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
    result["peak_memory_mb"] = round(_peak_memory_mb(device), 1)
    return result
