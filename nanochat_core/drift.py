"""How far a bfloat16 or int8 model's answers drift from the float32 model's.

Three numbers per prompt (docs/benchmarks.md "Quality of bf16 and int8"):
- max |Δlogit| over the prompt's positions (full-sequence forward, softcapped logits);
- greedy agreement: both models continue the prompt greedily for `steps` tokens (stop tokens
  ignored); how many tokens come out before the first divergence;
- teacher-forced agreement: on float32's continuation, the share of positions where the other
  model's argmax is the same token (insensitive to where a first divergence sends the text).
"""

from __future__ import annotations

import torch


@torch.inference_mode()
def greedy_continuation(model, ids: list[int], steps: int) -> list[int]:
    """`steps` greedy tokens after `ids` through the KV cache, stop tokens ignored."""
    steps = max(0, min(steps, model.rotary_len - len(ids) + 1))
    cache = model.new_cache(1, len(ids) + steps)
    prompt = torch.tensor([ids], device=model.device)
    logits = model(prompt, cache=cache, last_only=True)
    out, prev = [], prompt[:, -1]
    for i in range(steps):
        token = logits.argmax(-1)
        out.append(int(token))
        if i + 1 < steps:
            logits = model(token[:, None], cache=cache, prev_token=prev, last_only=True)
            prev = token
    return out


@torch.inference_mode()
def measure_drift(reference, candidate, ids: list[int], steps: int = 64) -> dict:
    """Compare `candidate` (a GPT in bf16 or int8) with `reference` (the same weights in fp32)."""
    idx = torch.tensor([ids], device=reference.device)
    ref_logits = reference(idx)[0].float().cpu()
    cand_logits = candidate(idx.to(candidate.device))[0].float().cpu()
    want = greedy_continuation(reference, ids, steps)
    got = greedy_continuation(candidate, ids, steps)
    same = next((i for i, (a, b) in enumerate(zip(want, got)) if a != b), len(want))
    forced = torch.tensor([ids + want[:-1]], device=candidate.device)
    forced_argmax = candidate(forced)[0, len(ids) - 1:].argmax(-1).cpu().tolist()
    return {
        "max_abs_dlogit": round((ref_logits - cand_logits).abs().max().item(), 4),
        "steps": len(want),
        "greedy_same_before_divergence": same,
        "greedy_fraction": round(same / max(len(want), 1), 4),
        "teacher_forced_agreement": round(sum(a == b for a, b in zip(forced_argmax, want)) / max(len(want), 1), 4),
    }
