"""The app's dialogs: saved conversations, a yes/no question, a new title, the settings.

Each is a ModalScreen that returns its answer with `dismiss()`; the app does the work (the
screens never touch the store or the conversation themselves, see app.py)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable, Protocol

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Footer, Input, Label, OptionList, Select, Static, TextArea
from textual.widgets.option_list import Option

from nanochat_core.chat import SamplingParams, ValidationError, parse_max_tokens, parse_temperature, parse_top_k
from nanochat_core.text import one_line

from ..commands import terminal_words
from .cells import cell_safe


class ConversationActions(Protocol):
    """What the conversation list asks of the app."""

    def list_conversations(self, search: str) -> list[Any]: ...
    def rename_conversation(self, conversation_id: int, title: str) -> None: ...
    async def delete_conversation(self, conversation_id: int) -> None: ...
    def export_conversation(self, conversation_id: int | None, fmt: str, path: str | None = None) -> str: ...


def _when(t: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(t))


class ConversationList(OptionList):
    """The list: Enter opens; letters act on the highlighted conversation."""

    BINDINGS = [
        Binding("enter", "open", "Open", show=True),
        Binding("r", "rename", "Rename"),
        Binding("d,delete", "delete", "Delete"),
        Binding("m", "export('md')", "Export .md"),
        Binding("j", "export('json')", "Export .json"),
        Binding("slash", "search", "Search"),
    ]

    def _chosen(self) -> int | None:
        if self.highlighted is None:
            return None
        return int(self.get_option_at_index(self.highlighted).id)

    def action_open(self) -> None:
        chosen = self._chosen()
        if chosen is not None:
            self.screen.dismiss(chosen)

    def action_rename(self) -> None:
        self.screen.rename(self._chosen())

    def action_delete(self) -> None:
        self.screen.delete(self._chosen())

    def action_export(self, fmt: str) -> None:
        self.screen.export(self._chosen(), fmt)

    def action_search(self) -> None:
        self.screen.query_one("#search", Input).focus()


class ConversationsScreen(ModalScreen[int | None]):
    """Saved conversations, newest first: search by text, open, rename, delete, export.
    Returns the id of the conversation to open (None: closed)."""

    BINDINGS = [Binding("escape", "close", "Close")]

    def __init__(self, actions: ConversationActions, *, current: int | None, saving: str | None) -> None:
        super().__init__()
        self.actions = actions
        self.current = current
        self.saving = saving  # None while saving; else why nothing is saved
        self.rows: list[Any] = []

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog"):
            yield Label("Conversations", id="dialog-title")
            yield Input(placeholder="Search conversations (title or any message)…", id="search")
            yield ConversationList(id="conversations")
            yield Static("", id="empty", markup=False)
        yield Footer()

    def on_mount(self) -> None:
        self.refresh_list()
        listing = self.query_one(ConversationList)
        if self.rows:
            listing.focus()
        else:
            self.query_one("#search", Input).focus()

    def refresh_list(self, keep: int | None = None) -> None:
        search = self.query_one("#search", Input).value.strip()
        self.rows = self.actions.list_conversations(search)
        listing = self.query_one(ConversationList)
        listing.clear_options()
        for row in self.rows:
            title = Text(("● " if row.id == self.current else "  ") + cell_safe(one_line(row.title, 70)), style="bold")
            meta = f"   {row.messages} message{'s' if row.messages != 1 else ''} · {_when(row.updated)}"
            if row.model:
                meta += f" · {one_line(row.model, 40)}"
            title.append(meta, style="dim")
            listing.add_option(Option(title, id=str(row.id)))
        ids = [row.id for row in self.rows]
        if ids:
            listing.highlighted = ids.index(keep) if keep in ids else 0
        empty = self.query_one("#empty", Static)
        if self.saving is not None:
            empty.update(f"Nothing is saved in this session: {self.saving}")
        elif not self.rows:
            empty.update("No conversation matches." if search else "No saved conversations yet.")
        else:
            empty.update("")
        empty.display = bool(empty.content)

    @on(Input.Changed, "#search")
    def _search(self) -> None:
        self.refresh_list()

    @on(Input.Submitted, "#search")
    def _search_done(self) -> None:
        if self.rows:
            self.query_one(ConversationList).focus()

    @on(OptionList.OptionSelected)
    def _selected(self, event: OptionList.OptionSelected) -> None:
        self.dismiss(int(event.option.id))

    def on_key(self, event) -> None:
        # Down from the search box goes to the list (as in a browser's search field)
        if event.key == "down" and self.focused is self.query_one("#search", Input) and self.rows:
            event.stop()
            self.query_one(ConversationList).focus()

    def _title(self, conversation_id: int) -> str:
        return next((row.title for row in self.rows if row.id == conversation_id), "(untitled)")

    def rename(self, conversation_id: int | None) -> None:
        if conversation_id is None:
            return

        def done(title: str | None) -> None:
            if title:
                self.actions.rename_conversation(conversation_id, title)
                self.refresh_list(keep=conversation_id)

        self.app.push_screen(RenameScreen(self._title(conversation_id)), done)

    def delete(self, conversation_id: int | None) -> None:
        if conversation_id is None:
            return

        async def done(yes: bool | None) -> None:
            if yes:
                await self.actions.delete_conversation(conversation_id)
                if conversation_id == self.current:
                    self.current = None
                self.refresh_list()
                self.query_one(ConversationList).focus()

        title = one_line(self._title(conversation_id), 60)
        self.app.push_screen(ConfirmScreen(f"Delete “{title}”? This cannot be undone.", yes="Delete"), done)

    def export(self, conversation_id: int | None, fmt: str) -> None:
        if conversation_id is None:
            return
        try:
            where = self.actions.export_conversation(conversation_id, fmt)
        except Exception as e:  # a NanochatError from writing: one line
            self.app.notify(one_line(str(e)), severity="error")
            return
        self.app.notify(f"Exported to {one_line(where)}", title="Export")

    def action_close(self) -> None:
        self.dismiss(None)


class ConfirmScreen(ModalScreen[bool]):
    """A yes/no question. `y` (or the button) says yes; `n`, Esc (or the other button) no."""

    BINDINGS = [Binding("y", "answer(True)", "Yes"), Binding("n,escape", "answer(False)", "No")]

    def __init__(self, question: str, *, yes: str = "Yes", no: str = "Keep") -> None:
        super().__init__()
        self.question, self.yes, self.no = question, yes, no

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog", classes="small"):
            yield Static(self.question, id="question", markup=False)
            with Horizontal(id="buttons"):
                yield Button(f"{self.yes} (y)", variant="error", id="yes")
                yield Button(f"{self.no} (n)", id="no")

    def on_mount(self) -> None:
        self.query_one("#no", Button).focus()  # Enter on the default keeps things as they are

    @on(Button.Pressed)
    def _pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "yes")

    def action_answer(self, yes: bool) -> None:
        self.dismiss(yes)


class RenameScreen(ModalScreen[str | None]):
    """A new title: Enter keeps it, Esc leaves the old one."""

    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, title: str) -> None:
        super().__init__()
        self.old = title

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog", classes="small"):
            yield Label("Rename the conversation (Enter saves, Esc cancels)")
            yield Input(value=self.old, id="title")

    @on(Input.Submitted)
    def _done(self, event: Input.Submitted) -> None:
        title = one_line(event.value.strip(), 200)
        self.dismiss(title or None)

    def action_cancel(self) -> None:
        self.dismiss(None)


@dataclass(frozen=True)
class SettingsResult:
    sampling: SamplingParams
    system: str | None
    theme: str
    save: bool  # also write them to the settings file as defaults


class SettingsScreen(ModalScreen[SettingsResult | None]):
    """Sampling, the system message and the theme in one place: Apply (this session) or Save as
    defaults (also written to the settings file). Values are checked by the one rulebook."""

    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, *, sampling: SamplingParams, system: str | None, theme: str, themes: list[str],
                 settings_path: str, history: str) -> None:
        super().__init__()
        self.sampling, self.system, self.theme_name = sampling, system, theme
        self.themes, self.settings_path, self.history = themes, settings_path, history

    def compose(self) -> ComposeResult:
        # compact fields (one row each): the whole dialog fits a 100x30 terminal
        s = self.sampling
        with Vertical(id="dialog", classes="settings"):
            yield Label("Settings", id="dialog-title")
            with Horizontal(classes="row"):
                yield Label("Temperature (0-2)", classes="field")
                yield Input(f"{s.temperature:g}", id="temperature", compact=True)
            with Horizontal(classes="row"):
                yield Label("Top-k (0-200)", classes="field")
                yield Input(str(s.top_k or 0), id="top_k", compact=True)
            with Horizontal(classes="row"):
                yield Label("Max tokens (1-4096)", classes="field")
                yield Input(str(s.max_tokens), id="max_tokens", compact=True)
            with Horizontal(classes="row"):
                yield Label("Theme", classes="field")
                yield Select([(name, name) for name in self.themes], value=self.theme_name,
                             allow_blank=False, id="theme", compact=True)
            yield Label("System message (empty: none)", classes="field wide")
            yield TextArea(self.system or "", id="system", soft_wrap=True, show_line_numbers=False, compact=True)
            yield Static(f"History: {self.history}", classes="note", markup=False)
            yield Static(f"Save as defaults writes {self.settings_path}", classes="note", markup=False)
            yield Static("", id="settings-error", markup=False)
            with Horizontal(id="buttons"):
                yield Button("Apply", variant="primary", id="apply", compact=True)
                yield Button("Save as defaults", id="save", compact=True)
                yield Button("Cancel", id="cancel", compact=True)

    def on_mount(self) -> None:
        self.query_one("#temperature", Input).focus()

    def _result(self, save: bool) -> SettingsResult | None:
        error = self.query_one("#settings-error", Static)
        fields: list[tuple[str, Callable[[str], Any]]] = [
            ("temperature", parse_temperature), ("top_k", parse_top_k), ("max_tokens", parse_max_tokens)]
        values = {}
        for name, parse in fields:
            widget = self.query_one(f"#{name}", Input)
            try:
                values[name] = parse(widget.value.strip())
            except ValidationError as e:
                error.update(f"⚠ {terminal_words(str(e))}")
                error.display = True
                widget.focus()
                return None
        system = self.query_one("#system", TextArea).text
        theme = self.query_one("#theme", Select).value
        return SettingsResult(self.sampling.with_overrides(**values), system if system.strip() else None,
                              str(theme), save)

    @on(Button.Pressed)
    def _pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "cancel":
            self.dismiss(None)
            return
        result = self._result(save=event.button.id == "save")
        if result is not None:
            self.dismiss(result)

    @on(Input.Submitted)
    def _enter(self) -> None:
        result = self._result(save=False)
        if result is not None:
            self.dismiss(result)

    def action_cancel(self) -> None:
        self.dismiss(None)
