"""How long a conversation may get: the model's positions, a server's budget, the reply's room.

No torch here: front-ends (the web server's 400 answer) import it freely.

The arithmetic follows nanochat's Engine (docs/core-api.md "Context limits"): a model with P
positions (GPT.rotary_len, 10 x sequence_len) can be FED at most P tokens. A prompt of N <= P
tokens is prefilled at positions 0..N-1; each reply token but the last is fed back at the next
position, and the last one only has to be sampled. So a reply may have up to P - N + 1 tokens
and the KV cache never holds more than P positions. `max_context` (a server's budget, e.g. the
web server's --max-context) lowers P for every request; a prompt over it is refused before any
work with `ContextTooLong`, one line in the rulebook's words (nanochat_core/chat.py).
"""

from __future__ import annotations

from .chat import ValidationError


class ContextTooLong(ValidationError):
    """The conversation has more tokens than the model or the server's budget allows.
    Refused before any work; `str()` is one line (HTTP 400 detail, banner, exit 2)."""

    def __init__(self, prompt_tokens: int, limit: int):
        self.prompt_tokens, self.limit = prompt_tokens, limit
        super().__init__(
            f"Total conversation is too long. Maximum {limit} tokens allowed, this one has "
            f"{prompt_tokens}; start a new conversation or shorten it"
        )


def context_limit(model_positions: int, max_context: int | None) -> int:
    """The positions a request may use: the model's, or the budget when it is lower.
    A budget outside 1..model_positions is refused (never silently clamped)."""
    if max_context is None:
        return model_positions
    if isinstance(max_context, bool) or not isinstance(max_context, int):
        raise ValidationError("max_context must be an integer")
    if not (1 <= max_context <= model_positions):
        raise ValidationError(f"max_context must be between 1 and {model_positions} "
                              "(this model's positions, 10 x its sequence_len)")
    return max_context


def check_prompt(prompt_tokens: int, limit: int) -> None:
    """Raise ContextTooLong when a prompt does not fit `limit` positions."""
    if prompt_tokens > limit:
        raise ContextTooLong(prompt_tokens, limit)


def reply_budget(prompt_tokens: int, max_tokens: int, limit: int) -> int:
    """Reply tokens a request may produce: max_tokens, or fewer where positions run out (the
    last reply token is sampled, never fed, so it needs no position)."""
    return max(0, min(max_tokens, limit - prompt_tokens + 1))


def positions_needed(prompt_tokens: int, budget: int) -> int:
    """KV-cache positions a request uses at most: its prompt and every reply token but the last."""
    return prompt_tokens + max(budget - 1, 0)
