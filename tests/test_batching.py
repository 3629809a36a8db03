"""Continuous batching: concurrent streams equal their solo runs, join/leave freely, cancel."""

from __future__ import annotations

import threading

import pytest

from nanochat_core.batching import BatchEngine
from nanochat_core.chat import SamplingParams
from nanochat_core.context import ContextTooLong
from nanochat_core.events import Done, ErrorEvent, TextDelta


def solo(m, ids, sampling):
    m.engine.reset_cache()
    return [e for e in m.engine.stream(ids, sampling) if isinstance(e, Done)][0]


def prompts(m, n):
    texts = ["hello", "What is 12 times 7?", "tell me about vim", "x", "Why keep a cache of keys?",
             "a longer question about how windows and caches interact in attention layers", "ok", "edit"]
    return [m.render([{"role": "user", "content": texts[i % len(texts)] * (1 + i // len(texts))}]) for i in range(n)]


@pytest.mark.parametrize("gen", ["gen5-smear-backout", "gen3-engram", "gen1-original", "gen2-resid-x0-lambdas"])
def test_concurrent_greedy_streams_equal_solo_runs(gen, load_fixture):
    m = load_fixture(gen)
    sampling = SamplingParams(temperature=0.0, max_tokens=40)
    batch = BatchEngine(m.model, m.tokenizer, max_batch=4, prefill_chunk=16)
    try:
        all_ids = prompts(m, 7)  # more requests than rows: some wait, rows are reused
        results: dict[int, list] = {i: [] for i in range(len(all_ids))}
        finished = threading.Semaphore(0)

        def sink(i):
            def emit(event):
                results[i].append(event)
                if isinstance(event, (Done, ErrorEvent)):
                    finished.release()
            return emit

        for i, ids in enumerate(all_ids):
            batch.submit(ids, sampling, sink(i))
        for _ in all_ids:
            assert finished.acquire(timeout=120)
        assert batch.steps < sum(e[-1].stats.generated_tokens for e in results.values())  # really batched
        for i, ids in enumerate(all_ids):
            done = results[i][-1]
            assert isinstance(done, Done)
            want = solo(m, ids, sampling)
            assert done.token_ids == want.token_ids and done.reason == want.reason
            assert "".join(e.text for e in results[i] if isinstance(e, TextDelta)) == done.text
    finally:
        batch.close()


def test_seeded_sampling_per_row_equals_solo(load_fixture):
    m = load_fixture("gen4-rope100k-qkscale")
    batch = BatchEngine(m.model, m.tokenizer, max_batch=3)
    try:
        settings = [SamplingParams(temperature=t, top_k=k, max_tokens=25, seed=s)
                    for t, k, s in [(0.9, 50, 1), (1.3, 0, 2), (0.5, 5, 3)]]
        all_ids = prompts(m, 3)
        streams = [list(batch.stream(ids, sp)) for ids, sp in zip(all_ids, settings)]  # sequential
        outs = {}
        threads = [threading.Thread(target=lambda i=i: outs.__setitem__(i, list(batch.stream(all_ids[i], settings[i]))))
                   for i in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        for i in range(3):
            assert outs[i][-1].token_ids == solo(m, all_ids[i], settings[i]).token_ids == streams[i][-1].token_ids
    finally:
        batch.close()


def test_cancel_one_stream_leaves_others(load_fixture):
    m = load_fixture("gen5-smear-backout")
    batch = BatchEngine(m.model, m.tokenizer, max_batch=4)
    try:
        sampling = SamplingParams(temperature=0.0, max_tokens=300)
        ids = prompts(m, 2)
        cancel = threading.Event()
        first = []
        got_text = threading.Event()

        def emit(event):
            first.append(event)
            if isinstance(event, TextDelta):
                got_text.set()

        batch.submit(ids[0], sampling, emit, cancel)
        other = batch.stream(ids[1], SamplingParams(temperature=0.0, max_tokens=30))
        assert got_text.wait(30)
        cancel.set()
        rest = list(other)
        assert rest[-1].token_ids == solo(m, ids[1], SamplingParams(temperature=0.0, max_tokens=30)).token_ids
        deadline = threading.Event()
        for _ in range(100):
            if first and isinstance(first[-1], Done):
                break
            deadline.wait(0.05)
        assert isinstance(first[-1], Done) and first[-1].reason == "cancelled"
        assert first[-1].stats.generated_tokens < 300
    finally:
        batch.close()


def test_next_turn_reuses_an_idle_row(load_fixture):
    m = load_fixture("gen5-smear-backout")
    batch = BatchEngine(m.model, m.tokenizer, max_batch=2)
    try:
        sp = SamplingParams(temperature=0.0, max_tokens=10)
        turn1 = prompts(m, 1)[0]
        d1 = list(batch.stream(turn1, sp))[-1]
        turn2 = turn1 + list(d1.token_ids) + [m.tokenizer.special("<|assistant_end|>")] + \
            m.render([{"role": "user", "content": "more"}])[1:]
        d2 = list(batch.stream(turn2, sp))[-1]
        assert d2.stats.cached_tokens >= len(turn1)
        assert d2.token_ids == solo(m, turn2, sp).token_ids
    finally:
        batch.close()


def test_overlong_prompt_is_refused_before_it_is_queued(load_fixture):
    m = load_fixture("gen5-smear-backout")
    batch = BatchEngine(m.model, m.tokenizer, max_batch=2)
    try:
        with pytest.raises(ContextTooLong) as err:
            batch.submit([m.tokenizer.bos_id] + [65] * 3000, SamplingParams(max_tokens=3), lambda e: None)
        assert str(err.value) == ("Total conversation is too long. Maximum 2560 tokens allowed, this one "
                                  "has 3001; start a new conversation or shorten it")
        assert batch.waiting.empty() and batch.steps == 0
    finally:
        batch.close()


def test_batched_chat_model_is_thread_safe_and_remembers_replies(load_fixture):
    m = load_fixture("gen5-smear-backout")
    bm = m.batched(max_batch=8)  # more rows than requests: every reply stays cached
    try:
        sp = SamplingParams(temperature=0.0, max_tokens=12)
        questions = [[{"role": "user", "content": f"question {i}"}] for i in range(6)]
        outs = {}
        threads = [threading.Thread(target=lambda i=i: outs.__setitem__(i, list(bm.chat(questions[i], sp))))
                   for i in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        for i in range(6):
            assert outs[i][-1].token_ids == solo(m, m.render(questions[i]), sp).token_ids
        # Sending reply 0 back as text continues from its cached row (its generated ids).
        history = questions[0] + [{"role": "assistant", "content": outs[0][-1].text},
                                  {"role": "user", "content": "and?"}]
        done = list(bm.chat(history, sp))[-1]
        assert done.stats.cached_tokens > len(m.render(questions[0]))
    finally:
        bm.close()
