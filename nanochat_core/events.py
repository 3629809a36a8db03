"""What a generation stream yields.

Every front-end (TUI, one-shot CLI, line chat, web server) consumes the same events, so the
engine's behaviour (text at UTF-8 boundaries, tool calls, stop reasons, timing) is decided once.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Union

StopReason = Literal["stop", "length", "cancelled"]


@dataclass(frozen=True)
class TextDelta:
    """New reply text. Always ends at a UTF-8 boundary (an emoji split over tokens arrives whole)."""

    text: str


@dataclass(frozen=True)
class ToolCall:
    """The model wrote a calculator expression between <|python_start|> and <|python_end|>."""

    expression: str


@dataclass(frozen=True)
class ToolResult:
    """The calculator's answer, which the engine forces into the sequence; None = no result."""

    expression: str
    result: str | None


@dataclass(frozen=True)
class GenerationStats:
    prompt_tokens: int
    generated_tokens: int
    ttft_s: float  # request start -> first token sampled (prefill included)
    total_s: float  # request start -> done
    cached_tokens: int = 0  # prompt tokens served from a reused KV cache (not recomputed)

    @property
    def decode_tok_s(self) -> float:
        """Tokens per second over the decode phase (after the first token)."""
        decode_time = self.total_s - self.ttft_s
        if self.generated_tokens <= 1 or decode_time <= 0:
            return 0.0
        return (self.generated_tokens - 1) / decode_time

    def summary(self) -> str:
        """The one-line status every front-end shows: `N tokens · X tok/s · first token Y ms`."""
        noun = "token" if self.generated_tokens == 1 else "tokens"
        return (
            f"{self.generated_tokens} {noun} · {self.decode_tok_s:.1f} tok/s"
            f" · first token {self.ttft_s * 1000:.0f} ms"
        )


@dataclass(frozen=True)
class Done:
    """The stream ended. `parts` is the reply in nanochat's message-parts form (text / python /
    python_output), so front-ends can keep it in the history exactly as the model wrote it."""

    reason: StopReason
    stats: GenerationStats
    token_ids: tuple[int, ...] = ()  # every token the reply appended, forced ones included, without the stop token
    parts: tuple[dict, ...] = field(default_factory=tuple)
    stop_id: int | None = None  # the stop token that ended it (<|assistant_end|> or <|bos|>), if one did

    @property
    def generated_ids(self) -> tuple[int, ...]:
        """Every token the engine yielded, the stop token included: what nanochat's chat_cli
        appends to its history (before closing the turn with <|assistant_end|>)."""
        return self.token_ids + (() if self.stop_id is None else (self.stop_id,))

    @property
    def text(self) -> str:
        """The reply as plain text (tool calls left out, as nanochat's web page showed it)."""
        return "".join(p["text"] for p in self.parts if p["type"] == "text")


@dataclass(frozen=True)
class ErrorEvent:
    """Generation failed; `message` is one line meant for the user."""

    message: str


Event = Union[TextDelta, ToolCall, ToolResult, Done, ErrorEvent]
