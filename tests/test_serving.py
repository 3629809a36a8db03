"""nanochat_core.serving: engine threads <-> asyncio, bounded queue, cancellation, no leaks."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import threading

import pytest

from nanochat_core.chat import SamplingParams, validate_messages
from nanochat_core.events import Done, ErrorEvent, TextDelta
from nanochat_core.chat import ValidationError
from nanochat_core.serving import PoolBusy, PoolClosed, Refused, Worker, WorkerPool
from web_fakes import FakeModel, until

SP = SamplingParams(temperature=0.0, max_tokens=100)


def msgs(text: str):
    return validate_messages([{"role": "user", "content": text}])


def pool_of(*backends, queue_size=8, slots=1) -> WorkerPool:
    return WorkerPool([Worker(i, "cpu", b, slots=slots) for i, b in enumerate(backends)], queue_size=queue_size)


async def collect(gen) -> list:
    return [e async for e in gen]


def text_of(events) -> str:
    return "".join(e.text for e in events if isinstance(e, TextDelta))


async def test_events_arrive_in_order_from_a_worker_thread():
    fake = FakeModel()
    pool = pool_of(fake)
    try:
        events = await collect(pool.submit(msgs("hello there ✨"), SP))
        assert text_of(events) == "You said: hello there ✨"
        assert isinstance(events[-1], Done) and events[-1].reason == "stop"
        assert sum(isinstance(e, Done) for e in events) == 1
        assert fake.threads == {"nanochat-worker-0.0"}
        assert threading.current_thread().name not in fake.threads
        assert pool.workers[0].active == 0 and pool.workers[0].served == 1
    finally:
        await pool.close()


async def test_ready_hands_over_what_is_queued_without_waiting_up_to_the_end():
    gate = threading.Event()
    fake = FakeModel(reply=lambda m, s: "a b c", gate=gate)
    pool = pool_of(fake)
    try:
        gen = pool.submit(msgs("go"), SP)
        first = await gen.__anext__()
        assert gen.ready() == []  # the engine waits at the gate: nothing more yet, and no waiting
        gate.set()
        await until(lambda: gen.state == "finished" or pool.workers[0].active == 0, "the reply to end")
        rest = gen.ready()
        assert isinstance(rest[-1], Done) and text_of([first, *rest]) == "a b c"
        assert gen.ready() == [] and await collect(gen) == []  # the terminal event ended it
    finally:
        gate.set()
        await pool.close()


async def test_blocking_generation_never_stalls_the_event_loop():
    gate = threading.Event()  # the "engine" blocks inside its reply until the loop opens it
    fake = FakeModel(reply=lambda m, s: "x " * 5, gate=gate)
    pool = pool_of(fake)
    try:
        gen = pool.submit(msgs("go"), SP)
        consumer = asyncio.ensure_future(collect(gen))
        # The loop keeps running other work while the engine is blocked mid-reply: were the
        # engine on this thread, it would wait on the gate forever and nothing below would run.
        await until(lambda: fake.produced == 1, "the first token")
        ticks = 0
        for _ in range(20):
            await asyncio.sleep(0)
            ticks += 1
        assert ticks == 20 and fake.running == 1 and not consumer.done()
        gate.set()
        assert text_of(await consumer) == "x " * 5
    finally:
        gate.set()
        await pool.close()


async def test_bounded_fifo_queue_then_pool_busy():
    fake = FakeModel(token_delay=0.02)
    pool = pool_of(fake, queue_size=2)
    try:
        a = pool.submit(msgs("a a a a a"), SP)
        b = pool.submit(msgs("b"), SP)
        c = pool.submit(msgs("c"), SP)
        assert (a.state, b.state, c.state) == ("running", "queued", "queued")
        assert (b.queue_position, c.queue_position) == (1, 2)
        assert pool.waiting_requests == 2 and pool.available_workers == 0 and pool.busy_workers == 1
        with pytest.raises(PoolBusy) as busy:
            pool.submit(msgs("d"), SP)
        assert 1 <= busy.value.retry_after <= 60
        assert "busy" in str(busy.value)
        results = await asyncio.gather(collect(a), collect(b), collect(c))
        assert [text_of(r) for r in results] == ["You said: a a a a a", "You said: b", "You said: c"]
        assert [m[-1].text for m, _ in fake.calls] == ["a a a a a", "b", "c"]  # FIFO
        assert fake.max_running == 1  # a ChatModel never runs two streams
        assert pool.waiting_requests == 0 and pool.active_requests == 0 and pool.available_workers == 1
    finally:
        await pool.close()


async def test_queue_size_zero_refuses_as_soon_as_busy():
    fake = FakeModel(token_delay=0.02)
    pool = pool_of(fake, queue_size=0)
    try:
        a = pool.submit(msgs("a b c"), SP)
        with pytest.raises(PoolBusy):
            pool.submit(msgs("x"), SP)
        await collect(a)
        await a.wait_finished()
        assert text_of(await collect(pool.submit(msgs("x"), SP))) == "You said: x"
    finally:
        await pool.close()


async def test_cancel_while_queued_leaves_the_queue_and_never_runs():
    fake = FakeModel(token_delay=0.02)
    pool = pool_of(fake, queue_size=4)
    try:
        a = pool.submit(msgs("a a a"), SP)
        b = pool.submit(msgs("b"), SP)
        c = pool.submit(msgs("c"), SP)
        b.cancel()
        assert pool.waiting_requests == 1
        events_b = await collect(b)
        assert len(events_b) == 1 and isinstance(events_b[0], Done) and events_b[0].reason == "cancelled"
        await asyncio.gather(collect(a), collect(c))
        assert [m[-1].text for m, _ in fake.calls] == ["a a a", "c"]
    finally:
        await pool.close()


async def test_cancel_while_running_stops_within_a_step_and_frees_the_slot_after_the_thread():
    gate = threading.Event()  # after its first token the engine holds inside its next step
    fake = FakeModel(reply=lambda m, s: "tok " * 500, gate=gate)
    pool = pool_of(fake)
    try:
        gen = pool.submit(msgs("long"), SP)
        first = await gen.__anext__()
        assert isinstance(first, TextDelta)
        gen.cancel()
        # The engine thread is still inside its step: the slot is not handed out yet.
        assert pool.workers[0].active == 1
        rest = await collect(gen)
        await gen.wait_finished()
        assert isinstance(rest[-1], Done) and rest[-1].reason == "cancelled"
        assert fake.cancelled == 1 and pool.workers[0].active == 0 and pool.active_requests == 0
        assert fake.produced == 1 and text_of([first, *rest]) == "tok"  # no step after the cancel
    finally:
        gate.set()
        await pool.close()


async def test_leaving_async_with_early_cancels_and_next_request_runs():
    fake = FakeModel(reply=lambda m, s: "w " * 300 if m[-1].text == "one" else f"You said: {m[-1].text}",
                     token_delay=0.02)
    pool = pool_of(fake, queue_size=1)
    try:
        gen = pool.submit(msgs("one"), SP)
        waiting = pool.submit(msgs("two"), SP)  # queued behind it
        async with gen:
            async for event in gen:
                break
        events = await asyncio.wait_for(collect(waiting), timeout=30)
        assert text_of(events) == "You said: two"
        await waiting.wait_finished()  # its engine thread has returned (the fake counts on return)
        assert fake.cancelled == 1 and fake.completed == 1 and fake.max_running == 1
    finally:
        await pool.close()


async def test_backend_exceptions_become_one_error_event_and_free_the_slot():
    pool = pool_of(FakeModel(raise_error=RuntimeError("boom\nsecond line")))
    try:
        events = await collect(pool.submit(msgs("x"), SP))
        assert len(events) == 1 and isinstance(events[0], ErrorEvent)
        assert events[0].message == "generation failed: RuntimeError: boom"
        assert not isinstance(events[0], Refused)  # the server's failure, not the request's
        await until(lambda: pool.available_workers == 1 and pool.active_requests == 0, "the slot to be freed")
    finally:
        await pool.close()


async def test_rulebook_errors_raised_by_the_backend_keep_their_words_and_are_refusals():
    too_long = ValidationError("The conversation is 3000 tokens, more than this model's context of 2559 tokens")
    pool, refusing = pool_of(FakeModel()), pool_of(FakeModel(raise_error=too_long))
    try:
        events = await collect(pool.submit([{"role": "user", "content": ""}], SP))
        assert [type(e) for e in events] == [Refused] and isinstance(events[0], ErrorEvent)
        assert events[0].message == "Message 0 has empty content"
        refused = await collect(refusing.submit(msgs("b"), SP))
        assert [type(e) for e in refused] == [Refused] and refused[0].message == str(too_long)
    finally:
        await pool.close()
        await refusing.close()


async def test_error_event_mid_stream_ends_the_stream():
    pool = pool_of(FakeModel(reply=lambda m, s: "a b c d", error_after=2))
    try:
        events = await collect(pool.submit(msgs("x"), SP))
        assert text_of(events) == "a b" and isinstance(events[-1], ErrorEvent)
    finally:
        await pool.close()


async def test_requests_spread_over_workers_one_stream_each():
    fakes = [FakeModel(token_delay=0.03), FakeModel(token_delay=0.03)]
    pool = pool_of(*fakes, queue_size=8)
    try:
        gens = [pool.submit(msgs(" ".join([f"q{i}"] * 4)), SP) for i in range(6)]
        assert [g.worker.gpu_id for g in gens[:2]] == [0, 1]
        results = await asyncio.gather(*(collect(g) for g in gens))
        for i, events in enumerate(results):
            assert text_of(events) == "You said: " + " ".join([f"q{i}"] * 4)
        assert all(f.max_running == 1 for f in fakes)
        assert len(fakes[0].calls) + len(fakes[1].calls) == 6 and fakes[0].calls and fakes[1].calls
    finally:
        await pool.close()


async def test_a_multi_slot_worker_runs_that_many_streams_at_once():
    fake = FakeModel(token_delay=0.05)
    pool = pool_of(fake, slots=3, queue_size=4)
    try:
        gens = [pool.submit(msgs(f"r{i} r r"), SP) for i in range(4)]
        assert [g.state for g in gens] == ["running"] * 3 + ["queued"]
        assert pool.available_workers == 0 and pool.stats()["workers"][0]["active"] == 3
        await asyncio.gather(*(collect(g) for g in gens))
        assert fake.max_running == 3 and len(fake.threads) == 3
    finally:
        await pool.close()


async def test_close_cancels_everything_and_refuses_new_work():
    gate = threading.Event()  # never opened: only cancellation can end the running reply
    fake = FakeModel(reply=lambda m, s: "z " * 1000, gate=gate)
    pool = pool_of(fake, queue_size=2)
    running = pool.submit(msgs("a"), SP)
    queued = pool.submit(msgs("b"), SP)
    await until(lambda: fake.produced == 1, "the first request to start")
    await pool.close()
    assert (await collect(running))[-1].reason == "cancelled"
    assert (await collect(queued))[-1].reason == "cancelled"
    assert fake.cancelled == 1 and len(fake.calls) == 1
    with pytest.raises(PoolClosed):
        pool.submit(msgs("c"), SP)


def test_stats_shape_and_validation_of_arguments():
    pool = pool_of(FakeModel(), FakeModel(), queue_size=3)
    s = pool.stats()
    assert s["total_workers"] == 2 and s["available_workers"] == 2 and s["busy_workers"] == 0
    assert [w["gpu_id"] for w in s["workers"]] == [0, 1] and s["workers"][0]["device"] == "cpu"
    assert s["queue_size"] == 3 and s["waiting_requests"] == 0
    with pytest.raises(ValueError):
        WorkerPool([])
    with pytest.raises(ValueError):
        Worker(0, "cpu", FakeModel(), slots=0)


def test_serving_imports_no_ui_toolkit_and_no_torch():
    code = ("import sys, nanochat_core.serving; "
            "bad = [m for m in ('aiohttp', 'textual', 'torch') if m in sys.modules]; "
            "print(bad); sys.exit(1 if bad else 0)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
