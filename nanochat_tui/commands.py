"""The ONE command registry: everything a user can ask the app to do besides sending a message.

Each entry says once what a command is called (its slash forms and bare words), what it takes,
what it does, and where it exists: the full-screen app (its key bindings, the command palette,
the footer, /help), the line chat, and the web page (which gets its list from the server, see
`page_commands`). So the TUI, the line chat and the page cannot disagree about a command's name.

Parsing typed text and the wording of answers live here too (no Textual import), so they are
testable on their own and each front-end stays a thin layer. Values are checked by the one
rulebook (nanochat_core.chat): `/temperature 5` gets exactly the words `-t 5` and the web API give.
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

TUI, PLAIN, WEB = "tui", "plain", "web"
EVERYWHERE = frozenset({TUI, PLAIN, WEB})


@dataclass(frozen=True)
class CommandSpec:
    """One command. `name` is canonical (what code dispatches on); `slash` lists its typed forms,
    the first being the one help shows; `words` are bare words that also run it (quit, clear);
    `keys` are the TUI key bindings (Textual key names) with `key_display` for help/footer."""

    name: str
    help: str
    slash: tuple[str, ...] = ()
    words: tuple[str, ...] = ()
    arg: str | None = None  # e.g. "[value]": shown in help; None: takes no argument
    keys: tuple[str, ...] = ()
    key_display: str = ""
    surfaces: frozenset[str] = EVERYWHERE
    palette: bool = True  # listed in the TUI command palette
    footer: str = ""  # short label in the TUI footer ("" = not shown there)
    help_forms: int = 1  # how many slash forms /help shows (the seed's /clear stays visible)

    @property
    def usage(self) -> str:
        """How help shows it: `/temperature [value]`."""
        forms = self.slash[:1] or self.words[:1]
        return " ".join([*forms, *( [self.arg] if self.arg else [])])


def _range(lo: float, hi: float) -> str:
    return f"{lo:g}-{hi:g}"


COMMANDS: tuple[CommandSpec, ...] = (
    CommandSpec("help", "keys and commands", slash=("/help", "/?")),
    CommandSpec("new", "start a new conversation", slash=("/new", "/clear", "/reset"), words=("clear",),
                help_forms=2,
                keys=("ctrl+n", "ctrl+shift+n", "ctrl+shift+N"), key_display="Ctrl+N / Ctrl+Shift+N",
                footer="New chat"),
    CommandSpec("stop", "stop the reply now (the partial text is kept)", slash=("/stop",),
                keys=("escape",), key_display="Esc", surfaces=frozenset({TUI, WEB}), footer="Stop"),
    CommandSpec("regenerate", "answer the last message again (the earlier reply is kept as a branch)",
                slash=("/regenerate", "/retry"), keys=("ctrl+r",), key_display="Ctrl+R",
                surfaces=frozenset({TUI, WEB}), footer="Regenerate"),
    CommandSpec("edit", "edit your last message (nothing is removed until you send it)", slash=("/edit",),
                surfaces=frozenset({TUI, WEB})),
    CommandSpec("copy", "copy the last reply to the clipboard", slash=("/copy",),
                surfaces=frozenset({TUI, WEB})),
    CommandSpec("temperature", f"show or set the temperature ({_range(MIN_TEMPERATURE, MAX_TEMPERATURE)}; 0 = greedy)",
                slash=("/temperature", "/temp", "/t"), arg="[value]"),
    CommandSpec("top_k", f"show or set top-k ({MIN_TOP_K}-{MAX_TOP_K}; 0 = full vocabulary)",
                slash=("/topk", "/top-k", "/top_k", "/k"), arg="[value]"),
    CommandSpec("max_tokens", f"show or set the reply length limit ({MIN_MAX_TOKENS}-{MAX_MAX_TOKENS} tokens)",
                slash=("/max-tokens", "/maxtokens", "/max_tokens", "/m"), arg="[value]"),
    CommandSpec("system", "show or set the system message (/system off removes it)", slash=("/system",),
                arg="[text]"),
    CommandSpec("stats", "model, settings and the last reply's speed", slash=("/stats",)),
    CommandSpec("conversations", "saved conversations: open, search, rename, delete, export",
                slash=("/history", "/conversations"), surfaces=frozenset({TUI})),
    CommandSpec("export", "save this conversation as Markdown or JSON", slash=("/export",), arg="[md|json]",
                surfaces=frozenset({TUI, WEB})),
    CommandSpec("model", "show or switch the model", slash=("/model",), surfaces=frozenset({TUI})),
    CommandSpec("theme", "show or choose the color theme", slash=("/theme",), arg="[name]",
                surfaces=frozenset({TUI, WEB})),
    CommandSpec("settings", "open the settings", slash=("/settings",), surfaces=frozenset({TUI, WEB})),
    CommandSpec("key", "use an API key for this server (kept for this browser tab)", slash=("/key",),
                arg="[key]", surfaces=frozenset({WEB}), palette=False),
    CommandSpec("quit", "leave", slash=("/quit", "/exit"), words=("quit", "exit"),
                keys=("ctrl+q",), key_display="Ctrl+Q", surfaces=frozenset({TUI, PLAIN}), footer="Quit"),
)

BY_NAME: dict[str, CommandSpec] = {spec.name: spec for spec in COMMANDS}


def commands_for(surface: str) -> list[CommandSpec]:
    return [spec for spec in COMMANDS if surface in spec.surfaces]


def _lookup(surface: str) -> tuple[dict[str, str], dict[str, str]]:
    slashes, words = {}, {}
    for spec in commands_for(surface):
        for form in spec.slash:
            slashes[form[1:].lower()] = spec.name
        for word in spec.words:
            words[word.lower()] = spec.name
    return slashes, words


# "/word" (a command) as opposed to "/usr/bin/env python?" (a question about a path).
_COMMAND_RE = re.compile(r"^/([A-Za-z?][A-Za-z0-9_-]*)(?:\s+(.*))?$", re.DOTALL)

SYSTEM_OFF_WORDS = ("off", "none", "clear", "-")


@dataclass(frozen=True)
class Command:
    """A typed command: `name` is a CommandSpec name, or "unknown". `arg` is the text after the
    command (None when there is none); `word` is what the user typed, e.g. "/topk"."""

    name: str
    arg: str | None = None
    word: str = ""


@dataclass(frozen=True)
class Parsed:
    """What typed text is: a command, or a message for the model (`text`)."""

    command: Command | None = None
    text: str | None = None
    escaped: bool = False  # the message began with "//": one slash was removed


def parse_input(text: str, surface: str = TUI) -> Parsed:
    """A command, or the message to send. `//tmp is full` sends `/tmp is full` (a leading double
    slash escapes a message that would otherwise read as a command)."""
    stripped = text.strip()
    if stripped.startswith("//"):
        return Parsed(text=stripped[1:], escaped=True)
    command = parse_command(stripped, surface)
    return Parsed(command=command) if command is not None else Parsed(text=text)


def parse_command(text: str, surface: str = TUI) -> Command | None:
    """The command `text` asks for, or None when it is a message for the model."""
    stripped = text.strip()
    if stripped.startswith("//"):
        return None
    slashes, words = _lookup(surface)
    bare = words.get(stripped.lower())
    if bare is not None:
        return Command(bare, word=stripped)
    match = _COMMAND_RE.match(stripped)
    if not match:
        return None
    word, arg = match.group(1), match.group(2)
    arg = arg.strip() if arg is not None and arg.strip() else None
    return Command(slashes.get(word.lower(), "unknown"), arg, "/" + word)


def unknown_command_message(command: Command) -> str:
    return f"Unknown command {command.word}: type /help for the list, or /{command.word} to send it as a message"


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
            return sampling, f"top-k is {sampling.top_k or 0} (range {MIN_TOP_K}-{MAX_TOP_K}; 0 = full vocabulary)"
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


# ---- help ----

# Keys of the full-screen app that are not commands of their own, in the order /help lists them.
TUI_KEYS: tuple[tuple[str, str], ...] = (
    ("Enter", "send the message"),
    ("Shift+Enter / Ctrl+J", "insert a new line (Ctrl+J works in every terminal)"),
    ("Up / Down (empty input)", "earlier prompts, like a shell"),
    ("PageUp / PageDown", "scroll the conversation"),
)


def _rows(pairs: Sequence[tuple[str, str]], indent: str = "  ") -> list[str]:
    width = max(len(k) for k, _ in pairs)
    return [f"{indent}{k.ljust(width)}  {v}" for k, v in pairs]


def help_rows(surface: str = TUI) -> list[tuple[str, str]]:
    rows = []
    for spec in commands_for(surface):
        usage = ", ".join(spec.slash[:spec.help_forms]) + (f" {spec.arg}" if spec.arg else "")
        rows.append((", ".join([usage, *spec.words]), spec.help))
    return rows


def key_rows() -> list[tuple[str, str]]:
    return [*TUI_KEYS, *((spec.key_display, spec.help) for spec in COMMANDS if spec.key_display)]


def help_text(surface: str = TUI) -> str:
    """The /help answer: keys (in the app), then commands."""
    lines = []
    if surface == TUI:
        lines += ["Keys", *_rows(key_rows()), ""]
    lines += ["Commands", *_rows(help_rows(surface)),
              "", "A message that starts with / is sent as is when you type // first (//tmp -> /tmp)."]
    return "\n".join(lines)


def page_commands() -> list[dict[str, Any]]:
    """The web page's command list (served to it as JSON; the page never retypes names)."""
    return [{"name": s.name, "slash": list(s.slash), "arg": s.arg, "help": s.help}
            for s in commands_for(WEB)]


# ---- /stats ----

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

