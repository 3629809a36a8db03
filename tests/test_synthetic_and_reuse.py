"""Random checkpoints in nanochat's format (GQA included), and KV-cache reuse across chat turns."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from nanochat_core import load_chat_model
from nanochat_core.chat import SamplingParams
from nanochat_core.events import Done
from nanochat_core.model import ModelConfig, _attend
from nanochat_core.synthetic import write_random_checkpoint


def test_random_checkpoint_loads_through_the_normal_loader(tmp_path):
    write_random_checkpoint(tmp_path, "d2:128:512", step=3)
    m = load_chat_model(base_dir=tmp_path)
    assert (m.info.generation, m.info.model_tag, m.info.step, m.info.vocab_size) == ("gen5-smear-backout", "d2", 3, 512)
    messages = [{"role": "user", "content": "hello"}]
    reply = m.reply(messages, SamplingParams(temperature=0, max_tokens=5))
    ids = list(m.generate_ids(m.render(messages), temperature=0.0, max_tokens=5))
    assert 1 <= len(ids) <= 5  # it really generated (5 steps, or fewer ending in a stop token)
    assert reply == m.tokenizer.decode([t for t in ids if t not in m.tokenizer.special_ids])


def test_gqa_checkpoint_cache_matches_full_recompute(tmp_path):
    config = ModelConfig(sequence_len=64, vocab_size=400, n_layer=3, n_head=4, n_kv_head=2, n_embd=128,
                         window_pattern="SL")
    write_random_checkpoint(tmp_path, config)
    m = load_chat_model(base_dir=tmp_path)
    assert m.info.n_kv_head == 2 and m.model.windows == [128, 64, 64]  # gen5: S rounds up to 128
    ids = [m.tokenizer.bos_id] + torch.randint(0, 390, (150,), generator=torch.Generator().manual_seed(1)).tolist()
    seq, want = list(ids), []
    for _ in range(5):
        want.append(int(m.logits(seq)[-1].argmax()))
        seq.append(want[-1])
    got = [s.token for s in m.engine.generate(ids, temperature=0.0, max_tokens=5)]
    stops = (m.tokenizer.bos_id, m.tokenizer.special("<|assistant_end|>"))
    # all five steps, or fewer only because the model emitted a stop token (the engine ends there)
    assert len(got) == 5 or (got and got[-1] in stops), got
    assert got == want[: len(got)]


def test_gqa_attention_equals_repeated_heads():
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(1, h, 10, 16, generator=g) for h in (4, 2, 2))
    ours = _attend(q, k, v, start=0, first=0, window=3)
    k4, v4 = k.repeat_interleave(2, dim=1), v.repeat_interleave(2, dim=1)
    i, j = torch.arange(10)[:, None], torch.arange(10)[None, :]
    mask = (j <= i) & (i - j <= 3)
    ref = F.scaled_dot_product_attention(q, k4, v4, attn_mask=mask)
    assert torch.allclose(ours, ref, atol=1e-6)


def test_text_history_reuses_the_cache_with_the_generated_ids(load_fixture):
    """Turn 2 sends turn 1's reply back as TEXT; the engine recognises it and prefills only the
    new part, and the answer equals a fresh model's answer on the same exact ids."""
    m = load_fixture("gen5-smear-backout")
    m.engine.reset_cache()
    sp = SamplingParams(temperature=0.0, max_tokens=12)
    history = [{"role": "user", "content": "Tell me about the cache."}]
    first = [e for e in m.chat(history, sp) if isinstance(e, Done)][0]
    history += [{"role": "assistant", "content": first.text}, {"role": "user", "content": "And then?"}]
    second = [e for e in m.chat(history, sp) if isinstance(e, Done)][0]
    assert second.stats.cached_tokens >= second.stats.prompt_tokens - 12
    # The prompt used the generated ids, not a re-encoding of the text:
    expected_prompt = (m.render(history[:1]) + list(first.token_ids) +
                       [m.tokenizer.special("<|assistant_end|>")] +
                       m.render([history[2]])[1:])
    m.engine.reset_cache()  # a cold cache: the full prompt is recomputed
    fresh = [s.token for s in m.engine.generate(expected_prompt, temperature=0.0, max_tokens=12)]
    stop = {m.tokenizer.special("<|assistant_end|>"), m.tokenizer.bos_id}
    assert list(second.token_ids) == [t for t in fresh if t not in stop]
