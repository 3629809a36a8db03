"""One line above the footer: loading / ready / generating, then the last reply's speed."""

from __future__ import annotations

from textual.widgets import Static

from nanochat_core.text import one_line


class StatusBar(Static):
    def __init__(self, **kwargs) -> None:
        super().__init__("", markup=False, **kwargs)
        self.text = ""

    def set(self, text: str, state: str = "idle") -> None:
        """state: idle | busy | error (styles the line)."""
        self.text = text
        self.update(one_line(text))
        self.set_class(state == "busy", "-busy")
        self.set_class(state == "error", "-error")
