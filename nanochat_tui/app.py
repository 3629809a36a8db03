"""`nanochat-tui`: the full-screen chat (Textual).

The app talks to the engine only through the Core API: `config.model.load(progress)` in a thread
worker, then `model.chat(messages, sampling, cancel)` in another. Generation events go into a
queue that a 30 Hz timer drains into the reply widget (tokens reach the UI in batches; the worker
never blocks on the UI). Model text is sanitized for the terminal before it is shown.

Only this module and nanochat_tui.widgets import Textual (the CLI imports us lazily), so
`--help`, `--prompt` and `--web` stay Textual-free.
"""

from __future__ import annotations

import asyncio
import gc
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from textual import on, work
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.message import Message as TextualMessage
from textual.widgets import Footer

from nanochat_core.chat import Message, SamplingParams, ValidationError, validate_messages
from nanochat_core.events import Done, ErrorEvent, GenerationStats, TextDelta, ToolCall, ToolResult
from nanochat_core.text import sanitize_for_terminal

from . import commands as sc
from .config import ChatConfig
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

FLUSH_INTERVAL_S = 1 / 30  # how often streamed tokens are moved from the worker's queue to the screen
GOODBYE = "goodbye"  # App result when the user typed quit/exit: run_tui prints "Goodbye!"
BUSY_MESSAGE = "A reply is still streaming: press Esc to stop it, then send (your text is kept)"

_END = object()  # the worker's last queue item, after the engine's events


@dataclass(eq=False)
class _Generation:
    """One reply in flight. The worker appends events to `queue`; the UI drains it."""

    id: int
    conversation: list[Message]  # history + the user message it answers (no system message)
    widget: AssistantMessage
    cancel: threading.Event = field(default_factory=threading.Event)
    queue: deque = field(default_factory=deque)
    user_text: str | None = None  # a new message (restored to the input if the engine fails)
    started: float = field(default_factory=time.perf_counter)
    first_text_at: float | None = None
    done: Done | None = None


class NanochatApp(App[str | None], inherit_bindings=False):
    """The chat. `backend`: an already-loaded model (tests); otherwise `config.model` is loaded."""

    CSS_PATH = str(Path(__file__).with_name("app.tcss"))  # absolute: subclasses elsewhere work too
    TITLE = "nanochat"
    ENABLE_COMMAND_PALETTE = False

    BINDINGS = [
        Binding("ctrl+n", "new_conversation", "New chat", priority=True),
        Binding("ctrl+shift+n", "new_conversation", "New chat", show=False, priority=True),
        Binding("ctrl+shift+N", "new_conversation", "New chat", show=False, priority=True),
        Binding("escape", "stop", "Stop", priority=True),
        Binding("ctrl+r", "regenerate", "Regenerate", priority=True),
        Binding("pageup", "scroll_log(-1)", "Scroll up", show=False, priority=True),
        Binding("pagedown", "scroll_log(1)", "Scroll down", show=False, priority=True),
        Binding("ctrl+q", "quit", "Quit", priority=True),
        Binding("ctrl+c", "quit", "Quit", show=False, priority=True),
    ]

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

    def __init__(self, config: ChatConfig | None = None, *, backend: Any = None,
                 flush_interval: float = FLUSH_INTERVAL_S, animate: bool = True,
                 manage_gc: bool = False) -> None:
        """animate=False: no cursor blinking (snapshots). manage_gc: see `_gc_freeze` (run_tui
        turns it on; it changes process-wide state, so tests leave it off)."""
        super().__init__()
        self._manage_gc = manage_gc
        self.config = config or ChatConfig()
        self.backend = backend
        self.load_error: str | None = None
        self.sampling: SamplingParams = self.config.sampling
        self.system: str | None = self.config.system
        self.history: list[Message] = []
        self.last_stats: GenerationStats | None = None
        self.last_summary: str | None = None
        self.replies = 0
        self.total_tokens = 0
        self._animate = animate
        self._flush_interval = flush_interval
        self._current: _Generation | None = None
        self._gen_ids = 0
        self._regenerations = 0
        self._backend_lock = threading.Lock()  # one stream at a time (a ChatModel owns one KV cache)
        self._ui_lock = asyncio.Lock()  # serializes changes to the chat log
        self.flushes = 0  # how many times queued events were moved to the screen (benchmark)

    # ---- layout ----
    def compose(self) -> ComposeResult:
        yield ChatHeader(id="header")
        yield ChatLog(id="log")
        yield PromptInput(id="input")
        yield ErrorBanner(id="error")
        yield StatusBar(id="status")
        yield Footer()

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

    async def on_mount(self) -> None:
        self._flush_timer = self.set_interval(self._flush_interval, self._drain, pause=True)
        prompt = self.input
        if not self._animate:
            prompt.cursor_blink = False
        prompt.focus()
        if self.backend is not None:
            await self._model_ready(self.backend)
        else:
            self.status.set("Loading the model…", "busy")
            self._load_model()

    # ---- loading ----
    @work(thread=True, exclusive=True, group="load")
    def _load_model(self) -> None:
        try:
            backend = self.config.model.load(progress=lambda line: self.post_message(self.LoadProgress(line)))
        except ValueError as e:  # CheckpointError and ValidationError: one line for the user
            self.post_message(self.LoadFailed(str(e).splitlines()[0] if str(e) else type(e).__name__))
        except Exception as e:  # anything else: still one line, never a traceback on screen
            self.post_message(self.LoadFailed(f"{type(e).__name__}: {e}".splitlines()[0]))
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
        self.banner.show(self.load_error)
        self.status.set("No model loaded (see the message above); Ctrl+Q quits", "error")

    async def _model_ready(self, backend: Any) -> None:
        self.backend = backend
        self.load_error = None
        self.banner.clear()  # ("still loading" from an early Enter no longer applies)
        info = backend.info
        self.query_one(ChatHeader).set_model(info.short_name, f"{info.device} · {info.dtype}")
        await self._add(Notice(f"Ready: {info.describe()}", kind="ready"))
        self.status.set(f"Ready · {info.short_name} · /help for commands and keys")

    # ---- the log ----
    async def _add(self, widget) -> None:
        async with self._ui_lock:
            await self.log_view.add(widget)

    async def notice(self, text: str, kind: str = "info") -> None:
        await self._add(Notice(text, kind=kind))

    # ---- input ----
    @on(PromptInput.Submitted)
    async def _on_submitted(self, event: PromptInput.Submitted) -> None:
        await self.submit(event.text)

    async def submit(self, text: str) -> None:
        """What Enter does with the input's text."""
        if not text.strip():
            return  # empty input sends nothing
        parsed = sc.parse_input(text, sc.TUI)
        if parsed.command is not None:
            await self._run_command(parsed.command)
            return
        text = parsed.text
        if self.generating:
            self.banner.show(BUSY_MESSAGE)
            return
        if self.backend is None:
            self.banner.show(self.load_error or "The model is still loading: your message stays here until it is ready")
            return
        message = text.strip()
        conversation = self.history + [Message("user", message)]
        try:
            request = validate_messages(self._with_system(conversation))
        except ValidationError as e:
            self.banner.show(str(e))  # the text stays in the input so it can be fixed
            return
        self.banner.clear()
        self.input.clear()
        self.log_view.follow()
        await self._add(UserMessage(message))
        await self._start(conversation, request, self.sampling, user_text=message)

    def _with_system(self, conversation: list[Message]) -> list[Message]:
        return ([Message("system", self.system)] if self.system else []) + conversation

    async def _run_command(self, command: sc.Command) -> None:
        self.banner.clear()
        name = command.name
        if name == "quit":
            self._cancel_current()
            self.exit(GOODBYE)
            return
        if name == "new":
            self.input.clear()
            await self.new_conversation()
            return
        if name == "stop":
            self.input.clear()
            await self.action_stop()
            return
        if name == "regenerate":
            self.input.clear()
            await self.action_regenerate()
            return
        if name == "edit":
            self.input.clear()
            await self.edit_last()
            return
        if name == "unknown":
            self.banner.show(sc.unknown_command_message(command))
            return
        if name == "help":
            self.input.clear()
            await self._add(InfoPanel(sc.help_text(), classes="help"))
            return
        if name == "stats":
            self.input.clear()
            await self._add(InfoPanel(self.stats_text(), classes="stats"))
            return
        if name in ("temperature", "top_k", "max_tokens"):
            try:
                self.sampling, answer = sc.apply_sampling_command(command, self.sampling)
            except ValidationError as e:
                self.banner.show(str(e))  # the rulebook's words; the command stays in the input
                return
        elif name == "system":
            self.system, answer = sc.apply_system_command(command, self.system)
            answer = sanitize_for_terminal(answer)
        else:  # commands of the registry this app does not offer yet
            self.banner.show(f"{command.word} is not available in this version of the app")
            return
        self.input.clear()
        await self.notice(answer, kind="setting")

    def stats_text(self) -> str:
        launch = dict(self.config.model.as_stats())
        c = self.config.sampling
        launch.update(temperature=c.temperature, top_k=c.top_k, max_tokens=c.max_tokens, seed=c.seed,
                      system=self.config.system is not None, debug=self.config.debug)
        return sc.stats_text(
            info=getattr(self.backend, "info", None), sampling=self.sampling, system=self.system,
            launch=launch, messages=len(self.history), last_summary=self.last_summary,
            replies=self.replies, total_tokens=self.total_tokens,
        )

    # ---- generation ----
    async def _start(self, conversation: list[Message], request: list[Message],
                     sampling: SamplingParams, *, user_text: str | None) -> None:
        self._gen_ids += 1
        widget = AssistantMessage(classes="assistant")
        gen = _Generation(self._gen_ids, conversation, widget, user_text=user_text)
        self._current = gen
        self._gc_freeze()
        await self._add(widget)
        self.status.set("Generating… (Esc stops)", "busy")
        self.refresh_bindings()
        self._flush_timer.resume()
        self._generate(gen, request, sampling)

    @work(thread=True, group="generate", exit_on_error=False)
    def _generate(self, gen: _Generation, request: list[Message], sampling: SamplingParams) -> None:
        """Runs the engine; never touches widgets (only the queue)."""
        with self._backend_lock:  # a stopped reply finishes its last step before the next starts
            try:
                if not gen.cancel.is_set():
                    for event in self.backend.chat(request, sampling, cancel=gen.cancel):
                        gen.queue.append(event)
            except ValidationError as e:
                gen.queue.append(ErrorEvent(str(e)))
            except Exception as e:  # an engine bug must not kill the app: one line in the banner
                gen.queue.append(ErrorEvent(f"{type(e).__name__}: {e}".splitlines()[0]))
            finally:
                gen.queue.append(_END)

    async def _drain(self) -> None:
        """Move queued events to the screen (timer callback, UI thread)."""
        gen = self._current
        if gen is None:
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
                if isinstance(event, ToolCall):
                    await gen.widget.add_tool_call(sanitize_for_terminal(event.expression))
                elif isinstance(event, ToolResult):
                    result = None if event.result is None else sanitize_for_terminal(event.result)
                    gen.widget.set_tool_result(sanitize_for_terminal(event.expression), result)
                elif isinstance(event, Done):
                    gen.done = event
                    await self._finished(gen, event)
                    return
                elif isinstance(event, ErrorEvent):
                    await self._failed(gen, event.message)
                    return
                elif event is _END:
                    await self._failed(gen, "the reply ended without finishing")
                    return
            if pending:
                await self._show_text(gen, "".join(pending))

    async def _show_text(self, gen: _Generation, text: str) -> None:
        if gen.first_text_at is None:
            gen.first_text_at = time.perf_counter()
        await gen.widget.append(sanitize_for_terminal(text))

    def _end_generation(self) -> None:
        self._current = None
        self._flush_timer.pause()
        self.refresh_bindings()

    async def _finished(self, gen: _Generation, done: Done) -> None:
        await gen.widget.finish(done.reason)
        self._end_generation()
        self.history = list(gen.conversation)
        if done.parts and any(p["text"] for p in done.parts):
            self.history.append(Message("assistant", tuple(done.parts)))
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

    async def _failed(self, gen: _Generation, message: str) -> None:
        """An engine error: the banner says why; the message goes back into the input."""
        message = sanitize_for_terminal(message)
        self._end_generation()
        await gen.widget.remove()
        if gen.user_text is not None and not self.input.text:
            # nothing is lost: the user's message returns to the input, the bubble goes
            bubbles = list(self.log_view.query(UserMessage))
            if bubbles and bubbles[-1].text == gen.user_text:
                await bubbles[-1].remove()
            self.input.set_text(gen.user_text)
        self.banner.show(message)
        self.status.set("The reply failed (see the banner)", "error")

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

    def _cancel_current(self) -> None:
        if self._current is not None:
            self._current.cancel.set()

    # ---- actions ----
    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "stop":
            # Esc passes through to the focused widget when there is nothing to stop or dismiss
            # (None: shown dimmed in the footer, and the key goes on to the focused widget)
            return True if (self.generating or self.banner.visible) else None
        return True

    async def action_stop(self) -> None:
        gen = self._current
        if gen is not None:
            gen.cancel.set()  # the engine stops within one step; its Done marks the reply stopped
            self.status.set("Stopping…", "busy")
        else:
            self.banner.clear()
            self.refresh_bindings()

    async def action_new_conversation(self) -> None:
        await self.new_conversation()

    @on(ChatHeader.NewConversation)
    async def _on_header_new(self) -> None:
        await self.new_conversation()
        self.input.focus()

    async def new_conversation(self) -> None:
        self._cancel_current()
        self._end_generation()
        async with self._ui_lock:
            await self.log_view.clear()
            self.history = []
            self._regenerations = 0
            self.banner.clear()
            await self.log_view.mount(Notice("New conversation", kind="cleared"))
        self.call_after_refresh(self._gc_release)
        name = self.backend.info.short_name if self.backend is not None else "no model"
        self.status.set(f"Ready · {name}" if self.backend is not None else self.status.text)

    async def action_regenerate(self) -> None:
        if self.generating:
            self.banner.show("A reply is still streaming: press Esc to stop it first")
            return
        if self.backend is None:
            self.banner.show(self.load_error or "The model is still loading")
            return
        conversation = list(self.history)
        if conversation and conversation[-1].role == "assistant":
            conversation.pop()
        if not conversation or conversation[-1].role != "user":
            self.banner.show("Nothing to regenerate yet")
            return
        try:
            request = validate_messages(self._with_system(conversation))
        except ValidationError as e:
            self.banner.show(str(e))
            return
        self.banner.clear()
        async with self._ui_lock:
            replies = list(self.log_view.query(AssistantMessage))
            if replies and self.history and self.history[-1].role == "assistant":
                await self._remove_from(replies[-1])
        self._regenerations += 1
        sampling = self.sampling
        if sampling.seed is not None:  # a different seed, or the same reply would come back
            sampling = sampling.with_overrides(seed=(sampling.seed + self._regenerations) % 2**63)
        self.history = conversation
        self.log_view.follow()
        await self._start(conversation, request, sampling, user_text=None)

    async def _remove_from(self, widget) -> None:
        """Remove `widget` and everything after it from the log."""
        children = list(self.log_view.children)
        index = children.index(widget)
        await self.log_view.remove_children(children[index:])

    @on(PromptInput.EditLast)
    async def _on_edit_last(self) -> None:
        await self.edit_last()

    async def edit_last(self) -> None:
        """Put the last user message back in the input and rewind the conversation to before it."""
        if self.generating:
            self.banner.show("A reply is still streaming: press Esc to stop it first")
            return
        users = [i for i, m in enumerate(self.history) if m.role == "user"]
        if not users:
            return
        index = users[-1]
        text = self.history[index].text
        async with self._ui_lock:
            bubbles = list(self.log_view.query(UserMessage))
            if bubbles:
                await self._remove_from(bubbles[-1])
        self.history = self.history[:index]
        self.input.set_text(text)
        self.status.set("Editing your last message: Enter resends it from here")

    def action_scroll_log(self, direction: int) -> None:
        log = self.log_view
        if direction < 0:
            log.scroll_page_up()
        else:
            log.scroll_page_down()

    async def action_quit(self) -> None:
        self._cancel_current()
        self.exit()


def run_tui(config: ChatConfig) -> int:
    """Run the full-screen chat; returns the exit code. Prints "Goodbye!" after the screen closes
    when the user typed quit/exit. Exit code 2 when the model never loaded (like the CLI)."""
    app = NanochatApp(config, manage_gc=True)
    result = app.run()
    if app.return_code:
        return app.return_code
    if result == GOODBYE:
        print("Goodbye!")
    if app.backend is None and app.load_error is not None:
        return 2
    return 0
