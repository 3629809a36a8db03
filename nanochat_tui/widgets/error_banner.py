"""The red banner below the input: validation words from the rulebook, engine and load errors."""

from __future__ import annotations

from typing import Callable

from textual.widgets import Static

from nanochat_core.text import one_line


class ErrorBanner(Static):
    """Hidden until `show()`; `clear()` hides it again. Text is never parsed as markup.

    Each message has a `cause`, so the app can take it down when the cause is gone (a banner
    that outlives its reason misleads): "input" (about the text in the input: gone when the
    input changes), "busy" (a reply was streaming: gone when it ends), "nothing" (nothing to act
    on yet: gone once there is), "load" (the model: gone when one loads), "error" (stays until
    dismissed with Esc or replaced)."""

    def __init__(self, **kwargs) -> None:
        super().__init__("", markup=False, **kwargs)
        self.message = ""
        self.cause = ""
        self.context = ""  # what the input held when it was shown (see `input_text`)
        self.input_text: Callable[[], str] = lambda: ""  # the app tells where the input is

    def show(self, message: str, cause: str = "error") -> None:
        self.message = message
        self.cause = cause
        self.context = self.input_text()
        self.update(f"⚠ {one_line(message)}")  # errors quote servers, paths, model ids
        self.add_class("-visible")

    def clear(self, *causes: str) -> None:
        """Hide the banner (only if its cause is one of `causes`, when given)."""
        if causes and self.cause not in causes:
            return
        self.message = ""
        self.cause = ""
        self.update("")
        self.remove_class("-visible")

    @property
    def visible(self) -> bool:
        return self.has_class("-visible")
