"""The model picker (`/model`, the palette's "Model"): every checkpoint this machine has, as
`nanochat-tui models` lists them (nanochat_core.catalog, described by models_cli.row_cells), to
switch to without restarting.

Keyboard first: the focus stays in the filter, so typing filters (every word must appear in the
row), Up/Down/PageUp/PageDown move the highlight, Enter loads the highlighted model, Esc
cancels; a click loads too. The list is read on a worker thread (reading each model file's
tensor table takes a moment). The screen only returns the chosen entry: the app loads it in the
background (app.py `switch_model`)."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Callable

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Footer, Input, Label, OptionList, Static
from textual.widgets.option_list import Option

from nanochat_core.text import one_line

from ..models_cli import COLUMNS, row_cells
from .cells import cell_safe

if TYPE_CHECKING:  # pragma: no cover
    from nanochat_core.catalog import CatalogEntry

GAP = "  "
CURRENT_MARK = "●"


class ModelList(OptionList, can_focus=False):
    """The rows. Never focused: keys reach it from the filter through the screen's bindings."""


def _real(path: str | None) -> str | None:
    return os.path.realpath(path) if path else None


def _tail(text: str, width: int) -> str:
    """The end of `text` in at most `width` characters (a path's last folders say the most)."""
    return text if len(text) <= width else "…" + text[len(text) - max(1, width - 1):]


class ModelPickerScreen(ModalScreen["CatalogEntry | None"]):
    """Returns the entry to load (None: cancelled). `list_entries` runs on a worker thread.
    `query`: what `/model ARG` asked for: a number picks that row of the whole list, a text
    that matches one row picks it, otherwise the list opens filtered by it."""

    BINDINGS = [
        Binding("escape", "cancel", "Cancel"),
        Binding("enter", "choose", "Load", priority=True),
        Binding("up", "move('cursor_up')", "Up", show=False),
        Binding("down", "move('cursor_down')", "Down", show=False),
        Binding("pageup", "move('page_up')", "Page up", show=False),
        Binding("pagedown", "move('page_down')", "Page down", show=False),
    ]

    def __init__(self, list_entries: Callable[[], list["CatalogEntry"]], *, current: str | None,
                 loaded: str, looked_in: str, query: str | None = None) -> None:
        """current: the model file in use (marked ●); loaded: one line about it; looked_in:
        where the list comes from (said when nothing is found)."""
        super().__init__()
        self.list_entries = list_entries
        self.current = _real(current)
        self.loaded = loaded
        self.looked_in = looked_in
        self.query_arg = query
        self.entries: list[CatalogEntry] | None = None  # None while the list is read
        self.cells: list[tuple[str, ...]] = []
        self.shown: list[int] = []  # indexes into entries, in the order listed

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog", classes="models"):
            yield Label("Switch model: the conversation carries over", id="dialog-title")
            yield Static(f"In use: {one_line(self.loaded)}", id="model-loaded", classes="note", markup=False)
            yield Input(placeholder="Filter: part of a tag, stage, step, generation or folder…",
                        id="model-filter", compact=True)
            yield Static("", id="model-columns", markup=False)
            yield ModelList(id="models")
            yield Static("", id="model-where", markup=False)  # the highlighted row's folder, whole
            yield Static("Reading the model list…", id="model-note", markup=False)
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#model-filter", Input).focus()
        self._read_list()

    # ---- the list ----
    @work(thread=True, exit_on_error=False)
    def _read_list(self) -> None:
        try:
            entries = self.list_entries()
        except Exception as e:  # a scan that fails must not take the app down: one line
            self.app.call_from_thread(self._note, f"Could not read the model list: {one_line(e, 200)}", True)
            return
        self.app.call_from_thread(self._listed, entries)

    def _listed(self, entries: list["CatalogEntry"]) -> None:
        self.entries = entries
        self.cells = [row_cells(e.to_json()) for e in entries]
        arg = self.query_arg
        if arg and arg.isdigit():
            n = int(arg)
            if 1 <= n <= len(entries):
                self._choose(n - 1)
                return
            self._fill()
            self._note(f"No model #{n}: the list has {len(entries)}", True)
            return
        if arg:
            matches = self._matching(arg)
            if len(matches) == 1 and not self.entries[matches[0]].problem:
                self._choose(matches[0])
                return
            self.query_one("#model-filter", Input).value = arg  # (its Changed event fills the list)
            return
        self._fill()

    def _row_text(self, i: int) -> str:
        entry = self.entries[i] if self.entries else None
        extra = " current in use" if entry is not None and _real(entry.model_path) == self.current else ""
        return f"#{i + 1} " + " ".join(self.cells[i]).lower() + extra

    def _matching(self, text: str) -> list[int]:
        words = text.lower().split()
        return [i for i in range(len(self.cells)) if all(w in self._row_text(i) for w in words)]

    def _fill(self) -> None:
        """Show the rows matching the filter, columns as wide as the widest row of the whole
        list (so they stay put while filtering), the folder cut from the left to fit."""
        if self.entries is None:
            return
        listing = self.query_one(ModelList)
        search = self.query_one("#model-filter", Input).value
        self.shown = self._matching(search)
        number_width = len(str(len(self.entries)))
        widths = [max([len(COLUMNS[c]), *(len(row[c]) for row in self.cells)]) for c in range(len(COLUMNS) - 1)]
        fixed = 2 + number_width + len(GAP) + sum(w + len(GAP) for w in widths)
        scrollbar = listing.styles.scrollbar_size_vertical  # (once the list outgrows its height)
        room = max(12, (listing.scrollable_content_region.width or 80) - fixed - scrollbar)
        header = "  " + "#".rjust(number_width) + GAP + GAP.join(c.ljust(w) for c, w in zip(COLUMNS, widths))
        self.query_one("#model-columns", Static).update(header + GAP + COLUMNS[-1])
        keep = listing.highlighted_option.id if listing.highlighted_option is not None else None
        listing.clear_options()
        highlight = 0
        for row, i in enumerate(self.shown):
            entry, cells = self.entries[i], self.cells[i]
            current = _real(entry.model_path) == self.current
            text = Text(no_wrap=True, overflow="ellipsis")
            text.append(f"{CURRENT_MARK if current else ' '} ", style="bold" if current else "")
            text.append(str(i + 1).rjust(number_width) + GAP, style="dim")
            body = GAP.join(cell.ljust(w) for cell, w in zip(cells, widths)) + GAP + _tail(cells[-1], room)
            text.append(cell_safe(body), style="dim" if entry.problem else ("bold" if current else ""))
            listing.add_option(Option(text, id=str(i)))
            if (keep is None and current) or keep == str(i):
                highlight = row
        if self.shown:
            listing.highlighted = highlight
        else:
            self._show_where(None)
        self._count_note(search)

    def _count_note(self, search: str) -> None:
        total = len(self.entries or [])
        if not total:
            self._note(f"No checkpoints found (looked in {self.looked_in})", True)
        elif not self.shown:
            self._note(f"No model matches {one_line(search.strip(), 60)!r} (of {total})", True)
        elif search.strip():
            self._note(f"{len(self.shown)} of {total} models match · Enter loads · Esc cancels")
        else:
            self._note(f"{total} model{'s' if total != 1 else ''} · Enter loads · Esc cancels "
                       f"· /model N picks row N from the chat")

    def _note(self, text: str, error: bool = False) -> None:
        note = self.query_one("#model-note", Static)
        note.update(("⚠ " if error else "") + text)
        note.set_class(error, "-error")

    @on(OptionList.OptionHighlighted)
    def _highlighted(self, event: OptionList.OptionHighlighted) -> None:
        self._show_where(int(event.option.id) if event.option.id is not None else None)

    def _show_where(self, index: int | None) -> None:
        where = self.query_one("#model-where", Static)
        where.update("" if index is None or not self.cells else f"#{index + 1}: {self.cells[index][-1]}")

    @on(Input.Changed, "#model-filter")
    def _filtered(self) -> None:
        self.query_one(ModelList).highlighted = None  # a new filter starts at its best row
        self._fill()

    # ---- choosing ----
    def _choose(self, index: int) -> None:
        assert self.entries is not None
        entry = self.entries[index]
        if entry.problem:
            self._fill()
            self._note(f"{entry.tag} step {entry.step} cannot load: {one_line(entry.problem, 200)}", True)
            return
        self.dismiss(entry)

    def action_choose(self) -> None:
        listing = self.query_one(ModelList)
        option = listing.highlighted_option
        if self.entries is None or option is None:
            return
        self._choose(int(option.id))

    @on(OptionList.OptionSelected)
    def _clicked(self, event: OptionList.OptionSelected) -> None:
        if event.option.id is not None:
            self._choose(int(event.option.id))

    def action_move(self, how: str) -> None:
        getattr(self.query_one(ModelList), f"action_{how}")()

    def action_cancel(self) -> None:
        self.dismiss(None)
