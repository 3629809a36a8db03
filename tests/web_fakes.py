"""Fake chat backends for the web/serving tests: ChatModel's interface (`.info`,
`.chat(messages, sampling, cancel) -> Iterator[Event]`, blocking), with knobs that make the
server's behaviours observable (slow tokens, a gate that holds every token, cancellation,
errors, tool calls, concurrency); and `until`, the one way these tests wait for something."""

from __future__ import annotations

import asyncio
import inspect
import re
import threading
import time
from typing import Any, Awaitable, Callable, Sequence

from nanochat_core.chat import Message, SamplingParams, validate_messages
from nanochat_core.conversation import Conversation
from nanochat_core.events import (
    Done,
    ErrorEvent,
    GenerationStats,
    TextDelta,
    ToolCall,
    ToolResult,
)
from nanochat_core.model_info import ModelInfo

_TOKENS = re.compile(r"\s*\S+|\s+")


async def until(condition: Callable[[], bool | Awaitable[bool]], what: str, timeout: float = 30.0,
                interval: float = 0.01) -> None:
    """Poll `condition` (a function, or a coroutine function) until it is true; AssertionError
    naming `what` if it is still false after `timeout` seconds. The timeout is a generous
    deadline for a condition, never a measurement: tests assert outcomes, not durations."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"still waiting after {timeout:g} s for: {what}")
        await asyncio.sleep(interval)


def fake_info(**changes: Any) -> ModelInfo:
    values = dict(
        generation="gen5-smear-backout", source="sft", model_tag="d4", step=700,
        checkpoint_dir="/fake/chatsft_checkpoints/d4", is_demo=False, n_layer=4, n_embd=40,
        n_head=4, n_kv_head=4, vocab_size=560, sequence_len=256, window_pattern="SSSL",
        softcap=15.0, params=212_000, device="cpu", dtype="float32",
    )
    values.update(changes)
    return ModelInfo(**values)


def echo(messages: Sequence[Message], sampling: SamplingParams) -> str:
    return f"You said: {messages[-1].text}"


class FakeModel:
    """Streams `reply(messages, sampling)` word by word, `token_delay` seconds per token
    (a number, or a function of the messages), checking `cancel` before each token (one
    "decode step"). With `gate` (a threading.Event), every token after the first waits until
    the gate is open: a test holds generation mid-reply for as long as it needs, no timing involved.
    `produced` counts every token yielded, across requests."""

    def __init__(self, reply: Callable[[Sequence[Message], SamplingParams], str] = echo, *,
                 token_delay: float | Callable[[Sequence[Message]], float] = 0.0,
                 first_delay: float | Callable[[Sequence[Message]], float] = 0.0, error_after: int | None = None,
                 raise_error: Exception | None = None, tool: tuple[str, str] | None = None,
                 info: ModelInfo | None = None, gate: threading.Event | None = None):
        self.reply = reply
        self.token_delay = token_delay
        self.first_delay = first_delay
        self.error_after = error_after
        self.raise_error = raise_error
        self.tool = tool
        self.gate = gate
        self.produced = 0
        self.info = info or fake_info()
        self.calls: list[tuple[list[Message], SamplingParams]] = []
        self.threads: set[str] = set()
        self.cancelled = 0
        self.completed = 0
        self.running = 0
        self.max_running = 0
        self.started = threading.Event()  # set when a generation yields its first token
        self.ended = threading.Event()  # set whenever a generation returns
        self._lock = threading.Lock()

    def chat(self, messages: Sequence[Any], sampling: SamplingParams | None = None,
             cancel: threading.Event | None = None):
        sampling = sampling or SamplingParams()
        if isinstance(messages, Conversation):  # as ChatModel.chat: a Conversation or messages
            messages.validate()
            clean = messages.request_messages()
        else:
            clean = validate_messages(messages)  # the rulebook first
        with self._lock:
            self.calls.append((clean, sampling))
            self.threads.add(threading.current_thread().name)
            self.running += 1
            self.max_running = max(self.max_running, self.running)
        return self._stream(clean, sampling, cancel or threading.Event())

    def _stream(self, clean, sampling, cancel):
        start = time.perf_counter()
        produced = 0
        reason = "stop"
        try:
            if self.raise_error is not None:
                raise self.raise_error
            first = self.first_delay(clean) if callable(self.first_delay) else self.first_delay
            if first:
                time.sleep(first)
            delay = self.token_delay(clean) if callable(self.token_delay) else self.token_delay
            every = _TOKENS.findall(self.reply(clean, sampling))
            tokens = every[: sampling.max_tokens]
            if len(every) > sampling.max_tokens:
                reason = "length"
            if self.tool is not None:
                yield ToolCall(self.tool[0])
                yield ToolResult(self.tool[0], self.tool[1])
            for i, token in enumerate(tokens):
                if cancel.is_set():
                    reason = "cancelled"
                    break
                if self.error_after is not None and i == self.error_after:
                    yield ErrorEvent("engine exploded")
                    return
                if i and delay:
                    time.sleep(delay)
                while i and self.gate is not None and not self.gate.wait(0.01):
                    if cancel.is_set():
                        break
                if cancel.is_set():
                    reason = "cancelled"
                    break
                produced += 1
                with self._lock:
                    self.produced += 1
                yield TextDelta(token)
                self.started.set()
            total = time.perf_counter() - start
            text = "".join(tokens[:produced])
            parts = [{"type": "text", "text": text}] if text else []
            if self.tool is not None:
                parts = [{"type": "python", "text": self.tool[0]},
                         {"type": "python_output", "text": self.tool[1]}] + parts
            yield Done(reason, GenerationStats(10, produced, min(0.001, total), total),
                       tuple(range(produced)), tuple(parts))
        finally:
            with self._lock:
                self.running -= 1
                if reason == "cancelled":
                    self.cancelled += 1
                else:
                    self.completed += 1
            self.ended.set()
