"""The message input: a TextArea that sends on Enter and grows with its content (up to 8 lines)."""

from __future__ import annotations

from textual.binding import Binding
from textual.message import Message
from textual.widgets import TextArea

MAX_VISIBLE_LINES = 8


class PromptInput(TextArea):
    """Enter sends (a priority binding: TextArea would insert a newline itself); Shift+Enter and
    Ctrl+J insert a newline; Up in an empty input asks to edit the last message."""

    BINDINGS = [
        Binding("enter", "submit", "Send", priority=True),
        Binding("ctrl+j", "newline", "New line", key_display="^j"),
        Binding("shift+enter", "newline", "New line", show=False),
    ]

    class Submitted(Message):
        def __init__(self, text: str) -> None:
            super().__init__()
            self.text = text

    class EditLast(Message):
        """Up was pressed in an empty input."""

    def __init__(self, **kwargs) -> None:
        kwargs.setdefault("placeholder", "Ask anything")
        kwargs.setdefault("soft_wrap", True)
        kwargs.setdefault("show_line_numbers", False)
        kwargs.setdefault("highlight_cursor_line", False)
        super().__init__(**kwargs)

    def action_submit(self) -> None:
        self.post_message(self.Submitted(self.text))

    def action_newline(self) -> None:
        start, end = self.selection
        self._replace_via_keyboard("\n", start, end)

    def action_cursor_up(self, select: bool = False) -> None:
        if not select and not self.text:
            self.post_message(self.EditLast())
            return
        super().action_cursor_up(select)

    def set_text(self, text: str) -> None:
        """Replace the content and put the cursor at the end."""
        self.load_text(text)
        self.move_cursor(self.document.end)
