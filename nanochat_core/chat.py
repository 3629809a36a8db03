"""Messages, the ONE validation rulebook, and nanochat's chat rendering.

Every front-end (terminal app, one-shot CLI, line chat, web server) validates through this module,
so a user sees the same words for the same mistake everywhere. The words are those of nanochat's
own web server (scripts/chat_web.py), kept verbatim so existing clients keep working.

Out-of-range sampling values are REJECTED (never silently clamped), everywhere: a user who typed
`-t 5` or `/temperature 5` learns the range instead of getting a different setting than they asked.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any, Iterable, Mapping, Protocol, Sequence

from .errors import NanochatError

# ---- limits (nanochat's chat_web.py abuse-prevention limits) ----
MAX_MESSAGES = 500
MAX_MESSAGE_CHARS = 8000
MAX_TOTAL_CHARS = 32000
MIN_TEMPERATURE, MAX_TEMPERATURE = 0.0, 2.0
MIN_TOP_K, MAX_TOP_K = 0, 200  # 0 = no top-k filtering (full vocabulary)
MIN_MAX_TOKENS, MAX_MAX_TOKENS = 1, 4096

ROLES = ("user", "assistant", "system")
PART_TYPES = ("text", "python", "python_output")


class ValidationError(NanochatError):
    """A user mistake. `str(err)` is the one-line message to show (HTTP 400 detail, banner, exit 2)."""


@dataclass(frozen=True)
class Message:
    role: str
    content: str | tuple[dict, ...]  # a string, or nanochat's parts for assistant tool use

    def to_dict(self) -> dict:
        content = self.content if isinstance(self.content, str) else [dict(p) for p in self.content]
        return {"role": self.role, "content": content}

    @property
    def text(self) -> str:
        if isinstance(self.content, str):
            return self.content
        return "".join(p["text"] for p in self.content)


@dataclass(frozen=True)
class SamplingParams:
    """Sampling settings of one request. top_k 0 or None means the full vocabulary."""

    temperature: float = 0.6
    top_k: int | None = 50
    max_tokens: int = 512
    seed: int | None = 42  # None: a fresh random seed per request (nanochat's web server)

    def with_overrides(self, **changes: Any) -> "SamplingParams":
        """A copy with the given (already validated) fields replaced; None values are ignored."""
        return replace(self, **{k: v for k, v in changes.items() if v is not None})


# ---- the rulebook ----

def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def check_temperature(value: Any) -> float:
    if not _is_number(value) or not math.isfinite(value):
        raise ValidationError("Temperature must be a number")
    if not (MIN_TEMPERATURE <= value <= MAX_TEMPERATURE):
        raise ValidationError(f"Temperature must be between {MIN_TEMPERATURE} and {MAX_TEMPERATURE}")
    return float(value)


def _integer(value: Any, name: str) -> int:
    # 50.0 from a JSON client is fine; 50.5 is not an integer.
    if _is_number(value) and math.isfinite(value) and float(value).is_integer():
        return int(value)
    raise ValidationError(f"{name} must be an integer")


def check_top_k(value: Any) -> int:
    value = _integer(value, "top_k")
    if not (MIN_TOP_K <= value <= MAX_TOP_K):
        raise ValidationError(f"top_k must be between {MIN_TOP_K} and {MAX_TOP_K}")
    return value


def check_max_tokens(value: Any) -> int:
    value = _integer(value, "max_tokens")
    if not (MIN_MAX_TOKENS <= value <= MAX_MAX_TOKENS):
        raise ValidationError(f"max_tokens must be between {MIN_MAX_TOKENS} and {MAX_MAX_TOKENS}")
    return value


def check_seed(value: Any) -> int:
    value = _integer(value, "seed")
    if not (0 <= value < 2**63):
        raise ValidationError("seed must be between 0 and 2^63-1")
    return value


def validate_sampling(
    base: SamplingParams,
    temperature: Any = None,
    top_k: Any = None,
    max_tokens: Any = None,
    seed: Any = None,
) -> SamplingParams:
    """Check optional per-request overrides against the rulebook and apply them to `base`."""
    return base.with_overrides(
        temperature=None if temperature is None else check_temperature(temperature),
        top_k=None if top_k is None else check_top_k(top_k),
        max_tokens=None if max_tokens is None else check_max_tokens(max_tokens),
        seed=None if seed is None else check_seed(seed),
    )


# Parsing typed values (CLI flags, /temperature 0.7 in the TUI, the web page's slash commands)
# goes through these so "abc" and "5" get the same words everywhere.
def parse_temperature(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ValidationError(f"Temperature must be a number, not {text!r}") from None
    return check_temperature(value)


def parse_top_k(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise ValidationError(f"top_k must be an integer, not {text!r}") from None
    return check_top_k(value)


def parse_max_tokens(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise ValidationError(f"max_tokens must be an integer, not {text!r}") from None
    return check_max_tokens(value)


def _content_chars(content: str | Sequence[Mapping]) -> int:
    if isinstance(content, str):
        return len(content)
    return sum(len(p["text"]) for p in content)


def _coerce_message(i: int, raw: Any) -> Message:
    """Turn a dict (JSON) or Message into a Message, refusing wrong shapes with a clear line."""
    if isinstance(raw, Message):
        role, content = raw.role, raw.content
    elif isinstance(raw, Mapping):
        if "role" not in raw or "content" not in raw:
            raise ValidationError(f"Message {i} must have 'role' and 'content'")
        role, content = raw["role"], raw["content"]
    else:
        raise ValidationError(f"Message {i} must be an object with 'role' and 'content'")
    if not isinstance(role, str):
        raise ValidationError(f"Message {i} has invalid role. Must be 'user', 'assistant', or 'system'")
    if content is None:
        raise ValidationError(f"Message {i} has empty content")
    if isinstance(content, str):
        return Message(role, content)
    if isinstance(content, (list, tuple)):
        parts = []
        for part in content:
            if (
                not isinstance(part, Mapping)
                or part.get("type") not in PART_TYPES
                or not isinstance(part.get("text"), str)
            ):
                raise ValidationError(
                    f"Message {i} has an invalid content part. Each part must be "
                    "{'type': 'text'|'python'|'python_output', 'text': string}"
                )
            parts.append({"type": part["type"], "text": part["text"]})
        return Message(role, tuple(parts))
    raise ValidationError(f"Message {i} content must be a string")


def validate_messages(messages: Any) -> list[Message]:
    """The conversation rules, in nanochat's order and words. Returns clean Message objects.

    Beyond nanochat: `system` is really accepted, as the first message only (it is folded into the
    first user message, as nanochat's renderer does); only assistant messages may use parts; the
    conversation must end with a user message (the model answers the last user turn).
    """
    if not isinstance(messages, (list, tuple)):
        raise ValidationError("'messages' must be a list of {'role', 'content'} objects")
    if len(messages) == 0:
        raise ValidationError("At least one message is required")
    if len(messages) > MAX_MESSAGES:
        raise ValidationError(
            f"Too many messages. Maximum {MAX_MESSAGES} messages allowed per request"
        )
    clean = [_coerce_message(i, m) for i, m in enumerate(messages)]

    total = 0
    for i, message in enumerate(clean):
        chars = _content_chars(message.content)
        if chars == 0 or (isinstance(message.content, str) and not message.content):
            raise ValidationError(f"Message {i} has empty content")
        if chars > MAX_MESSAGE_CHARS:
            raise ValidationError(
                f"Message {i} is too long. Maximum {MAX_MESSAGE_CHARS} characters allowed per message"
            )
        total += chars
    if total > MAX_TOTAL_CHARS:
        raise ValidationError(
            f"Total conversation is too long. Maximum {MAX_TOTAL_CHARS} characters allowed"
        )

    for i, message in enumerate(clean):
        if message.role not in ROLES:
            raise ValidationError(
                f"Message {i} has invalid role. Must be 'user', 'assistant', or 'system'"
            )
    for i, message in enumerate(clean):
        if message.role == "system" and i != 0:
            raise ValidationError(
                f"Message {i} has role 'system', but a system message is only allowed as the first message"
            )
        if message.role != "assistant" and not isinstance(message.content, str):
            raise ValidationError(f"Message {i} content must be a string")
    if clean[0].role == "system" and (len(clean) < 2 or clean[1].role != "user"):
        raise ValidationError("A system message must be followed by a user message")
    if clean[-1].role != "user":
        raise ValidationError("The last message must be from the user")
    return clean


# ---- rendering (nanochat's render_conversation + <|assistant_start|>) ----

class _Encoder(Protocol):
    def encode(self, text: str) -> list[int]: ...
    def special(self, name: str) -> int: ...


def fold_system(messages: Sequence[Message]) -> list[Message]:
    """nanochat's rule: a first `system` message is merged into the next (user) message,
    separated by a blank line."""
    messages = list(messages)
    if messages and messages[0].role == "system":
        system, first = messages[0], messages[1]
        messages = [Message("user", system.text + "\n\n" + first.text), *messages[2:]]
    return messages


def reply_key(content: str | Sequence[Mapping]) -> str | tuple:
    """A hashable identity for assistant content, to recognise a reply a client sends back."""
    if isinstance(content, str):
        return content
    return tuple((p["type"], p["text"]) for p in content)


def render_messages(
    tokenizer: _Encoder,
    messages: Iterable[Message],
    known_replies: Mapping[Any, Sequence[int]] | None = None,
) -> list[int]:
    """Token ids for a conversation, ending with <|assistant_start|> to ask for the next reply.

    Identical to nanochat's `render_conversation(...)[0] + [<|assistant_start|>]` for alternating
    conversations (each part encoded on its own, no merging across parts), and to chat_web's
    per-message rendering otherwise. Expects validated messages.

    `known_replies` maps assistant content (see reply_key) to the exact ids the model generated
    for it. Clients send history back as text, and re-encoding text can split it into different
    tokens than the model wrote; using the generated ids keeps the conversation what the model
    actually saw (as nanochat's own CLI does) and lets the KV cache be reused across turns.
    """
    sp = tokenizer.special
    ids = [sp("<|bos|>")]
    for message in fold_system(list(messages)):
        if message.role == "user":
            ids.append(sp("<|user_start|>"))
            ids.extend(tokenizer.encode(message.text))
            ids.append(sp("<|user_end|>"))
            continue
        ids.append(sp("<|assistant_start|>"))
        generated = known_replies.get(reply_key(message.content)) if known_replies else None
        if generated is not None:
            ids.extend(generated)
        elif isinstance(message.content, str):
            ids.extend(tokenizer.encode(message.content))
        else:
            for part in message.content:
                if part["type"] == "text":
                    ids.extend(tokenizer.encode(part["text"]))
                elif part["type"] == "python":
                    ids += [sp("<|python_start|>"), *tokenizer.encode(part["text"]), sp("<|python_end|>")]
                else:
                    ids += [sp("<|output_start|>"), *tokenizer.encode(part["text"]), sp("<|output_end|>")]
        ids.append(sp("<|assistant_end|>"))
    ids.append(sp("<|assistant_start|>"))
    return ids
