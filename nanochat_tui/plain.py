"""`nanochat-tui --plain`: nanochat's line chat (scripts/chat_cli.py), on the shared engine.

The token history is chat_cli's, turn for turn (nanochat_core.conversation): typed lines are
stripped, every reply is kept exactly as generated (empty ones and ones ending in <|bos|>
included), `clear` starts over. Beyond chat_cli:
- line editing and prompt history with readline when stdin is a terminal (so long pastes arrive
  whole: readline reads past the terminal's 4,095-byte line limit);
- `\"\"\"` starts a multi-line message, ended by a line that ends with `\"\"\"` (as `ollama run`);
- slash commands from the one registry (/help, /new, /temperature, /topk, /max-tokens, /system,
  /stats) and `//` to send a message that starts with a slash;
- the transcript's prompts ("User:", "Assistant:") go to stdout only when both stdin and stdout
  are terminals; otherwise to stderr, so stdout holds only replies and `nanochat-tui > file`
  still shows what to type;
- the chat is saved as it happens (unless --no-history).
"""

from __future__ import annotations

import sys
from dataclasses import replace
from typing import Callable, TextIO

from nanochat_core.chat import ValidationError
from nanochat_core.text import sanitize_for_terminal

from . import commands
from .chat_session import model_identity, open_session, start_conversation
from .config import ChatConfig
from .console import say
from .paths import data_dir
from .terminal_chat import load_model, stream_reply

MULTILINE = '"""'
READLINE_HISTORY = "prompt_history"
READLINE_HISTORY_LINES = 1000


def _setup_readline() -> Callable[[], None]:
    """Line editing and history when stdin is a terminal; returns what to do at exit."""
    try:
        import readline
    except ImportError:  # pragma: no cover - platforms without readline
        return lambda: None
    path = data_dir() / READLINE_HISTORY
    try:
        readline.read_history_file(path)
    except OSError:
        pass
    readline.set_history_length(READLINE_HISTORY_LINES)

    def save() -> None:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            readline.write_history_file(path)
        except OSError:
            pass

    return save


class LineReader:
    """Reads what the user types: one line, or a \"\"\"-delimited block of lines."""

    def __init__(self, prompts: TextIO, interactive: bool) -> None:
        self.prompts = prompts
        self.interactive = interactive

    def _line(self, prompt: str) -> str:
        if self.prompts is sys.stdout:
            return input(prompt)  # readline draws (and redraws) the prompt itself
        self.prompts.write(prompt)
        self.prompts.flush()
        line = sys.stdin.readline() if not self.interactive else input("")
        if not line and not self.interactive:
            raise EOFError
        return line.rstrip("\n")

    def read(self) -> str:
        first = self._line("\nUser: ")
        if not first.lstrip().startswith(MULTILINE):
            return first
        body = first.lstrip()[len(MULTILINE):]
        lines = [body] if body else []
        if body.rstrip().endswith(MULTILINE) and body.strip() != "":
            return body.rstrip()[: -len(MULTILINE)]
        while True:
            line = self._line("... ")
            if line.rstrip().endswith(MULTILINE):
                lines.append(line.rstrip()[: -len(MULTILINE)])
                return "\n".join(lines)
            lines.append(line)


def run_plain(config: ChatConfig) -> int:
    interactive = sys.stdin.isatty()
    prompts = sys.stdout if interactive and sys.stdout.isatty() else sys.stderr
    save_readline = _setup_readline() if interactive else (lambda: None)
    session = open_session(config.history)
    if session.warning:
        say(session.warning, sys.stderr)
    conversation = start_conversation(session, config.history, system=config.system,
                                      sampling=config.sampling)
    model = load_model(config.model)
    conversation.model = model_identity(model)
    sampling, system = config.sampling, config.system
    say("nanochat line chat. Type 'quit' or 'exit' to leave, 'clear' to start over, /help for more.", prompts)
    if conversation.nodes:
        _replay(conversation, prompts)
    reader = LineReader(prompts, interactive)
    warned = False
    try:
        while True:
            try:
                typed = reader.read()
            except (EOFError, KeyboardInterrupt):
                print("\nGoodbye!", file=prompts, flush=True)
                return 0
            parsed = commands.parse_input(typed, commands.PLAIN)
            command = parsed.command
            if command is not None:
                if command.name == "quit":
                    print("Goodbye!", file=prompts, flush=True)
                    return 0
                if command.name == "new":
                    conversation = start_conversation(session, replace(config.history, resume=None),
                                                      system=system, sampling=sampling)
                    conversation.model = model_identity(model)
                    say("Conversation cleared.", prompts)
                    continue
                try:
                    sampling, system, answer = _apply(command, sampling, system, model, conversation)
                except ValidationError as e:
                    say(f"error: {commands.terminal_words(str(e))}", sys.stderr)
                    continue
                print(sanitize_for_terminal(answer), file=prompts, flush=True)
                continue
            line = parsed.text.strip()  # chat_cli strips what was typed
            if not line:
                continue
            try:
                conversation.validate(extra_user=line)
            except ValidationError as e:
                say(f"error: {commands.terminal_words(str(e))}", sys.stderr)
                continue
            conversation.add_user(line)
            prompts.write("\nAssistant: ")
            prompts.flush()
            recorder = stream_reply(model, conversation, sampling)
            sys.stdout.write("\n")
            sys.stdout.flush()
            if recorder.error is not None:
                say(f"error: {recorder.error}", sys.stderr)
            elif recorder.done is not None and recorder.done.reason == "cancelled":
                say("[stopped]", prompts)
            if session.store is not None and session.store.error and not warned:
                say(session.store.error, sys.stderr)
                warned = True  # once is enough
    finally:
        save_readline()


REPLY_MARKS = {"stopped": "[stopped]", "length": "[max tokens reached]", "partial": "[interrupted]",
               "lost": "[connection lost]"}


def _replay(conversation, out: TextIO) -> None:
    """A resumed conversation's messages so far, as the transcript showed them."""
    say(f"Continuing \"{conversation.title or 'conversation'}\" ({len(conversation.path())} messages):", out)
    for node in conversation.path():
        label = "User" if node.role == "user" else "Assistant"
        text = sanitize_for_terminal(node.text)
        if node.role == "assistant" and not isinstance(node.content, str):
            text = "".join(p["text"] if p["type"] == "text" else f"[calculator: {p['text']}]"
                           if p["type"] == "python" else f" = {p['text']}" for p in node.content)
            text = sanitize_for_terminal(text)
        mark = REPLY_MARKS.get(node.state) if node.role == "assistant" else None
        if node.state == "error":
            mark = f"[failed: {node.error}]"
        print(f"\n{label}: {text}" + (f"\n{sanitize_for_terminal(mark)}" if mark else ""), file=out)
    out.flush()


def _apply(command: commands.Command, sampling, system, model, conversation):
    """A settings command of the line chat: returns (sampling, system, answer)."""
    if command.name in ("temperature", "top_k", "max_tokens"):
        sampling, answer = commands.apply_sampling_command(command, sampling)
        conversation.set_sampling(sampling)
        return sampling, system, answer
    if command.name == "system":
        system, answer = commands.apply_system_command(command, system)
        conversation.set_system(system)
        return sampling, system, answer
    if command.name == "help":
        return sampling, system, commands.help_text(commands.PLAIN)
    if command.name == "stats":
        return sampling, system, commands.stats_text(
            info=model.info, sampling=sampling, system=system, launch="",
            messages=len(conversation.path()), last_summary=_last_summary(conversation),
            replies=sum(1 for n in conversation.path() if n.role == "assistant"),
            total_tokens=sum((n.stats or {}).get("generated_tokens", 0) for n in conversation.path()))
    raise ValidationError(commands.unknown_command_message(command))


def _last_summary(conversation) -> str | None:
    for node in reversed(conversation.path()):
        if node.role == "assistant" and node.stats:
            return node.stats.get("summary")
    return None

