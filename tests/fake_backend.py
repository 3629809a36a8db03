"""A fake chat backend with the real ChatModel's interface (`.info`, `.notices`,
`.chat(request, sampling, cancel) -> Iterator[Event]` where `request` is a Conversation or
role/content messages), for front-end tests.

It validates with the real rulebook first (as ChatModel.chat does: `Conversation.validate()`, or
the rulebook on messages), then streams scripted events. `calls` records what each request held
as messages (system first; failed exchanges left out, as the model sees them).
Knobs make the behaviours front-ends must handle observable: slow tokens (so Esc can stop a reply
mid-way), tool calls, engine errors, a deterministic `GenerationStats` (for snapshots).

    FakeBackend()                                   # echoes "You said: <last user message>"
    FakeBackend(reply="Hello **there**")             # fixed reply, split into word tokens
    FakeBackend(reply=lambda msgs: ..., token_delay=0.05)
    FakeBackend(script=[TextDelta("2+2 is "), ToolCall("2+2"), ToolResult("2+2", "4"), TextDelta("4")])
    FakeBackend(error="engine exploded")            # an ErrorEvent after the first token
    FakeBackend(flowing=event)                       # tokens flow only while `event` is set
"""

from __future__ import annotations

import re
import threading
import time
from typing import Any, Callable, Iterator, Sequence

from nanochat_core.chat import Message, SamplingParams, validate_messages
from nanochat_core.conversation import Conversation
from nanochat_core.events import Done, ErrorEvent, Event, GenerationStats, TextDelta, ToolCall, ToolResult
from nanochat_core.model_info import ModelInfo

_TOKEN = re.compile(r"\s*\S+|\s+")


def fake_info(**changes: Any) -> ModelInfo:
    values = dict(
        generation="gen5-smear-backout", source="sft", model_tag="d4", step=700,
        checkpoint_dir="/fake/chatsft_checkpoints/d4", is_demo=False, n_layer=4, n_embd=40,
        n_head=4, n_kv_head=4, vocab_size=560, sequence_len=256, window_pattern="SSSL",
        softcap=15.0, params=212_000, device="cpu", dtype="float32",
    )
    values.update(changes)
    return ModelInfo(**values)


def split_tokens(text: str) -> list[str]:
    """Word-ish tokens (leading whitespace attached), concatenating back to `text`."""
    return _TOKEN.findall(text)


def echo_reply(messages: Sequence[Message]) -> str:
    return f"You said: {messages[-1].text}"


FIXED_STATS_TTFT_S = 0.012


class FakeBackend:
    def __init__(
        self,
        reply: str | Callable[[Sequence[Message]], str] = echo_reply,
        *,
        script: Sequence[Event] | None = None,
        token_delay: float = 0.0,
        first_token_delay: float = 0.0,
        error: str | None = None,
        raise_exc: BaseException | None = None,
        fixed_stats: bool = False,
        info: ModelInfo | None = None,
        flowing: threading.Event | None = None,
    ) -> None:
        self.reply = reply
        self.script = list(script) if script is not None else None
        self.token_delay = token_delay
        self.first_token_delay = first_token_delay
        self.error = error
        self.raise_exc = raise_exc
        self.fixed_stats = fixed_stats
        self.info = info or fake_info()
        self.flowing = flowing  # when given, each token waits until it is set (a tap to pause the stream)
        self.notices: list[str] = []
        self.calls: list[tuple[list[Message], SamplingParams]] = []
        self.cancelled = 0  # streams that saw the cancel event
        self.running = threading.Event()  # set while a stream is being produced
        self._active = 0
        self.max_concurrent = 0
        self._lock = threading.Lock()

    def chat(self, request: Conversation | Sequence[Any], sampling: SamplingParams | None = None,
             cancel: threading.Event | None = None) -> Iterator[Event]:
        if isinstance(request, Conversation):
            request.validate()  # raises ValidationError, like ChatModel.chat
            clean = request.request_messages()
        else:
            clean = validate_messages(request)
        sampling = sampling or SamplingParams()
        self.calls.append((clean, sampling))
        return self._stream(clean, sampling, cancel)

    def _events(self, clean: list[Message]) -> list[Event]:
        if self.script is not None:
            return list(self.script)
        text = self.reply(clean) if callable(self.reply) else self.reply
        return [TextDelta(t) for t in split_tokens(text)]

    def _stream(self, clean: list[Message], sampling: SamplingParams,
                cancel: threading.Event | None) -> Iterator[Event]:
        with self._lock:
            self._active += 1
            self.max_concurrent = max(self.max_concurrent, self._active)
        self.running.set()
        try:
            yield from self._produce(clean, sampling, cancel)
        finally:
            with self._lock:
                self._active -= 1
            self.running.clear()

    def _produce(self, clean, sampling, cancel) -> Iterator[Event]:
        if self.raise_exc is not None:
            raise self.raise_exc
        start = time.perf_counter()
        ttft = None
        parts: list[dict] = []
        generated = 0
        reason = "stop"
        if self.first_token_delay:
            time.sleep(self.first_token_delay)
        for i, event in enumerate(self._events(clean)):
            if cancel is not None and cancel.is_set():
                self.cancelled += 1
                reason = "cancelled"
                break
            if generated >= sampling.max_tokens:
                reason = "length"
                break
            if i and self.token_delay:
                time.sleep(self.token_delay)
            if self.flowing is not None:
                while not self.flowing.wait(0.05):
                    if cancel is not None and cancel.is_set():
                        break
            if ttft is None:
                ttft = time.perf_counter() - start
            if isinstance(event, TextDelta):
                generated += 1
                if parts and parts[-1]["type"] == "text":
                    parts[-1] = {"type": "text", "text": parts[-1]["text"] + event.text}
                else:
                    parts.append({"type": "text", "text": event.text})
            elif isinstance(event, ToolCall):
                parts.append({"type": "python", "text": event.expression})
            elif isinstance(event, ToolResult):
                parts.append({"type": "python_output", "text": event.result or ""})
            yield event
            if self.error is not None:
                yield ErrorEvent(self.error)
                return
        else:
            if cancel is not None and cancel.is_set():
                self.cancelled += 1
                reason = "cancelled"
        total = time.perf_counter() - start
        if self.fixed_stats:
            stats = GenerationStats(prompt_tokens=10, generated_tokens=generated,
                                    ttft_s=FIXED_STATS_TTFT_S, total_s=FIXED_STATS_TTFT_S + 0.01 * max(generated - 1, 0))
        else:
            stats = GenerationStats(prompt_tokens=10, generated_tokens=generated,
                                    ttft_s=ttft if ttft is not None else total, total_s=total)
        yield Done(reason=reason, stats=stats, token_ids=tuple(range(generated)), parts=tuple(parts))


class FakeSelection:
    """Stands in for config.ModelSelection: `.load(progress)` reports stages, then returns a
    backend (or raises `error`)."""

    def __init__(self, backend: FakeBackend | None = None, *, error: BaseException | None = None,
                 delay: float = 0.0, gate: threading.Event | None = None, stages: Sequence[str] = ("Looking for sft checkpoints in /fake",
                                                              "Loading weights /fake/model_000700.pt")):
        self.backend = backend or FakeBackend()
        self.error = error
        self.delay = delay
        self.gate = gate  # when given, load() waits for it after reporting the stages
        self.stages = list(stages)
        self.loads = 0

    def load(self, progress: Callable[[str], None] | None = None, device: str | None = None,
             download_progress: Callable[[str, int, int | None], None] | None = None):
        self.loads += 1
        for line in self.stages:
            if progress is not None:
                progress(line)
            if self.delay:
                time.sleep(self.delay / max(len(self.stages), 1))
        if self.gate is not None:
            self.gate.wait(30)
        if self.error is not None:
            raise self.error
        return self.backend

    def as_stats(self) -> dict:
        return {"model_dir": "/fake", "source": "sft", "model_tag": None, "step": None,
                "device_type": "auto", "dtype": "auto", "softcap": None}
