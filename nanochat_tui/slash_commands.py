"""What the user can type besides a message: `quit`, `exit`, `clear` and the slash commands.

Parsing and the wording of answers live here (no Textual import), so they are testable on their
own and the app stays a thin layer. Values are checked by the one rulebook (nanochat_core.chat):
`/temperature 5` gets exactly the words `-t 5` and the web API give.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from nanochat_core.chat import (
    MAX_MAX_TOKENS,
    MAX_TEMPERATURE,
    MAX_TOP_K,
    MIN_MAX_TOKENS,
    MIN_TEMPERATURE,
    MIN_TOP_K,
    SamplingParams,
    ValidationError,
    parse_max_tokens,
    parse_temperature,
    parse_top_k,
)

# The keys, in the order /help and the README list them.
KEYS: tuple[tuple[str, str], ...] = (
    ("Enter", "send the message"),
    ("Shift+Enter / Ctrl+J", "insert a new line (Ctrl+J works in every terminal)"),
    ("Ctrl+N / Ctrl+Shift+N", "new conversation"),
    ("Esc", "stop the reply now (the partial text is kept)"),
    ("Ctrl+R", "regenerate the last reply"),
    ("Up (in an empty input)", "edit your last message and resend from there"),
    ("PageUp / PageDown", "scroll the conversation"),
    ("Ctrl+Q / Ctrl+C", "quit"),
)

COMMANDS: tuple[tuple[str, str], ...] = (
    ("/help", "this list"),
    ("/clear, /new", "start a new conversation (also: typing clear)"),
    ("/temperature [v]", f"show or set the temperature ({MIN_TEMPERATURE}-{MAX_TEMPERATURE}, 0 = greedy)"),
    ("/topk [v]", f"show or set top-k ({MIN_TOP_K}-{MAX_TOP_K}, 0 = full vocabulary)"),
    ("/max-tokens [v]", f"show or set the reply length limit ({MIN_MAX_TOKENS}-{MAX_MAX_TOKENS})"),
    ("/system [text]", "show or set the system message (/system off removes it)"),
    ("/stats", "model, settings and the last reply's speed"),
    ("quit, exit", "leave"),
)

# Command names (after the slash) -> canonical name.
_ALIASES = {
    "help": "help", "?": "help",
    "clear": "clear", "new": "clear", "reset": "clear",
    "temperature": "temperature", "temp": "temperature", "t": "temperature",
    "topk": "top_k", "top-k": "top_k", "top_k": "top_k", "k": "top_k",
    "max-tokens": "max_tokens", "max_tokens": "max_tokens", "maxtokens": "max_tokens", "m": "max_tokens",
    "system": "system",
    "stats": "stats",
    "quit": "quit", "exit": "quit",
}

# "/word" (a command) as opposed to "/usr/bin/env python?" (a question about a path).
_COMMAND_RE = re.compile(r"^/([A-Za-z?][A-Za-z0-9_-]*)(?:\s+(.*))?$", re.DOTALL)

SYSTEM_OFF_WORDS = ("off", "none", "clear", "-")


@dataclass(frozen=True)
class Command:
    """A typed command. name: help | clear | quit | temperature | top_k | max_tokens | system |
    stats | unknown. `arg` is the text after the command (None when there is none)."""

    name: str
    arg: str | None = None
    word: str = ""  # what the user typed, e.g. "/topk" (for messages)


def parse_command(text: str) -> Command | None:
    """The command `text` asks for, or None when it is a message for the model."""
    stripped = text.strip()
    lowered = stripped.lower()
    if lowered in ("quit", "exit"):
        return Command("quit", word=stripped)
    if lowered == "clear":
        return Command("clear", word=stripped)
    match = _COMMAND_RE.match(stripped)
    if not match:
        return None
    word, arg = match.group(1), match.group(2)
    arg = arg.strip() if arg is not None and arg.strip() else None
    name = _ALIASES.get(word.lower(), "unknown")
    return Command(name, arg, "/" + word)


def unknown_command_message(command: Command) -> str:
    return f"Unknown command {command.word}: type /help for the list"


def apply_sampling_command(command: Command, sampling: SamplingParams) -> tuple[SamplingParams, str]:
    """Show (no value) or set a sampling value. Returns (new sampling, notice text).
    Raises ValidationError with the rulebook's words for a bad value."""
    if command.name == "temperature":
        if command.arg is None:
            return sampling, (f"temperature is {sampling.temperature:g} "
                              f"(range {MIN_TEMPERATURE}-{MAX_TEMPERATURE}; 0 = greedy)")
        value = parse_temperature(command.arg)
        return sampling.with_overrides(temperature=value), f"temperature set to {value:g}"
    if command.name == "top_k":
        if command.arg is None:
            shown = "0 (full vocabulary)" if not sampling.top_k else str(sampling.top_k)
            return sampling, f"top-k is {shown} (range {MIN_TOP_K}-{MAX_TOP_K}; 0 = full vocabulary)"
        value = parse_top_k(command.arg)
        shown = "0 (full vocabulary)" if value == 0 else str(value)
        return sampling.with_overrides(top_k=value), f"top-k set to {shown}"
    if command.name == "max_tokens":
        if command.arg is None:
            return sampling, (f"max tokens is {sampling.max_tokens} "
                              f"(range {MIN_MAX_TOKENS}-{MAX_MAX_TOKENS})")
        value = parse_max_tokens(command.arg)
        return sampling.with_overrides(max_tokens=value), f"max tokens set to {value}"
    raise ValidationError(f"not a sampling command: {command.word}")


def apply_system_command(command: Command, system: str | None) -> tuple[str | None, str]:
    """Show, set or remove the system message. Returns (new system message, notice text)."""
    if command.arg is None:
        if system is None:
            return None, "no system message (set one with /system TEXT)"
        return system, f"system message: {system}"
    if command.arg.lower() in SYSTEM_OFF_WORDS:
        return None, "system message removed"
    return command.arg, "system message set; it applies to the whole conversation from the next reply"


def _rows(pairs: Sequence[tuple[str, str]], indent: str = "  ") -> list[str]:
    width = max(len(k) for k, _ in pairs)
    return [f"{indent}{k.ljust(width)}  {v}" for k, v in pairs]


def help_text() -> str:
    """The /help answer: keys, then commands."""
    return "\n".join(["Keys", *_rows(KEYS), "", "Commands", *_rows(COMMANDS)])


def stats_text(
    *,
    info: Any | None,
    sampling: SamplingParams,
    system: str | None,
    launch: Mapping[str, Any],
    messages: int,
    last_summary: str | None,
    replies: int,
    total_tokens: int,
) -> str:
    """The /stats answer: what is loaded, the current settings and the launch options."""
    rows: list[tuple[str, str]] = []
    if info is None:
        rows.append(("model", "not loaded"))
    else:
        rows.append(("model", info.describe()))
        rows.append(("device", f"{info.device} ({info.dtype})"))
    top_k = "0 (full vocabulary)" if not sampling.top_k else str(sampling.top_k)
    rows += [
        ("temperature", f"{sampling.temperature:g}"),
        ("top-k", top_k),
        ("max tokens", str(sampling.max_tokens)),
        ("seed", "random" if sampling.seed is None else str(sampling.seed)),
        ("system", "none" if system is None else repr(system)),
        ("conversation", f"{messages} message{'s' if messages != 1 else ''}"),
        ("replies", f"{replies} ({total_tokens} tokens in all)"),
        ("last reply", last_summary or "none yet"),
    ]
    launch_text = ", ".join(f"{k}={v}" for k, v in launch.items())
    rows.append(("launch", launch_text or "defaults"))
    return "\n".join(["Stats", *_rows(rows)])
