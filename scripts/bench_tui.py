"""Streaming benchmark for the full-screen chat (not a test).

A fake engine emits Markdown tokens at a fixed rate (default 3,000 tokens/s, faster than any
model this app runs on CPU) into the real NanochatApp, headless. Meanwhile keys are sent through
the terminal driver every 50 ms, alternating a typed character (handled by the input) and
Ctrl+R (an app binding: "a reply is still streaming"; none is sent in the last 150 ms of the
stream, so none starts a second reply), and the time until each key is handled is
recorded. Reports:

  * keeps_up / backlog_ms: time from the engine's last event to the reply being complete on
    screen (finished Markdown, stats in the status line). "No backlog" = a few flush intervals.
  * key latency (ms): p50 / p95 / max from sending the key to its handler running.
  * event-loop stalls: the longest time a 5 ms sleeper on the UI loop overslept.
  * UI flushes and mean tokens per flush (tokens reach the UI in batches).

Usage:
    .venv/bin/python scripts/bench_tui.py [--tokens 12000] [--rate 3000] [--history 0]
The last stdout line is one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from textual import events  # noqa: E402

from nanochat_core.chat import SamplingParams, validate_messages  # noqa: E402
from nanochat_core.events import Done, GenerationStats, TextDelta  # noqa: E402
from nanochat_core.model_info import ModelInfo  # noqa: E402
from nanochat_tui.app import FLUSH_INTERVAL_S, NanochatApp  # noqa: E402
from nanochat_tui.config import ChatConfig  # noqa: E402
from nanochat_tui.widgets import Notice, UserMessage  # noqa: E402

DOCUMENT = """\
## Streaming section {n}

Here is a paragraph with **bold** words, `inline code` and a [link](https://example.com). The
engine streams it a few characters at a time, and the app renders it as Markdown while it arrives.

- first item of list {n}
- second item, a little longer than the first one
- third item with `code`

```python
def step_{n}(x):
    # a code block inside the reply
    return x * {n} + 1
```

1. numbered one
2. numbered two

"""


def markdown_tokens(count: int) -> list[str]:
    tokens: list[str] = []
    n = 0
    while len(tokens) < count:
        text = DOCUMENT.format(n=n)
        tokens += [text[i:i + 4] for i in range(0, len(text), 4)]
        n += 1
    return tokens[:count]


INFO = ModelInfo(generation="bench", source="sft", model_tag="d0", step=0, checkpoint_dir="-",
                 is_demo=False, n_layer=1, n_embd=1, n_head=1, n_kv_head=1, vocab_size=1,
                 sequence_len=1, window_pattern=None, softcap=15.0, params=1)


class RateBackend:
    """Emits `tokens` at `rate` tokens/s (paced against the clock, not per-token sleeps)."""

    def __init__(self, tokens: list[str], rate: float) -> None:
        self.info = INFO
        self.notices: list[str] = []
        self.tokens = tokens
        self.rate = rate
        self.started = 0.0
        self.finished = 0.0
        self.emitted = 0

    def chat(self, request, sampling=None, cancel=None):
        # a Conversation (the app since issue 11) or role/content messages (the app before)
        request.validate() if hasattr(request, "validate") else validate_messages(request)
        return self._stream(cancel)

    def _stream(self, cancel: threading.Event | None):
        self.started = start = time.perf_counter()
        for i, tok in enumerate(self.tokens):
            if cancel is not None and cancel.is_set():
                break
            due = start + i / self.rate
            delay = due - time.perf_counter()
            if delay > 0.001:
                time.sleep(delay)
            self.emitted += 1
            yield TextDelta(tok)
        self.finished = end = time.perf_counter()
        stats = GenerationStats(prompt_tokens=5, generated_tokens=self.emitted, ttft_s=0.0,
                                total_s=end - start)
        yield Done(reason="stop", stats=stats, parts=({"type": "text", "text": "".join(self.tokens[:self.emitted])},))


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q * (len(values) - 1))))]


async def run(tokens: int, rate: float, history: int, key_interval: float, manage_gc: bool = True) -> dict:
    backend = RateBackend(markdown_tokens(tokens), rate)
    config = ChatConfig(sampling=SamplingParams(temperature=0.0, max_tokens=4096))
    app = NanochatApp(config, backend=backend, animate=False, manage_gc=manage_gc)
    key_latencies = {"typed": [], "binding": []}
    stalls: list[float] = []
    complete_at = 0.0

    async with app.run_test(size=(120, 40)) as pilot:
        if history:
            widgets = []
            for i in range(history // 2):
                widgets += [UserMessage(f"earlier message {i}"), Notice(f"earlier reply {i}")]
            await app.log_view.add(*widgets)
            await pilot.pause()

        prompt = app.input
        pending: dict[str, float] = {}

        original_replace = prompt._replace_via_keyboard

        def timed_replace(insert, start, end):
            t0 = pending.pop("typed", None)
            if t0 is not None:
                key_latencies["typed"].append(time.perf_counter() - t0)
            return original_replace(insert, start, end)

        prompt._replace_via_keyboard = timed_replace
        original_show = app.banner.show

        def timed_show(message: str, *args) -> None:
            t0 = pending.pop("binding", None)
            if t0 is not None:
                key_latencies["binding"].append(time.perf_counter() - t0)
            original_show(message, *args)

        app.banner.show = timed_show

        # the generation limit is the whole document
        app.sampling = app.sampling.with_overrides(max_tokens=min(4096, tokens))
        backend.tokens = backend.tokens[:app.sampling.max_tokens]

        stop_sampler = False

        async def stall_sampler() -> None:
            while not stop_sampler:
                t = time.perf_counter()
                await asyncio.sleep(0.005)
                stalls.append(time.perf_counter() - t - 0.005)

        sampler = asyncio.create_task(stall_sampler())
        prompt.insert("stream please")
        await app.submit(prompt.text)
        driver = app._driver
        i = 0
        last_keys_before = len(backend.tokens) - int(rate * 0.15)  # no key lands after the reply
        while app.generating:
            await asyncio.sleep(key_interval)
            if not app.generating or backend.emitted >= last_keys_before:
                break
            kind = "typed" if i % 2 == 0 else "binding"
            key = events.Key("x", "x") if kind == "typed" else events.Key("ctrl+r", None)
            pending[kind] = time.perf_counter()
            driver.send_message(key)
            i += 1
        while app.generating:
            await asyncio.sleep(0.002)
        complete_at = time.perf_counter()
        stop_sampler = True
        await sampler
        await pilot.pause()
        reply = app.query("AssistantMessage").last()
        shown_ok = reply.text == "".join(backend.tokens[:backend.emitted])
        status = app.status.text
        flushes = app.flushes

    emitted = backend.emitted
    engine_s = backend.finished - backend.started
    backlog = complete_at - backend.finished
    typed = [x * 1000 for x in key_latencies["typed"]]
    binding = [x * 1000 for x in key_latencies["binding"]]
    all_keys = typed + binding
    return {
        "tokens": emitted,
        "target_rate_tok_s": rate,
        "engine_rate_tok_s": round(emitted / engine_s, 1) if engine_s > 0 else None,
        "engine_s": round(engine_s, 3),
        "history_messages": history,
        "gc_freeze": manage_gc,
        "flush_interval_ms": round(FLUSH_INTERVAL_S * 1000, 1),
        "ui_flushes": flushes,
        "tokens_per_flush": round(emitted / max(flushes, 1), 1),
        "backlog_ms": round(backlog * 1000, 1),
        "keeps_up": backlog < 0.25 and shown_ok,
        "reply_complete_on_screen": shown_ok,
        "keys_sent": len(all_keys),
        "key_latency_ms": {
            "p50": round(pct(all_keys, 0.5), 2), "p95": round(pct(all_keys, 0.95), 2),
            "max": round(max(all_keys), 2) if all_keys else None,
        },
        "typed_key_latency_ms_p95": round(pct(typed, 0.95), 2),
        "binding_key_latency_ms_p95": round(pct(binding, 0.95), 2),
        "event_loop_stall_ms": {"p95": round(pct(stalls, 0.95) * 1000, 2),
                                "max": round(max(stalls) * 1000, 2) if stalls else None},
        "key_goal_ms": 50,
        "keys_under_goal": bool(all_keys) and max(all_keys) < 50,
        "status_line": status,
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tokens", type=int, default=4096, help="tokens to stream (default 4096, the max-tokens limit)")
    p.add_argument("--rate", type=float, default=3000.0, help="tokens per second (default 3000)")
    p.add_argument("--history", type=int, default=0, help="messages already in the log (default 0)")
    p.add_argument("--no-gc-freeze", action="store_true", help="leave the garbage collector alone (as before the fix)")
    p.add_argument("--key-interval", type=float, default=0.05, help="seconds between key presses (default 0.05)")
    args = p.parse_args()
    result = asyncio.run(run(args.tokens, args.rate, args.history, args.key_interval, not args.no_gc_freeze))
    print(f"streamed {result['tokens']} tokens at {result['engine_rate_tok_s']} tok/s "
          f"({result['ui_flushes']} UI flushes, {result['tokens_per_flush']} tokens each)")
    print(f"backlog after the engine finished: {result['backlog_ms']} ms "
          f"({'keeps up' if result['keeps_up'] else 'FALLS BEHIND'})")
    k = result["key_latency_ms"]
    print(f"key handling while streaming ({result['keys_sent']} keys): p50 {k['p50']} ms, "
          f"p95 {k['p95']} ms, max {k['max']} ms (goal < 50 ms: "
          f"{'met' if result['keys_under_goal'] else 'NOT met'})")
    st = result["event_loop_stall_ms"]
    print(f"UI event loop stalls: p95 {st['p95']} ms, max {st['max']} ms")
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
