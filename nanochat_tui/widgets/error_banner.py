"""The red banner below the input: validation words from the rulebook, engine and load errors."""

from __future__ import annotations

from textual.widgets import Static

from nanochat_core.text import one_line


class ErrorBanner(Static):
    """Hidden until `show()`; `clear()` hides it again. Text is never parsed as markup."""

    def __init__(self, **kwargs) -> None:
        super().__init__("", markup=False, **kwargs)
        self.message = ""

    def show(self, message: str) -> None:
        self.message = message
        self.update(f"⚠ {one_line(message)}")  # errors quote servers, paths, model ids
        self.add_class("-visible")

    def clear(self) -> None:
        self.message = ""
        self.update("")
        self.remove_class("-visible")

    @property
    def visible(self) -> bool:
        return self.has_class("-visible")
