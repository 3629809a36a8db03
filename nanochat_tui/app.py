"""`nanochat-tui`: the full-screen chat (Textual), as view + dispatch over a Conversation.

The chat IS a `nanochat_core.conversation.Conversation` (a tree of messages with branches, saved
turn by turn to the history database by chat_session / HistoryStore). This module only shows
it and turns keys, slash commands and palette choices into changes of it:

* the log shows `conversation.path()`: one widget per message, knowing its node id; a branch
  switch, an edit or a delete re-renders from the first message that changed;
* a reply is recorded by `ReplyRecorder` (the one place engine events become a reply); the
  engine runs in a thread worker that only appends events to a queue, and a 30 Hz timer drains
  the queue into the recorder and the reply widget (tokens reach the UI in batches; the worker
  never blocks on the UI);
* every command comes from the one registry (nanochat_tui/commands.py): key bindings, the
  footer, the command palette, /help and the slash commands are generated from it;
* `/model` (or the palette) opens the model picker (widgets/model_picker.py) over the catalog
  (nanochat_core.catalog); the chosen model loads on a worker thread with its stages in the
  status line, then answers from the next reply with the whole conversation (`switch_model`).

Only this module and nanochat_tui.widgets import Textual (the CLI imports us lazily), so
`--help`, `--prompt` and `--web` stay Textual-free.
"""

from __future__ import annotations

import asyncio
import gc
import json
import os
import re
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from textual import on, work
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.css.query import NoMatches
from textual.message import Message as TextualMessage
from textual.widgets import Footer

from nanochat_core.chat import Message, SamplingParams, ValidationError
from nanochat_core.conversation import Conversation, Node, ReplyRecorder
from nanochat_core.errors import NanochatError
from nanochat_core.events import Done, ErrorEvent, GenerationStats, TextDelta, ToolCall, ToolResult
from nanochat_core.hub import download_lines
from nanochat_core.text import one_line, sanitize_for_terminal

from . import commands as sc
from . import settings as settings_file
from .chat_session import Session, model_identity, open_session, start_conversation
from .clipboard import copied_message
from .config import ChatConfig
from .prompt_history import PromptHistory
from .widgets import (
    AssistantMessage,
    ChatHeader,
    ChatLog,
    ErrorBanner,
    InfoPanel,
    Notice,
    PromptInput,
    StatusBar,
    UserMessage,
)
from .widgets.messages import code_blocks
from .widgets.model_picker import ModelPickerScreen
from .widgets.palette import RegistryCommands
from .widgets.screens import ConfirmScreen, ConversationsScreen, SettingsResult, SettingsScreen

if TYPE_CHECKING:  # pragma: no cover
    from nanochat_core.catalog import CatalogEntry

FLUSH_INTERVAL_S = 1 / 30  # how often streamed tokens are moved from the worker's queue to the screen
GOODBYE = "goodbye"  # App result when the user typed quit/exit: run_tui prints "Goodbye!"
BUSY_MESSAGE = "A reply is still streaming: press Esc to stop it, then send (your text is kept)"
QUIT_AGAIN_S = 2.0  # a second Ctrl+C within this many seconds quits
SETTLE_S = 1.0  # how long quitting / switching waits for a stopped reply to be recorded
PROMPT_HISTORY_SIZE = 500
DEFAULT_THEME = "textual-dark"
# Commands that take a value: the palette puts them in the input for the user to complete.
NEEDS_VALUE = ("temperature", "top_k", "max_tokens", "system")

_END = object()  # the worker's last queue item, after the engine's events


class ModelLoadFailed(NanochatError):
    """The model never loaded (shown in the app; printed again by the CLI once the screen is gone)."""


def _load_error_line(e: BaseException) -> str:
    """A failed load as one line: CheckpointError and ValidationError (ValueErrors) say it for
    the user; anything else is named by its type. Never a traceback on screen."""
    if isinstance(e, ValueError) and str(e):
        return str(e).splitlines()[0]
    return f"{type(e).__name__}: {e}".splitlines()[0]


@dataclass(eq=False)
class _Generation:
    """One reply in flight. The worker appends events to `queue`; the UI drains it."""

    id: int
    recorder: ReplyRecorder
    widget: AssistantMessage
    user_node: Node | None = None  # a new message it answers (the exchange may be undone on failure)
    cancel: threading.Event = field(default_factory=threading.Event)
    queue: deque = field(default_factory=deque)
    started: float = field(default_factory=time.perf_counter)
    first_text_at: float | None = None
    done: Done | None = None


# The footer shows these first (a narrow terminal cuts the footer at the right).
FOOTER_ORDER = ("new", "conversations", "stop", "regenerate", "quit", "help", "messages")


def _bindings() -> list[Binding]:
    """The app's keys, from the registry: each command's keys run it (priority: they work
    whatever has the focus); the first key of a command with a footer label is shown there."""
    out = []
    specs = sorted(sc.commands_for(sc.TUI),
                   key=lambda spec: FOOTER_ORDER.index(spec.name) if spec.name in FOOTER_ORDER else len(FOOTER_ORDER))
    for spec in specs:
        for i, key in enumerate(spec.keys):
            out.append(Binding(key, f"command('{spec.name}')", spec.footer or spec.palette_title,
                               show=i == 0 and bool(spec.footer), priority=True,
                               key_display="⇧⇥" if key == "shift+tab" else None))
    out += [
        Binding("escape", "cancel_edit", "Cancel edit", priority=True),
        Binding("pageup", "scroll_log(-1)", "Scroll up", show=False, priority=True),
        Binding("pagedown", "scroll_log(1)", "Scroll down", show=False, priority=True),
    ]
    return out


def _ordinal(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def _slug(title: str | None) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", (title or "").lower()).strip("-")[:40].strip("-")
    return slug or "conversation"


class NanochatApp(App[str | None], inherit_bindings=False):
    """The chat. `backend`: an already-loaded model (tests); otherwise `config.model` is loaded.
    `session` / `conversation`: where chats are saved and the one to show (run_tui opens them,
    so that -c / --resume errors come before the screen; by default they come from config)."""

    CSS_PATH = str(Path(__file__).with_name("app.tcss"))  # absolute: subclasses elsewhere work too
    TITLE = "nanochat"
    ENABLE_COMMAND_PALETTE = True
    COMMANDS = {RegistryCommands}
    COMMAND_PALETTE_DISPLAY = "^p"
    BINDINGS = _bindings()

    # ---- typed messages from the load worker ----
    class LoadProgress(TextualMessage):
        def __init__(self, line: str) -> None:
            super().__init__()
            self.line = line

    class ModelLoaded(TextualMessage):
        def __init__(self, backend: Any) -> None:
            super().__init__()
            self.backend = backend

    class LoadFailed(TextualMessage):
        def __init__(self, message: str) -> None:
            super().__init__()
            self.message = message

    # ---- typed messages from a model switch's load thread (catalog.load_in_background) ----
    class SwitchProgress(TextualMessage):
        def __init__(self, entry: "CatalogEntry", line: str) -> None:
            super().__init__()
            self.entry, self.line = entry, line

    class SwitchDone(TextualMessage):
        def __init__(self, entry: "CatalogEntry", backend: Any, error: BaseException | None) -> None:
            super().__init__()
            self.entry, self.backend, self.error = entry, backend, error

    def __init__(self, config: ChatConfig | None = None, *, backend: Any = None,
                 session: Session | None = None, conversation: Conversation | None = None,
                 settings_path: Path | None = None, flush_interval: float = FLUSH_INTERVAL_S,
                 animate: bool = True, manage_gc: bool = False) -> None:
        """animate=False: no cursor blinking (snapshots). manage_gc: see `_gc_freeze` (run_tui
        turns it on; it changes process-wide state, so tests leave it off). settings_path: the
        settings file a chosen theme / "Save as defaults" write to (default: paths.config_path())."""
        super().__init__()
        self._manage_gc = manage_gc
        self.config = config or ChatConfig()
        self.backend = backend
        self.load_error: str | None = None
        self.session = session if session is not None else open_session(self.config.history)
        self.conversation = conversation if conversation is not None else start_conversation(
            self.session, self.config.history, system=self.config.system, sampling=self.config.sampling)
        self.settings_path = settings_path
        self.last_stats: GenerationStats | None = None
        self.last_summary: str | None = None
        self.replies = 0
        self.total_tokens = 0
        self._animate = animate
        self._flush_interval = flush_interval
        self._current: _Generation | None = None
        self._gen_ids = 0
        self._editing: int | None = None  # the user message being edited (its node id)
        self._draft = ""  # what the input held before an edit began
        self._quit_armed_until = 0.0
        self._saved_theme: str | None = self.config.theme
        self._warned_saving = False
        self._backend_lock = threading.Lock()  # one stream at a time (a ChatModel owns one KV cache)
        self._switching: CatalogEntry | None = None  # the model the picker chose, while it loads
        self._ui_lock = asyncio.Lock()  # serializes changes to the chat log
        self.flushes = 0  # how many times queued events were moved to the screen (benchmark)

    # ---- layout ----
    def compose(self) -> ComposeResult:
        yield ChatHeader(id="header")
        yield ChatLog(id="log")
        yield PromptInput(id="input")
        yield ErrorBanner(id="error")
        yield StatusBar(id="status")
        yield Footer(compact=True)

    @property
    def log_view(self) -> ChatLog:
        return self.query_one("#log", ChatLog)

    @property
    def input(self) -> PromptInput:
        return self.query_one("#input", PromptInput)

    @property
    def banner(self) -> ErrorBanner:
        return self.query_one("#error", ErrorBanner)

    @property
    def status(self) -> StatusBar:
        return self.query_one("#status", StatusBar)

    @property
    def generating(self) -> bool:
        return self._current is not None

    # The conversation holds the settings that travel with a chat (saved with it).
    @property
    def sampling(self) -> SamplingParams:
        return self.conversation.sampling

    @sampling.setter
    def sampling(self, value: SamplingParams) -> None:
        self.conversation.set_sampling(value)

    @property
    def system(self) -> str | None:
        return self.conversation.system

    @system.setter
    def system(self, value: str | None) -> None:
        self.conversation.set_system(value)

    @property
    def history(self) -> list[Message]:
        """The branch on screen as role/content messages (what the next reply answers, plus
        failed replies)."""
        return [node.message for node in self.conversation.path()]

    async def on_mount(self) -> None:
        self._flush_timer = self.set_interval(self._flush_interval, self._drain, pause=True)
        prompt = self.input
        if not self._animate:
            prompt.cursor_blink = False
        if self.config.theme and self.config.theme in self.available_themes:
            self.theme = self.config.theme
        self.theme_changed_signal.subscribe(self, self._theme_changed)
        prompt.prompts = PromptHistory(self._earlier_prompts())
        self.banner.input_text = lambda: self.input.text
        prompt.focus()
        self._show_saving()
        if self.session.warning:
            self.banner.show(self.session.warning)
            await self.notice(self.session.warning, kind="error")
        if self.conversation.nodes:
            await self._show_conversation(resumed=True)
        if self.backend is not None:
            await self._model_ready(self.backend)
        else:
            self.status.set("Loading the model…", "busy")
            self._load_model()

    def _earlier_prompts(self) -> list[str]:
        """Prompt history: the saved conversations' messages (every conversation), oldest first;
        without saving, this conversation's."""
        store = self.session.store
        if store is not None:
            try:
                return list(reversed(store.recent_prompts(PROMPT_HISTORY_SIZE)))
            except Exception:  # a damaged database must not stop the chat: history stays empty
                pass
        return [node.text for node in self.conversation.path() if node.role == "user"]

    # ---- saving ----
    def _show_saving(self) -> None:
        header = self.query_one(ChatHeader)
        if self.session.incognito:
            header.set_saving("incognito: not saved")
        elif not self.session.saving:
            header.set_saving("⚠ not saving", warning=True)
        else:
            header.set_saving("")

    def _check_saving(self) -> None:
        """Saving stopped (the disk filled, the file went away): say so once, keep chatting."""
        store = self.session.store
        if store is not None and store.error and not self._warned_saving:
            self._warned_saving = True
            self._show_saving()
            self.banner.show(store.error)

    # ---- loading ----
    @work(thread=True, exclusive=True, group="load")
    def _load_model(self) -> None:
        def say(line: str) -> None:
            self.post_message(self.LoadProgress(line))

        try:
            # --hf downloads report as lines (the library's bar on stderr is hidden under Textual)
            backend = self.config.model.load(progress=say, download_progress=download_lines(say))
        except Exception as e:
            self.post_message(self.LoadFailed(_load_error_line(e)))
        else:
            self.post_message(self.ModelLoaded(backend))

    async def on_nanochat_app_load_progress(self, message: LoadProgress) -> None:
        line = sanitize_for_terminal(message.line)
        self.status.set(line, "busy")
        await self._add(Notice(line, kind="progress"))

    async def on_nanochat_app_model_loaded(self, message: ModelLoaded) -> None:
        await self._model_ready(message.backend)

    async def on_nanochat_app_load_failed(self, message: LoadFailed) -> None:
        self.load_error = sanitize_for_terminal(message.message)
        self.query_one(ChatHeader).set_model("no model loaded", "")
        await self._add(Notice(f"Could not load the model: {self.load_error}", kind="error"))
        self.banner.show(self.load_error, "load")
        self.status.set("No model loaded (see the message above); /model chooses another, Ctrl+Q quits", "error")

    async def _model_ready(self, backend: Any, *, switched: bool = False) -> None:
        """`backend` answers from the next reply on: at start-up, or after a switch. A switch
        happens between replies only (`/model` is refused while a reply streams, and no reply
        starts while the chosen model loads), so the new model never sees half a reply. Its
        KV cache starts empty and the next reply renders the whole conversation for it:
        replies written with another tokenizer are re-encoded from their text
        (Conversation.prompt_ids, nanochat_core/conversation.py)."""
        old = self.backend
        self.backend = backend
        self.load_error = None
        self.banner.clear("load", "loading", "switch")  # ("still loading" from an early Enter no longer applies)
        info = backend.info
        self.conversation.model = model_identity(backend)  # saved with the conversation's next change
        self.query_one(ChatHeader).set_model(info.short_name, f"{info.device} · {info.dtype}")
        for line in getattr(backend, "notices", []):
            await self.notice(line)
        if switched:
            await self._add(Notice(self._switched_line(old, backend), kind="ready"))
            del old
            self._release_memory()
        else:
            await self._add(Notice(f"Ready: {info.describe()}", kind="ready"))
        self._ready_status()

    def _switched_line(self, old: Any, new: Any) -> str:
        line = f"Switched to {new.info.describe()}"
        count = len(self.conversation.context_path())
        if not count:
            return line
        retokenized = getattr(old, "tokenizer_id", None) != getattr(new, "tokenizer_id", None)
        how = ", re-read with its tokenizer" if retokenized else ""
        return f"{line} · the conversation carries over ({count} message{'s' if count != 1 else ''}{how})"

    def _release_memory(self) -> None:
        """After a switch: hand the old model's weights and KV cache back now rather than at
        some later collection (the next switch needs room for two models while it loads)."""
        self._gc_release()
        torch = sys.modules.get("torch")
        if torch is not None and torch.cuda.is_available() and torch.cuda.is_initialized():
            torch.cuda.empty_cache()

    def _ready_status(self) -> None:
        if self.backend is not None:
            self.status.set(f"Ready · {self.backend.info.short_name} · Ctrl+P commands · F1 help")

    # ---- the log ----
    async def _add(self, *widgets) -> None:
        async with self._ui_lock:
            await self.log_view.add(*widgets)

    async def notice(self, text: str, kind: str = "info") -> None:
        await self._add(Notice(text, kind=kind))

    def _versions(self, node: Node) -> tuple[int, int] | None:
        versions = self.conversation.siblings(node.id)
        return (versions.index(node.id) + 1, len(versions)) if len(versions) > 1 else None

    def _widget(self, node: Node):
        if node.role == "user":
            return UserMessage(node.text, node_id=node.id, versions=self._versions(node))
        return AssistantMessage(node=node, versions=self._versions(node))

    def _message_widgets(self) -> list[UserMessage | AssistantMessage]:
        return [w for w in self.log_view.children if isinstance(w, (UserMessage, AssistantMessage))]

    def _widget_of(self, node_id: int | None):
        return next((w for w in self._message_widgets() if w.node_id == node_id), None)

    async def _show_conversation(self, resumed: bool = False) -> None:
        """Show the whole branch on screen (a resumed or opened conversation)."""
        path = self.conversation.path()
        async with self._ui_lock:
            await self.log_view.clear()
            if resumed:
                title = self.conversation.title or "conversation"
                count = len(path)
                await self.log_view.add(Notice(f"Continuing “{title}” ({count} message{'s' if count != 1 else ''})",
                                               kind="cleared"))
            await self.log_view.add(*[self._widget(node) for node in path])
        self.log_view.follow()

    async def _show_from(self, old_widget, nodes: list[Node], *, locked: bool = False) -> None:
        """Replace `old_widget` and everything after it in the log with `nodes` (a branch switch,
        an edit, a delete). Without `old_widget` (folded away), the whole branch is shown again.
        `locked`: the caller holds the log's lock already (the drain timer)."""
        if old_widget is None or old_widget.parent is not self.log_view:
            if locked:
                await self._replace_log()
            else:
                async with self._ui_lock:
                    await self._replace_log()
            return
        children = list(self.log_view.children)
        doomed = children[children.index(old_widget):]
        widgets = [self._widget(node) for node in nodes]
        if locked:
            await self.log_view.remove_children(doomed)
            await self.log_view.add(*widgets)
            return
        async with self._ui_lock:
            await self.log_view.remove_children(doomed)
            await self.log_view.add(*widgets)

    async def _replace_log(self) -> None:
        await self.log_view.clear()
        await self.log_view.add(*[self._widget(node) for node in self.conversation.path()])

    def _depth(self, node_id: int) -> int:
        return len(self.conversation.path_to(node_id)) - 1

    # ---- input ----
    @on(PromptInput.Submitted)
    async def _on_submitted(self, event: PromptInput.Submitted) -> None:
        await self.submit(event.text)

    @on(PromptInput.Changed)
    def _on_input_changed(self) -> None:
        if self.input.text != self.banner.context:
            self.banner.clear("input", "nothing")  # the banner was about text that is gone now

    async def submit(self, text: str) -> None:
        """What Enter does with the input's text."""
        if not text.strip():
            return  # empty input sends nothing
        parsed = sc.parse_input(text, sc.TUI)
        if parsed.command is not None:
            await self._run_command(parsed.command)
            return
        if self.generating:
            self.banner.show(BUSY_MESSAGE, "busy")
            return
        if self._switching is not None:
            self.banner.show(self._switching_line(), "loading")  # the text stays for the new model
            return
        if self.backend is None:
            self.banner.show(self.load_error or "The model is still loading: your message stays here until it is ready",
                             "load" if self.load_error else "loading")
            return
        message = parsed.text.strip()  # chat_cli strips what was typed
        editing = self._editing
        try:
            if editing is not None:
                check = self.conversation.copy()
                check.rewind(check.nodes[editing].parent)
                check.validate(extra_user=message)
            else:
                self.conversation.validate(extra_user=message)
        except ValidationError as e:
            self.banner.show(sc.terminal_words(str(e)), "input")  # the text stays to be fixed
            return
        self.banner.clear()
        self.input.prompts.add(message)
        self.input.clear()
        if editing is not None:
            self._end_edit()
            old = self._widget_of(editing)
            node = self.conversation.edit(editing, message)
            await self._show_from(old, [node])
        else:
            node = self.conversation.add_user(message)
            await self._add(UserMessage(message, node_id=node.id))
        self.log_view.follow()
        await self._start(user_node=None if editing is not None else node)

    # ---- commands ----
    async def _run_command(self, command: sc.Command) -> None:
        """A typed command (the text stays in the input when it is refused, to be fixed)."""
        self.banner.clear()
        name = command.name
        if name == "unknown":
            self.banner.show(sc.unknown_command_message(command), "input")
            return
        if name == "quit":  # typed: "Goodbye!" once the screen is gone (keys quit quietly)
            await self.quit_app(GOODBYE)
            return
        if name in ("temperature", "top_k", "max_tokens"):
            try:
                self.sampling, answer = sc.apply_sampling_command(command, self.sampling)
            except ValidationError as e:
                self.banner.show(sc.terminal_words(str(e)), "input")
                return
            self.input.clear()
            await self.notice(answer, kind="setting")
            return
        if name == "system":
            system, answer = sc.apply_system_command(command, self.system)
            if system != self.system:
                self.system = system
            self.input.clear()
            await self.notice(sanitize_for_terminal(answer), kind="setting")
            return
        if name == "copy" and command.arg not in (None, "code"):
            self.banner.show("/copy copies the last reply; /copy code its last code block", "input")
            return
        if name == "theme" and command.arg is not None and command.arg not in self.available_themes:
            names = ", ".join(sorted(self.available_themes))
            self.banner.show(f"No theme {command.arg!r}: choose one of {names} (or /theme for the list)", "input")
            return
        if name == "model" and not self._is_remote() and (refusal := self._switch_refusal()) is not None:
            self.banner.show(*refusal)  # the command stays in the input, to be sent again
            return
        self.input.clear()
        await self.run_named(name, command.arg)

    async def run_named(self, name: str, arg: str | None = None, target=None) -> None:
        """Run a registry command: from a key, a slash command, the palette or a selected
        message (`target`: that message's widget; None: the last one it applies to)."""
        if name == "quit":
            await self.quit_app()
        elif name == "new":
            await self.new_conversation()
        elif name == "stop":
            await self.action_stop()
        elif name == "interrupt":
            await self._interrupt()
        elif name == "regenerate":
            await self.regenerate(target)
        elif name == "edit":
            await self.edit(target)
        elif name == "copy":
            self.copy_message(target, code=arg == "code")
        elif name == "copy_code":
            self.copy_message(target, code=True)
        elif name in ("previous_version", "next_version"):
            await self.switch_version(target, -1 if name == "previous_version" else 1)
        elif name == "delete":
            await self.delete_message(target)
        elif name == "messages":
            self.select_last_message()
        elif name == "help":
            await self._add(InfoPanel(sc.help_text(), sections=self._help_sections(), classes="help"))
        elif name == "stats":
            await self._add(InfoPanel(self.stats_text(), sections=[("Stats", self.stats_rows())], classes="stats"))
        elif name == "model":
            await self.open_model_picker(arg)
        elif name == "conversations":
            self.open_conversations()
        elif name == "export":
            await self._export_command(arg)
        elif name == "theme":
            if arg is None:
                self.search_themes()
            else:
                self.theme = arg
                await self.notice(f"theme set to {arg}", kind="setting")
        elif name == "settings":
            self.open_settings()
        elif name in ("temperature", "top_k", "max_tokens", "system"):
            await self._run_command(sc.Command(name, arg, name))
        else:  # pragma: no cover - every TUI command is handled above
            self.banner.show(f"{name} is not available in this version of the app")

    def _help_sections(self) -> list[tuple[str, list[tuple[str, str]]]]:
        return sc.help_sections(sc.TUI) + [("Sending a slash", [("//text", sc.HELP_FOOTNOTE)])]

    async def action_command(self, name: str) -> None:
        """A key of the registry (see _bindings)."""
        await self.run_named(name)

    async def palette_command(self, name: str) -> None:
        """A command chosen in the palette. Those that take a value are put in the input to be
        completed (with the current value shown)."""
        if name in NEEDS_VALUE:
            spec = sc.BY_NAME[name]
            current = self.system if name == "system" and self.system else ""
            self.input.set_text(f"{spec.slash[0]} {current}")
            self.input.focus()
            await self._run_command(sc.Command(name, None, spec.slash[0]))  # shows the current value
            self.input.set_text(f"{spec.slash[0]} {current}")
            return
        await self.run_named(name)

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        stack = self.screen_stack
        on_main = bool(stack) and self.screen is stack[0]
        if action == "command":
            name = parameters[0] if parameters else ""
            if not on_main:
                # in a dialog (the palette, the conversation list) only leaving keys act; the
                # others go to the dialog (Esc closes it, Shift+Tab moves its focus)
                return True if name in ("quit", "interrupt") else False
            if name == "stop":
                # Esc passes through to the focused widget when there is nothing to stop or
                # dismiss (False: not shown in the footer, and the key goes on)
                return True if (self.generating or self.banner.visible) else False
            if name == "messages" and isinstance(self.focused, (UserMessage, AssistantMessage)):
                return False  # already there (Shift+Tab then moves the selection up)
            return True
        if action == "cancel_edit":
            return on_main and self._editing is not None and not self.generating
        if action in ("scroll_log", "message_command", "select_message", "leave_messages"):
            return on_main
        return True

    async def _interrupt(self) -> None:
        """Ctrl+C: stop the reply; with none streaming, a first press says how to quit and a
        second one within 2 s quits."""
        if self.generating:
            await self.action_stop()
            return
        now = time.monotonic()
        if now < self._quit_armed_until:
            await self.quit_app()
            return
        self._quit_armed_until = now + QUIT_AGAIN_S
        self.notify("Press Ctrl+C again to quit (Ctrl+Q quits at once)", title="Quit?", timeout=QUIT_AGAIN_S)

    # ---- generation ----
    def _seed_for(self, reply_parent: int | None) -> int | None:
        """A new version of a reply gets a new seed (else the same reply would come back)."""
        seed = self.sampling.seed
        if seed is None:
            return None
        earlier = len(self.conversation.children.get(reply_parent, [])) if reply_parent is not None else 0
        return (seed + earlier) % 2**63

    async def _start(self, *, user_node: Node | None) -> None:
        """Stream a reply to the conversation's last message (a new version when one exists)."""
        sampling = self.sampling
        seed = self._seed_for(self.conversation.head)
        if seed != sampling.seed:
            sampling = replace(sampling, seed=seed)
        backend = self.backend  # the reply is recorded for and generated by this one model
        recorder = ReplyRecorder.start(self.conversation, backend, seed=seed)
        self._gen_ids += 1
        widget = AssistantMessage(node_id=recorder.node.id, versions=self._versions(recorder.node),
                                  classes="assistant")
        gen = _Generation(self._gen_ids, recorder, widget, user_node=user_node)
        self._current = gen
        self._gc_freeze()
        await self._add(widget)
        self.status.set("Generating… (Esc or Ctrl+C stops)", "busy")
        self.refresh_bindings()
        self._flush_timer.resume()
        self._generate(gen, backend, recorder.request, sampling)

    @work(thread=True, group="generate", exit_on_error=False)
    def _generate(self, gen: _Generation, backend: Any, request: Conversation, sampling: SamplingParams) -> None:
        """Runs the engine; never touches widgets or the conversation (only the queue)."""
        with self._backend_lock:  # a stopped reply finishes its last step before the next starts
            try:
                if not gen.cancel.is_set():
                    for event in backend.chat(request, sampling, cancel=gen.cancel):
                        gen.queue.append(event)
                else:
                    gen.queue.append(Done(reason="cancelled", stats=GenerationStats(0, 0, 0.0, 0.0)))
            except ValidationError as e:
                gen.queue.append(ErrorEvent(str(e)))
            except Exception as e:  # an engine bug must not kill the app: one line in the banner
                gen.queue.append(ErrorEvent(f"{type(e).__name__}: {e}".splitlines()[0]))
            finally:
                gen.queue.append(_END)

    async def _drain(self) -> None:
        """Move queued events to the conversation and the screen (timer callback, UI thread)."""
        try:
            await self._drain_queue()
        except NoMatches:  # the screen went away while a reply streamed (the app is closing)
            self._flush_timer.pause()

    async def _drain_queue(self) -> None:
        gen = self._current
        if gen is None or self._exit or self._closing:  # (none, or the screen is going away)
            self._flush_timer.pause()
            return
        if not gen.queue:
            return
        async with self._ui_lock:
            if gen is not self._current:
                return
            self.flushes += 1
            pending: list[str] = []
            while gen.queue:
                event = gen.queue.popleft()
                if isinstance(event, TextDelta):
                    pending.append(event.text)
                    continue
                if pending:
                    await self._show_text(gen, "".join(pending))
                    pending = []
                if event is _END:
                    await self._failed(gen, "the reply ended without finishing")
                    return
                gen.recorder.feed(event)
                if isinstance(event, ToolCall):
                    await gen.widget.add_tool_call(event.expression)
                elif isinstance(event, ToolResult):
                    gen.widget.set_tool_result(event.expression, event.result)
                elif isinstance(event, Done):
                    gen.done = event
                    await self._finished(gen, event)
                    return
                elif isinstance(event, ErrorEvent):
                    await self._failed(gen, event.message)
                    return
            if pending:
                await self._show_text(gen, "".join(pending))

    async def _show_text(self, gen: _Generation, text: str) -> None:
        if gen.first_text_at is None:
            gen.first_text_at = time.perf_counter()
        gen.recorder.feed(TextDelta(text))
        await gen.widget.append(text)

    def _end_generation(self) -> None:
        self._current = None
        self._flush_timer.pause()
        self.banner.clear("busy")  # "a reply is still streaming" no longer holds
        self.refresh_bindings()

    async def _finished(self, gen: _Generation, done: Done) -> None:
        await gen.widget.finish(done.reason, state=gen.recorder.node.state)
        self._end_generation()
        self.replies += 1
        self.total_tokens += done.stats.generated_tokens
        self.last_stats = done.stats
        summary = done.stats.summary()
        if done.reason == "cancelled":
            summary += " · stopped"
        elif done.reason == "length":
            summary += " · max tokens reached"
        self.last_summary = summary
        self.status.set(summary)
        self._check_saving()

    async def _failed(self, gen: _Generation, message: str) -> None:
        """The engine failed. A new message that got no text back is undone (it leaves the
        conversation and returns to the input); otherwise the reply stays in the conversation,
        marked failed (left out of what the model sees). Either way the banner says why."""
        message = sc.terminal_words(one_line(sanitize_for_terminal(message)))
        recorder = gen.recorder
        if recorder.error is None:  # it ended without a word: record why
            recorder.error = message
            self.conversation.fail_reply(recorder.node, message)
        self._end_generation()
        user = gen.user_node
        if user is not None and not recorder.parts and not self.input.text and user.id in self.conversation.nodes:
            self.conversation.discard(user.id)
            self._forget_if_empty()
            await self._show_from(self._widget_of(user.id), [], locked=True)
            self.input.set_text(user.text)
        else:
            await gen.widget.finish("error", state="error", error=message)
        self.banner.show(message)
        self.status.set("The reply failed (see the banner; Ctrl+R tries again)", "error")

    def _forget_if_empty(self) -> None:
        """A saved conversation that lost its only exchange leaves no empty row behind."""
        conv, store = self.conversation, self.session.store
        if not conv.nodes and conv.id is not None and store is not None and store.error is None:
            try:
                store.delete(conv.id)
            except Exception:  # pragma: no cover - the store reports its own failures
                pass
            conv.id = None

    def _gc_freeze(self) -> None:
        """Before a reply streams, move every object alive now out of the garbage collector's
        sight (gc.freeze). Otherwise a full collection during the stream walks every widget of
        a long chat: 160-280 ms pauses with 400 messages on the 2-core machine, felt as frozen
        keys. Cyclic garbage made before the freeze waits until `_gc_release`."""
        if self._manage_gc:
            gc.freeze()

    def _gc_release(self) -> None:
        """A new conversation just dropped the old widgets: collect them now, between replies."""
        if self._manage_gc:
            gc.unfreeze()
            gc.collect()

    async def _settle(self) -> None:
        """Stop the reply in flight and wait (briefly) until it is recorded as stopped, so that
        quitting or leaving the conversation loses nothing. An engine that does not stop in
        time leaves the reply saved as it was (shown as interrupted when reopened)."""
        gen = self._current
        if gen is None:
            return
        gen.cancel.set()
        deadline = time.monotonic() + SETTLE_S
        while self._current is gen and time.monotonic() < deadline:
            await asyncio.sleep(self._flush_interval)
            await self._drain()
        if self._current is gen:
            gen.recorder.flush()
            self._end_generation()

    # ---- actions ----
    async def action_stop(self) -> None:
        gen = self._current
        if gen is not None:
            gen.cancel.set()  # the engine stops within one step; its Done marks the reply stopped
            self.status.set("Stopping…", "busy")
        else:
            self.banner.clear()
            self.refresh_bindings()

    async def action_cancel_edit(self) -> None:
        self._end_edit()
        self.input.set_text(self._draft)
        self._draft = ""
        self._ready_status()

    @on(ChatHeader.NewConversation)
    async def _on_header_new(self) -> None:
        await self.new_conversation()
        self.input.focus()

    async def new_conversation(self) -> None:
        """A new, empty conversation (the settings and system message carry over)."""
        await self._settle()
        self._end_edit()
        conversation = start_conversation(self.session, replace(self.config.history, resume=None),
                                          system=self.system, sampling=self.sampling)
        await self._open(conversation, notice="New conversation")

    async def _open(self, conversation: Conversation, *, notice: str | None = None) -> None:
        """Show `conversation` instead of the current one."""
        self._detach(self.conversation)
        self.conversation = conversation
        if self.backend is not None:
            conversation.model = model_identity(self.backend)  # the model that answers from now on
        async with self._ui_lock:
            await self.log_view.clear()
            self.banner.clear()
            if notice:
                await self.log_view.mount(Notice(notice, kind="cleared"))
        if conversation.nodes:
            path = conversation.path()
            async with self._ui_lock:
                await self.log_view.add(*[self._widget(node) for node in path])
            self.log_view.follow()
        self.call_after_refresh(self._gc_release)
        self._ready_status()

    def _detach(self, conversation: Conversation) -> None:
        """Stop saving a conversation we leave (the one shown next gets its own observer)."""
        conversation.observers.clear()

    def _last(self, role: str) -> Node | None:
        return next((n for n in reversed(self.conversation.path()) if n.role == role), None)

    def _target_node(self, target, role: str | None = None) -> Node | None:
        """The node a message command acts on: the selected message, else the last of `role`."""
        if target is not None:
            return self.conversation.nodes.get(target.node_id)
        return self._last(role) if role else self.conversation.last

    async def regenerate(self, target=None) -> None:
        """A new version of a reply (the selected one, else the last); the old one is kept."""
        if self.generating:
            self.banner.show("A reply is still streaming: press Esc to stop it first", "busy")
            return
        if self._switching is not None:
            self.banner.show(self._switching_line(), "loading")
            return
        if self.backend is None:
            self.banner.show(self.load_error or "The model is still loading", "loading")
            return
        node = self._target_node(target)
        if node is not None and node.role == "assistant":
            question = self.conversation.nodes.get(node.parent)
        else:
            question = node if node is not None else None
        if question is None or question.role != "user":
            self.banner.show("Nothing to regenerate yet", "nothing")
            return
        check = self.conversation.copy()
        check.rewind(question.id)
        try:
            check.validate()
        except ValidationError as e:
            self.banner.show(sc.terminal_words(str(e)))
            return
        self.banner.clear()
        old = None
        if self.conversation.children.get(question.id):
            shown = next((n for n in self.conversation.path() if n.parent == question.id), None)
            old = self._widget_of(shown.id) if shown is not None else None
        self.conversation.rewind(question.id)
        if old is not None:
            await self._show_from(old, [])
        self.input.focus()
        self.log_view.follow()
        await self._start(user_node=None)

    async def edit(self, target=None) -> None:
        """Put a message of yours (the selected one, else the last) in the input; sending it
        adds a new version from there. Nothing is removed until then; Esc cancels."""
        if self.generating:
            self.banner.show("A reply is still streaming: press Esc to stop it first", "busy")
            return
        node = self._target_node(target, "user")
        if node is not None and node.role == "assistant":
            node = self.conversation.nodes.get(node.parent)
        if node is None:
            self.banner.show("Nothing to edit yet: your messages can be edited once sent", "nothing")
            return
        if self._editing is None:
            self._draft = self.input.text  # given back if the edit is cancelled
        self._end_edit()
        self._editing = node.id
        widget = self._widget_of(node.id)
        if widget is not None:
            widget.add_class("-editing")
        self.input.set_text(node.text)
        self.input.focus()
        users = [n.id for n in self.conversation.path() if n.role == "user"]
        which = "your message" if len(users) == 1 or node.id == users[-1] else \
            f"your {_ordinal(users.index(node.id) + 1)} message" if node.id in users else "your message"
        self.status.set(f"Editing {which}: Enter sends it as a new version (the old one stays); Esc cancels")
        self.refresh_bindings()

    def _end_edit(self) -> None:
        if self._editing is not None:
            widget = self._widget_of(self._editing)
            if widget is not None:
                widget.remove_class("-editing")
        self._editing = None
        self.refresh_bindings()

    def copy_message(self, target=None, *, code: bool = False) -> None:
        """Copy a message (the selected one, else the last reply), or one of its code blocks
        (pressed again on the same message: the next block) to the clipboard (OSC 52)."""
        node = self._target_node(target, "assistant")
        if node is None:
            self.banner.show("Nothing to copy yet", "nothing")
            return
        who = "your message" if node.role == "user" else "the reply"
        if not code:
            self._copy(node.text, who)
            return
        blocks = code_blocks(node.text)
        if not blocks:
            self.banner.show(f"{who[0].upper() + who[1:]} has no code block", "nothing")
            return
        widget = target if target is not None else self._widget_of(node.id)
        index = 0
        if isinstance(widget, AssistantMessage):
            index = (widget.copied_block + 1) % len(blocks) if target is not None else len(blocks) - 1
            widget.copied_block = index
        self._copy(blocks[index], f"code block {index + 1} of {len(blocks)}")

    def _copy(self, text: str, what: str) -> None:
        self.copy_to_clipboard(text)
        self.notify(copied_message(what, text), title="Copied")

    async def switch_version(self, target=None, step: int = 1) -> None:
        """Show another version of a message (the selected one, else the last reply)."""
        if self.generating:
            self.banner.show("A reply is still streaming: press Esc to stop it first", "busy")
            return
        node = self._target_node(target, "assistant")
        if node is None or len(self.conversation.siblings(node.id)) < 2:
            self.banner.show("This message has only one version (Ctrl+R or editing makes more)", "nothing")
            return
        old = self._widget_of(node.id)
        self.conversation.switch(node.id, step)
        depth = self._depth(node.id)
        nodes = self.conversation.path()[depth:]
        await self._show_from(old, nodes)
        if target is not None and nodes:
            replacement = self._widget_of(nodes[0].id)
            if replacement is not None:
                replacement.focus()

    async def delete_message(self, target=None) -> None:
        """Delete a message and everything after it, once the user confirms."""
        if self.generating:
            self.banner.show("A reply is still streaming: press Esc to stop it first", "busy")
            return
        node = self._target_node(target)
        if node is None:
            return
        after = len(self.conversation.path()) - self._depth(node.id) - 1
        what = "your message" if node.role == "user" else "this reply"
        question = f"Delete {what}" + (f" and the {after} message{'s' if after != 1 else ''} after it" if after else "") \
            + "? Other versions stay. This cannot be undone."

        async def confirmed(yes: bool | None) -> None:
            if not yes or node.id not in self.conversation.nodes:
                return
            old = self._widget_of(node.id)
            depth = self._depth(node.id)
            parent = node.parent
            self.conversation.discard(node.id)
            if self.conversation.children.get(parent):
                self.conversation.rewind(self.conversation.latest_leaf(parent) if parent is not None
                                         else self.conversation.latest_leaf(self.conversation.children[None][-1]))
            self._forget_if_empty()
            await self._show_from(old, self.conversation.path()[depth:])
            self.input.focus()
            self.notify("Deleted", timeout=2)

        self.push_screen(ConfirmScreen(question, yes="Delete"), confirmed)

    # ---- selecting messages ----
    def select_last_message(self) -> None:
        widgets = self._message_widgets()
        if not widgets:
            self.notify("No messages yet", timeout=2)
            return
        self._focus_message(widgets[-1])

    def _focus_message(self, widget) -> None:
        widget.focus()
        self.log_view.scroll_to_widget(widget, animate=False, top=widget.outer_size.height > self.log_view.size.height)

    def action_select_message(self, step: int) -> None:
        widgets = self._message_widgets()
        focused = self.focused
        if not widgets or focused not in widgets:
            return
        index = max(0, min(len(widgets) - 1, widgets.index(focused) + step))
        self._focus_message(widgets[index])

    def action_leave_messages(self) -> None:
        self.input.focus()
        log = self.log_view
        if log.scroll_y >= log.max_scroll_y - 1:
            log.follow()

    async def action_message_command(self, name: str) -> None:
        target = self.focused if isinstance(self.focused, (UserMessage, AssistantMessage)) else None
        await self.run_named(name, target=target)

    def action_scroll_log(self, direction: int) -> None:
        log = self.log_view
        if direction < 0:
            log.scroll_page_up()
        else:
            log.scroll_page_down()

    # ---- conversations ----
    def list_conversations(self, search: str) -> list[Any]:
        store = self.session.store
        if store is None:
            return []
        return store.search(search) if search else store.list()

    def open_conversations(self) -> None:
        saving = None if self.session.store is not None else (
            "history is off (--no-history, or history = false in the settings file)" if self.session.incognito
            else (self.session.warning or "history unavailable"))

        async def chosen(conversation_id: int | None) -> None:
            if conversation_id is None or conversation_id == self.conversation.id:
                self.input.focus()
                return
            await self.open_saved(conversation_id)

        self.push_screen(ConversationsScreen(self, current=self.conversation.id, saving=saving), chosen)

    async def open_saved(self, conversation_id: int) -> None:
        store = self.session.store
        assert store is not None
        await self._settle()
        self._end_edit()
        try:
            conversation = store.load(conversation_id)
        except NanochatError as e:
            self.banner.show(str(e))
            return
        conversation.sampling = self.sampling  # this session's settings apply from now on
        store.attach(conversation)
        count = len(conversation.path())
        await self._open(conversation, notice=f"Opened “{conversation.title or 'conversation'}” "
                                              f"({count} message{'s' if count != 1 else ''})")
        self.input.focus()

    def rename_conversation(self, conversation_id: int, title: str) -> None:
        if conversation_id == self.conversation.id:
            self.conversation.set_title(title)  # (saved through the conversation, which would
        elif self.session.store is not None:   # otherwise write its old title back)
            self.session.store.rename(conversation_id, title)

    async def delete_conversation(self, conversation_id: int) -> None:
        store = self.session.store
        if store is None:
            return
        if conversation_id == self.conversation.id:
            await self._settle()
            self._detach(self.conversation)
            store.delete(conversation_id)
            await self.new_conversation()
        else:
            store.delete(conversation_id)
        self.notify("Conversation deleted", timeout=2)

    def export_conversation(self, conversation_id: int | None, fmt: str, path: str | None = None) -> str:
        """Write a conversation (None: the current one) as Markdown or JSON; returns where."""
        from nanochat_core.history import export_json, export_markdown

        if conversation_id is None or conversation_id == self.conversation.id:
            conversation = self.conversation
        else:
            assert self.session.store is not None
            conversation = self.session.store.load(conversation_id)
        ext = "json" if fmt == "json" else "md"
        text = (json.dumps(export_json(conversation), ensure_ascii=False, indent=2) + "\n" if ext == "json"
                else export_markdown(conversation))
        target = Path(path).expanduser() if path else None
        if target is None or target.is_dir():
            folder = target or Path.cwd()
            stem = f"nanochat-{_slug(conversation.title)}"
            target = folder / f"{stem}.{ext}"
            n = 2
            while target.exists():
                target = folder / f"{stem}-{n}.{ext}"
                n += 1
        try:
            target.write_text(text, encoding="utf-8")
        except OSError as e:
            raise ExportFailed(f"cannot write {target}: {e.strerror or e}") from None
        return str(target.resolve())

    async def _export_command(self, arg: str | None) -> None:
        words = (arg or "").split(maxsplit=1)
        fmt = "md"
        if words and words[0].lower() in ("md", "markdown", "json"):
            fmt = "json" if words[0].lower() == "json" else "md"
            words = words[1:]
        path = words[0] if words else None
        if not self.conversation.nodes:
            self.banner.show("Nothing to export yet", "nothing")
            return
        try:
            where = self.export_conversation(None, fmt, path)
        except NanochatError as e:
            self.banner.show(str(e))
            return
        await self.notice(f"Exported to {where}", kind="setting")

    # ---- switching models ----
    def model_rows(self) -> list[tuple[str, str]]:
        """What /model shows in client mode (--server), where there is no local list to pick from."""
        if self.backend is None:
            rows = [("model", self.load_error and f"not loaded: {self.load_error}" or "loading…")]
        else:
            info = self.backend.info
            rows = [("loaded", info.describe())]
            for key, value in model_identity(self.backend).items():
                if value not in (None, ""):
                    rows.append((key.replace("_", " "), str(value)))
        rows.append(("another", "switching in the app is for local checkpoints; for another of this server's "
                                "models start again with --model ID (the server's list: GET /v1/models)"))
        return rows

    def _is_remote(self) -> bool:
        info = getattr(self.backend, "info", None)
        return getattr(self.config.model, "server", None) is not None or bool(getattr(info, "is_remote", False))

    def catalog_entries(self) -> list["CatalogEntry"]:
        """What the picker lists: `nanochat-tui models` for this configuration (the --model-dir
        or default base dir, the settings file's model_dirs, the HF cache, the demo model).
        Blocking: the picker calls it on a worker thread."""
        from nanochat_core.catalog import list_models

        return list_models(getattr(self.config.model, "base_dir", None), self.config.model_dirs)

    def _looked_in(self) -> str:
        from nanochat_core.checkpoints import default_base_dir

        base = getattr(self.config.model, "base_dir", None) or default_base_dir()
        return ", ".join([str(base), *self.config.model_dirs, "the Hugging Face cache"])

    async def open_model_picker(self, arg: str | None = None) -> None:
        """/model [NAME|N] and the palette: the picker (client mode: what the server gives)."""
        if self._is_remote():
            await self._add(InfoPanel("", sections=[("Model", self.model_rows())], classes="model"))
            return
        refusal = self._switch_refusal()
        if refusal is not None:
            self.banner.show(*refusal)
            return
        info = getattr(self.backend, "info", None)
        loaded = f"{info.short_name} ({info.device}, {info.dtype})" if info is not None else \
            f"no model loaded ({self.load_error})"
        screen = ModelPickerScreen(self.catalog_entries, current=getattr(info, "model_path", None) or None,
                                   loaded=loaded, looked_in=self._looked_in(), query=arg)
        self.push_screen(screen, self._model_chosen)

    def _switch_refusal(self) -> tuple[str, str] | None:
        """(why, banner cause) when a switch cannot start now; None when it can. The model
        changes between replies only: a user who wants another model now stops the reply
        (Esc) and asks again; stopping it for them would throw away text they may want."""
        if self.generating:
            return ("A reply is still streaming: press Esc to stop it, then /model "
                    "(the model changes between replies)", "busy")
        if self._switching is not None:
            return self._switching_line(), "switch"
        if self.backend is None and self.load_error is None:
            return "The model is still loading: choose another once it is ready", "loading"
        return None

    def _switching_line(self) -> str:
        assert self._switching is not None
        return (f"Switching to {one_line(self._switching.label)}: your message stays here until it is "
                f"loaded (the status line shows how far it got)")

    def _model_chosen(self, entry: "CatalogEntry | None") -> None:
        self.input.focus()
        if entry is not None:
            self.switch_model(entry)

    def switch_model(self, entry: "CatalogEntry") -> None:
        """Load `entry` on a worker thread (catalog.load_in_background) with its stages in the
        status line; once loaded it answers from the next reply with the whole conversation
        (`_model_ready`). Until then no reply starts (what is sent next goes to the new model).
        A failed load is one line, and the model in use stays, untouched."""
        from nanochat_core.catalog import load_in_background

        current = getattr(getattr(self.backend, "info", None), "model_path", None)
        if current and os.path.realpath(current) == os.path.realpath(entry.model_path):
            self.notify(f"Already using {one_line(self.backend.info.short_name)}", timeout=3)
            return
        refusal = self._switch_refusal()
        if refusal is not None:
            self.banner.show(*refusal)
            return
        self._switching = entry
        self.banner.clear("load")
        self.status.set(f"Switching to {one_line(entry.label)}…", "busy")
        selection = self.config.model
        # The launch's device, dtype and --quantize carry over; --softcap does not (it is the
        # override for one checkpoint's ambiguity, docs/checkpoints.md).
        load_in_background(
            entry,
            progress=lambda line: self.post_message(self.SwitchProgress(entry, line)),
            on_done=lambda backend, error: self.post_message(self.SwitchDone(entry, backend, error)),
            device=getattr(selection, "device_type", None), dtype=getattr(selection, "dtype", None),
            quantize=getattr(selection, "quantize", None))

    async def on_nanochat_app_switch_progress(self, message: SwitchProgress) -> None:
        if message.entry is self._switching:
            self.status.set(f"Switching to {one_line(message.entry.label)} · {one_line(message.line)}", "busy")

    async def on_nanochat_app_switch_done(self, message: SwitchDone) -> None:
        entry = message.entry
        if entry is not self._switching:
            return
        self._switching = None
        self.banner.clear("switch", "loading")
        if message.error is None and message.backend is not None:
            await self._model_ready(message.backend, switched=True)
            return
        error = message.error or RuntimeError("the load returned no model")
        still = f" · still using {self.backend.info.short_name}" if self.backend is not None else ""
        line = one_line(f"Could not switch to {entry.label}: {_load_error_line(error)}{still}")
        # What a half-done load allocated goes back now (its traceback's frames hold it).
        error.__traceback__ = None
        self._release_memory()
        await self._add(Notice(line, kind="error"))
        self.banner.show(line, "switch")
        if self.backend is not None:
            self._ready_status()
        else:
            self.status.set("No model loaded (see the message above); /model chooses one, Ctrl+Q quits", "error")

    # ---- theme, settings ----

    def _theme_changed(self, theme: Any) -> None:
        name = getattr(theme, "name", str(theme))
        if name == self._saved_theme or (self._saved_theme is None and name == DEFAULT_THEME):
            return
        try:
            settings_file.save_values({"theme": name}, self.settings_path)
        except NanochatError as e:
            self.notify(one_line(str(e)), severity="error")
            return
        self._saved_theme = name
        self.notify(f"Theme {name} (remembered in {settings_file.shown_path(self.settings_path)})", timeout=3)

    def open_settings(self) -> None:
        def done(result: SettingsResult | None) -> None:
            self.input.focus()
            if result is None:
                return
            if result.sampling != self.sampling:
                self.sampling = result.sampling
            if result.system != self.system:
                self.system = result.system
            if result.theme != self.theme:
                self.theme = result.theme
            if result.save:
                try:
                    where = settings_file.save_values(
                        {"temperature": result.sampling.temperature, "top_k": result.sampling.top_k or 0,
                         "max_tokens": result.sampling.max_tokens, "system": result.system,
                         "theme": result.theme}, self.settings_path)
                except NanochatError as e:
                    self.banner.show(str(e))
                    return
                self._saved_theme = result.theme
                self.notify(f"Saved as defaults in {settings_file.shown_path(where)}", timeout=3)
            else:
                self.notify("Settings applied to this session", timeout=2)

        self.push_screen(SettingsScreen(
            sampling=self.sampling, system=self.system, theme=self.theme,
            themes=sorted(self.available_themes), settings_path=settings_file.shown_path(self.settings_path),
            history=self.session.status), done)

    # ---- /stats ----
    def stats_rows(self) -> list[tuple[str, str]]:
        path = self.conversation.path()
        return sc.stats_rows(
            info=getattr(self.backend, "info", None), sampling=self.sampling, system=self.system,
            launch=sc.launch_flags(self.config.model.as_stats(), self.config.sampling,
                                   system=self.config.system, debug=self.config.debug),
            messages=len(path), last_summary=self.last_summary, replies=self.replies,
            total_tokens=self.total_tokens, saving=self.session.status,
        )

    def stats_text(self) -> str:
        return "\n".join(["Stats", *sc.aligned_rows(self.stats_rows())])

    # ---- quitting ----
    async def quit_app(self, result: str | None = None) -> None:
        """Quit without losing anything: a streaming reply is stopped and recorded first."""
        await self._settle()
        self.exit(result)

    async def action_quit(self) -> None:
        await self.quit_app()


class ExportFailed(NanochatError):
    """An export could not be written (one line)."""


def run_tui(config: ChatConfig) -> int:
    """Run the full-screen chat; returns the exit code. Prints "Goodbye!" after the screen closes
    when the user typed quit/exit. A model that never loaded is raised again once the screen is
    gone (the CLI prints it as one error line, exit 2), so it is not lost with the screen."""
    session = open_session(config.history)
    conversation = start_conversation(session, config.history, system=config.system, sampling=config.sampling)
    if config.theme is not None:
        _check_theme(config.theme)
    app = NanochatApp(config, session=session, conversation=conversation, manage_gc=True)
    result = app.run()
    if app.return_code:
        return app.return_code
    if result == GOODBYE:
        print("Goodbye!")
    if app.backend is None and app.load_error is not None:
        raise ModelLoadFailed(f"could not load the model: {app.load_error}")
    return 0


def _check_theme(name: str) -> None:
    from textual.theme import BUILTIN_THEMES

    if name not in BUILTIN_THEMES:
        names = ", ".join(sorted(BUILTIN_THEMES))
        raise settings_file.SettingsError(
            f"{settings_file.shown_path()}: theme: no theme {name!r} (choose one of {names})")
