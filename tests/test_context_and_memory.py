"""Context limits (nanochat's arithmetic, a per-server budget) and KV-cache memory that follows
what requests need (hardening item 7, engine side)."""

from __future__ import annotations

import threading

import pytest
import torch

from nanochat_core import load_chat_model
from nanochat_core.batching import BatchEngine
from nanochat_core.chat import SamplingParams, ValidationError
from nanochat_core.context import ContextTooLong
from nanochat_core.engine import Engine
from nanochat_core.events import Done
from nanochat_core.model import ModelConfig
from nanochat_core.synthetic import write_random_checkpoint

from conftest import wait_for

# sequence_len 64: 640 positions (10x, nanochat's rotary table), resting cache 256 positions.
CONFIG = ModelConfig(sequence_len=64, vocab_size=400, n_layer=2, n_head=2, n_kv_head=1, n_embd=128,
                     window_pattern="SL")
POSITIONS = 640
GREEDY = SamplingParams(temperature=0.0, top_k=None, max_tokens=100)


@pytest.fixture(scope="module")
def m(tmp_path_factory):
    base = tmp_path_factory.mktemp("ctx")
    write_random_checkpoint(base, CONFIG)
    return load_chat_model(base_dir=base, device="cpu")


def prompt(m, n: int, seed: int = 3) -> list[int]:
    g = torch.Generator().manual_seed(seed)
    return [m.tokenizer.bos_id] + torch.randint(0, 380, (n - 1,), generator=g).tolist()


def full_recompute(m, ids: list[int], steps: int) -> list[int]:
    seq, out = list(ids), []
    for _ in range(steps):
        out.append(int(m.logits(seq)[-1].argmax()))
        seq.append(out[-1])
    return out


def batched_run(m, engine: BatchEngine, ids: list[int], sampling=GREEDY) -> Done:
    return list(engine.stream(ids, sampling))[-1]


# ---- nanochat's limit arithmetic: P positions fed, the last reply token only sampled ----

def test_reply_runs_to_the_last_position_like_nanochat(m):
    """nanochat's Engine prefills a prompt of up to P tokens and yields P - N + 1 tokens (the last
    one is sampled from position P-1 and never fed). We used to stop one token earlier and to
    refuse a prompt of exactly P tokens."""
    ids = prompt(m, POSITIONS - 5)
    m.engine.reset_cache()
    got = [s.token for s in m.engine.generate(ids, temperature=0.0, max_tokens=100)]
    stops = set(m.engine.ids.stops)
    assert not stops & set(got)  # a reply that runs into the limit, not one that stopped
    assert got == full_recompute(m, ids, 6)  # 6 = P - N + 1, the last from position P-1
    done = list(m.stream(ids, GREEDY))[-1]
    assert done.reason == "length" and done.token_ids == tuple(got)

    full = prompt(m, POSITIONS)  # exactly P tokens: one reply token, as nanochat gives
    assert [s.token for s in m.engine.generate(full, temperature=0.0, max_tokens=100)] == \
        full_recompute(m, full, 1)


def test_batched_reply_runs_to_the_last_position(m):
    engine = BatchEngine(m.model, m.tokenizer, max_batch=2)
    try:
        ids = prompt(m, POSITIONS - 5)
        done = batched_run(m, engine, ids)
        assert done.reason == "length" and list(done.token_ids) == full_recompute(m, ids, 6)
    finally:
        engine.close()


# ---- a per-server budget: refused before any work, one line ----

def test_max_context_refuses_before_any_work_and_caps_the_reply(m):
    budget = m.batched(max_batch=2, max_context=100)
    try:
        long_chat = [{"role": "user", "content": "word " * 200}]
        with pytest.raises(ContextTooLong) as err:
            budget.check_context(long_chat)
        n = len(m.render(long_chat))
        assert str(err.value) == (f"Total conversation is too long. Maximum 100 tokens allowed, this one "
                                  f"has {n}; start a new conversation or shorten it")
        assert isinstance(err.value, ValidationError)  # front-ends already answer these (400, banner)
        for call in (lambda: budget.chat(long_chat, GREEDY), lambda: budget.submit(long_chat, GREEDY, print)):
            with pytest.raises(ContextTooLong):
                call()
        assert budget.engine.waiting.empty() and budget.engine.steps == 0

        ids = prompt(m, 97)  # fits: the reply stops where the budget's positions end
        done = list(budget.stream(ids, GREEDY))[-1]
        assert done.reason == "length" and done.stats.generated_tokens == 100 - 97 + 1
        assert budget.engine.cache.capacity <= 100
    finally:
        budget.close()


def test_max_context_on_the_batch_1_engine(m):
    engine = Engine(m.model, m.tokenizer, max_context=50)
    with pytest.raises(ContextTooLong):
        list(engine.generate(prompt(m, 51), max_tokens=5))
    assert engine.cache_bytes == 0  # refused before a cache was allocated
    steps = list(engine.generate(prompt(m, 48), temperature=0.0, max_tokens=100))
    assert len(steps) <= 3 and engine._cache.capacity == 50


def test_max_context_outside_the_model_is_refused(m):
    for bad in (0, POSITIONS + 1):
        with pytest.raises(ValidationError, match=f"max_context must be between 1 and {POSITIONS}"):
            m.batched(max_context=bad)


# ---- memory: sized to the requests, given back after long ones ----

def test_batch_cache_grows_with_the_rows_in_use_and_shrinks_after_a_long_request(m):
    engine = BatchEngine(m.model, m.tokenizer, max_batch=8)
    try:
        per_position_row = 2 * CONFIG.n_layer * CONFIG.n_kv_head * CONFIG.head_dim * 4  # k+v fp32
        short = prompt(m, 20)
        batched_run(m, engine, short, SamplingParams(temperature=0.0, max_tokens=5))
        resting = engine.cache_bytes
        assert engine.cache.batch == 1  # one chat at a time: one row, not max_batch
        assert resting == 256 * per_position_row

        done = batched_run(m, engine, prompt(m, 600), SamplingParams(temperature=0.0, max_tokens=3))
        assert done.reason == "length"
        # The long request is over: its memory is back, and the idle rows kept their prefixes
        # up to the resting size (the short chat's next turn still starts from its cache).
        wait_for(lambda: engine.cache_bytes == resting, f"the cache back to its resting {resting} bytes")
        follow_up = short + [65, 66]
        again = batched_run(m, engine, follow_up, SamplingParams(temperature=0.0, max_tokens=3))
        assert again.stats.cached_tokens >= len(short) - 1
    finally:
        engine.close()


def test_batch_rows_follow_concurrency(m):
    engine = BatchEngine(m.model, m.tokenizer, max_batch=8, prefill_chunk=8)
    try:
        results, threads = {}, []
        for i in range(3):
            t = threading.Thread(target=lambda i=i: results.__setitem__(
                i, batched_run(m, engine, prompt(m, 30 + i, seed=i), SamplingParams(temperature=0.0, max_tokens=20))))
            threads.append(t)
            t.start()
        for t in threads:
            t.join(60)
        assert len(results) == 3
        assert 2 <= engine.cache.batch <= 4  # rows for the streams that ran together, not 8
    finally:
        engine.close()


def test_batch_1_engine_gives_back_a_long_conversation_for_a_short_one(m):
    engine = Engine(m.model, m.tokenizer)
    list(engine.generate(prompt(m, 600), temperature=0.0, max_tokens=2))
    assert engine._cache.capacity == POSITIONS
    list(engine.generate(prompt(m, 10, seed=9), temperature=0.0, max_tokens=2))  # another chat
    assert engine._cache.capacity == 256
    # The next turn of a long conversation keeps its cache: only the new tokens are prefilled.
    long_chat = prompt(m, 400)
    list(engine.generate(long_chat, temperature=0.0, max_tokens=2))
    list(engine.generate(long_chat + [70, 71], temperature=0.0, max_tokens=2))
    assert engine.last_reused == 400
