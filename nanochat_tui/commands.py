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
    `keys` are the TUI key bindings (Textual key names) with `key_display` for help/footer;
    `message_keys` are keys on a selected message in the TUI (it acts on that message)."""

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
    title: str = ""  # its name in the TUI command palette ("" = the name, capitalized)
    message_keys: tuple[str, ...] = ()  # keys on a selected message (TUI)
    message_label: str = ""  # the footer's label for the first of them
    message_key_display: str = ""  # how help shows them
    tui_help: str = ""  # the full-screen app's /help wording, where it does more than the page
    tui_arg: str | None = None  # likewise for the argument

    @property
    def usage(self) -> str:
        """How help shows it: `/temperature [value]`."""
        forms = self.slash[:1] or self.words[:1]
        return " ".join([*forms, *( [self.arg] if self.arg else [])])

    @property
    def palette_title(self) -> str:
        return self.title or self.name.replace("_", " ").capitalize()


def _range(lo: float, hi: float) -> str:
    return f"{lo:g}-{hi:g}"


TUI_ONLY = frozenset({TUI})
TUI_AND_WEB = frozenset({TUI, WEB})

COMMANDS: tuple[CommandSpec, ...] = (
    CommandSpec("help", "keys and commands", slash=("/help", "/?"), keys=("f1",), key_display="F1",
                title="Help: keys and commands", footer="Help"),
    CommandSpec("new", "start a new conversation", slash=("/new", "/clear", "/reset"), words=("clear",),
                help_forms=2,
                keys=("ctrl+n", "ctrl+shift+n", "ctrl+shift+N"), key_display="Ctrl+N / Ctrl+Shift+N",
                footer="New chat", title="New chat"),
    CommandSpec("conversations", "saved conversations: open, search, rename, delete, export",
                slash=("/history", "/conversations"), keys=("ctrl+o",), key_display="Ctrl+O",
                surfaces=TUI_ONLY, footer="Chats", title="Conversations: open, search, rename, delete"),
    CommandSpec("stop", "stop the reply now (the partial text is kept)", slash=("/stop",),
                keys=("escape",), key_display="Esc", surfaces=TUI_AND_WEB, footer="Stop",
                title="Stop the reply"),
    CommandSpec("interrupt", "stop the reply; with nothing to stop, press it twice to quit",
                keys=("ctrl+c",), key_display="Ctrl+C", surfaces=TUI_ONLY, palette=False),
    CommandSpec("regenerate", "answer the last message again (the earlier reply is kept as a branch)",
                tui_help="answer the last message again (the earlier reply is kept as a version: ‹ 1/2 ›)",
                slash=("/regenerate", "/retry"), keys=("ctrl+r",), key_display="Ctrl+R",
                surfaces=TUI_AND_WEB, footer="Regenerate", title="Regenerate the last reply",
                message_keys=("r",), message_label="Regenerate"),
    CommandSpec("edit", "edit your last message (nothing is removed until you send it)",
                tui_help="edit your last message (nothing is removed until you send it; Esc cancels)",
                slash=("/edit",), surfaces=TUI_AND_WEB, title="Edit your last message",
                message_keys=("e",), message_label="Edit"),
    CommandSpec("copy", "copy the last reply to the clipboard",
                tui_help="copy the last reply to the clipboard (/copy code: its last code block)",
                slash=("/copy",), tui_arg="[code]", surfaces=TUI_AND_WEB, title="Copy the last reply",
                message_keys=("c",), message_label="Copy"),
    CommandSpec("copy_code", "copy a code block of the reply (again: the next block)",
                surfaces=TUI_ONLY, title="Copy the last code block",
                message_keys=("b",), message_label="Copy code"),
    CommandSpec("messages", "select a message: Up/Down move, then copy, edit, regenerate, delete",
                keys=("shift+tab", "ctrl+up"), key_display="Shift+Tab / Ctrl+Up", surfaces=TUI_ONLY,
                footer="Messages", title="Select a message (copy, edit, regenerate, delete)"),
    CommandSpec("previous_version", "show the previous version of a message (‹ 1/2 ›)",
                surfaces=TUI_ONLY, title="Previous version of the last reply",
                message_keys=("left", "["), message_label="Version", message_key_display="Left / Right"),
    CommandSpec("next_version", "show the next version of a message", surfaces=TUI_ONLY,
                title="Next version of the last reply", message_keys=("right", "]"), message_label=""),
    CommandSpec("delete", "delete the selected message and what follows it (asks first)",
                surfaces=TUI_ONLY, palette=False, message_keys=("d", "delete"), message_label="Delete"),
    CommandSpec("temperature", f"show or set the temperature ({_range(MIN_TEMPERATURE, MAX_TEMPERATURE)}; 0 = greedy)",
                slash=("/temperature", "/temp", "/t"), arg="[value]", title="Temperature"),
    CommandSpec("top_k", f"show or set top-k ({MIN_TOP_K}-{MAX_TOP_K}; 0 = full vocabulary)",
                slash=("/topk", "/top-k", "/top_k", "/k"), arg="[value]", title="Top-k"),
    CommandSpec("max_tokens", f"show or set the reply length limit ({MIN_MAX_TOKENS}-{MAX_MAX_TOKENS} tokens)",
                slash=("/max-tokens", "/maxtokens", "/max_tokens", "/m"), arg="[value]", title="Max tokens"),
    CommandSpec("system", "show or set the system message (/system off removes it)", slash=("/system",),
                arg="[text]", title="System message"),
    CommandSpec("stats", "model, settings and the last reply's speed", slash=("/stats",), title="Stats"),
    CommandSpec("export", "save this conversation as Markdown or JSON",
                tui_help="save this conversation as Markdown or JSON (default: Markdown, in this folder)",
                slash=("/export",), arg="[md|json]", tui_arg="[md|json] [file]", surfaces=TUI_AND_WEB,
                title="Export this conversation (Markdown)"),
    CommandSpec("model", "switch model, keeping the chat (pick from a list, or name it)",
                slash=("/model",), tui_arg="[name|N]", surfaces=TUI_ONLY, title="Model: switch to another checkpoint"),
    CommandSpec("theme", "show or choose the color theme", tui_help="choose the color theme (remembered)",
                slash=("/theme",), arg="[name]",
                surfaces=TUI_AND_WEB, title="Theme"),
    CommandSpec("settings", "open the settings",
                tui_help="open the settings (sampling, system message, theme; save as defaults)",
                slash=("/settings",), surfaces=TUI_AND_WEB, title="Settings"),
    CommandSpec("key", "use an API key for this server (kept for this browser tab)", slash=("/key",),
                arg="[key]", surfaces=frozenset({WEB}), palette=False),
    CommandSpec("quit", "leave", slash=("/quit", "/exit"), words=("quit", "exit"),
                keys=("ctrl+q",), key_display="Ctrl+Q", surfaces=frozenset({TUI, PLAIN}), footer="Quit",
                title="Quit"),
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


# ---- words for people at a terminal ----

# The rulebook (nanochat_core.chat) words its errors for the web API, whose fields are `top_k` and
# `max_tokens`; the web keeps those words. At a terminal people know the flags and the commands,
# so terminal modes pass every rulebook error through `terminal_words` (the one translation).
_FIELDS = {"Temperature": "Temperature", "top_k": "top-k", "max_tokens": "max tokens", "seed": "seed"}
_FLAGS = {"Temperature": "-t/--temperature", "top_k": "-k/--top-k", "max_tokens": "-m/--max-tokens",
          "seed": "--seed"}
_FIELD_RE = re.compile(r"^(Temperature|top_k|max_tokens|seed) must be")


def terminal_words(message: str, *, flag: bool = False) -> str:
    """A rulebook error as a terminal user reads it: `top-k must be between 0 and 200`, and with
    `flag` the flag that set it: `top-k must be between 0 and 200 (-k/--top-k)`."""
    match = _FIELD_RE.match(message)
    if not match:
        return message
    field = match.group(1)
    words = _FIELDS[field] + message[len(field):]
    return f"{words} ({_FLAGS[field]})" if flag else words


# ---- help ----

# Keys of the full-screen app that are not commands of their own, in the order /help lists them.
TUI_KEYS: tuple[tuple[str, str], ...] = (
    ("Enter", "send the message"),
    ("Shift+Enter / Ctrl+J", "insert a new line (Ctrl+J works in every terminal)"),
    ("Up / Down (empty input)", "earlier prompts of this and saved conversations, like a shell"),
    ("PageUp / PageDown", "scroll the conversation (at the bottom it follows the reply)"),
    ("Ctrl+P", "command palette: every command, searchable"),
)

# Keys on a selected message (after Shift+Tab / Ctrl+Up) that are not commands of their own.
MESSAGE_KEYS: tuple[tuple[str, str], ...] = (
    ("Up / Down", "the previous / next message"),
    ("Esc / Tab", "back to the input"),
)


def aligned_rows(pairs: Sequence[tuple[str, str]], indent: str = "  ") -> list[str]:
    width = max(len(k) for k, _ in pairs)
    return [f"{indent}{k.ljust(width)}  {v}" for k, v in pairs]


def help_rows(surface: str = TUI) -> list[tuple[str, str]]:
    """(usage, what it does) for every typed command of `surface`."""
    rows = []
    for spec in commands_for(surface):
        if not spec.slash and not spec.words:
            continue  # key-only commands are listed with the keys
        arg = (spec.tui_arg or spec.arg) if surface == TUI else spec.arg
        usage = ", ".join(spec.slash[:spec.help_forms]) + (f" {arg}" if arg else "")
        rows.append((", ".join([usage, *spec.words]), spec_help(spec, surface)))
    return rows


def spec_help(spec: CommandSpec, surface: str = TUI) -> str:
    return (spec.tui_help or spec.help) if surface == TUI else spec.help


def key_rows() -> list[tuple[str, str]]:
    """The full-screen app's keys: typing keys first, then each command's key."""
    return [*TUI_KEYS, *((spec.key_display, spec_help(spec)) for spec in commands_for(TUI) if spec.key_display)]


def message_key_rows() -> list[tuple[str, str]]:
    """Keys on a selected message."""
    rows = list(MESSAGE_KEYS)
    for spec in commands_for(TUI):
        if spec.message_keys and (spec.message_label or spec.message_key_display):
            rows.append((spec.message_key_display or spec.message_keys[0], spec_help(spec)))
    return rows


HELP_FOOTNOTE = "A message that starts with / is sent as is when you type // first (//tmp -> /tmp)."


def help_sections(surface: str = TUI) -> list[tuple[str, list[tuple[str, str]]]]:
    """/help as (heading, rows) sections (the TUI lays them out as a table)."""
    sections = []
    if surface == TUI:
        sections += [("Keys", key_rows()), ("On a selected message", message_key_rows())]
    sections.append(("Commands", help_rows(surface)))
    return sections


def help_text(surface: str = TUI) -> str:
    """The /help answer as plain text: keys (in the app), then commands."""
    lines = []
    for heading, rows in help_sections(surface):
        lines += [heading, *aligned_rows(rows), ""]
    lines.append(HELP_FOOTNOTE)
    return "\n".join(lines)


def page_commands() -> list[dict[str, Any]]:
    """The web page's command list (served to it as JSON; the page never retypes names)."""
    return [{"name": s.name, "slash": list(s.slash), "arg": s.arg, "help": s.help}
            for s in commands_for(WEB)]


# ---- /stats ----

def stats_rows(
    *,
    info: Any | None,
    sampling: SamplingParams,
    system: str | None,
    launch: str,
    messages: int,
    last_summary: str | None,
    replies: int,
    total_tokens: int,
    saving: str | None = None,
) -> list[tuple[str, str]]:
    """The /stats answer as (label, value) rows: what is loaded, the current settings, how the
    app was started (`launch`: the options as flags, see `launch_flags`)."""
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
    if saving is not None:
        rows.append(("history", saving))
    rows.append(("launch", launch or "defaults"))
    return rows


def stats_text(**kwargs: Any) -> str:
    """The /stats answer as plain text (the line chat)."""
    return "\n".join(["Stats", *aligned_rows(stats_rows(**kwargs))])


# Launch options as the flags that give them (ModelSelection.as_stats keys -> flag).
_LAUNCH_FLAGS = (("model_dir", "--model-dir"), ("source", "-i"), ("model_tag", "-g"), ("step", "-s"),
                 ("device_type", "--device-type"), ("dtype", "-d"), ("softcap", "--softcap"),
                 ("quantize", "--quantize"), ("hf", "--hf"), ("server", "--server"), ("model", "--model"))
_LAUNCH_DEFAULTS = {"source": "auto (sft)", "device_type": "auto", "dtype": "auto",
                    "model": "(the server's first)"}


def launch_flags(model: Mapping[str, Any], sampling: SamplingParams, *, system: str | None,
                 debug: bool = False) -> str:
    """How the app was started, as flags a person could type again (values that are the
    defaults left out): `--model-dir /models -g d20 -t 0.2 -k 9 -m 99 --seed 7 --system …`."""
    parts = []
    for key, flag in _LAUNCH_FLAGS:
        value = model.get(key)
        if value is None or _LAUNCH_DEFAULTS.get(key) == value:
            continue
        parts.append(f"{flag} {value:g}" if isinstance(value, float) else f"{flag} {value}")
    if model.get("api_key") == "set":
        parts.append("--api-key …")
    parts += [f"-t {sampling.temperature:g}", f"-k {sampling.top_k or 0}", f"-m {sampling.max_tokens}",
              "--seed " + ("random" if sampling.seed is None else str(sampling.seed))]
    if system is not None:
        parts.append("--system …")
    if debug:
        parts.append("--debug")
    return " ".join(parts)
