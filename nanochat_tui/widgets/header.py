"""The header: title, what model is loaded, device/dtype, whether the chat is saved, and a New
Conversation control."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.message import Message
from textual.widgets import Button, Static

from nanochat_core.text import one_line


class ChatHeader(Horizontal):
    class NewConversation(Message):
        """The New Conversation control was used."""

    def compose(self) -> ComposeResult:
        yield Static("nanochat", id="title", markup=False)
        yield Static("loading model…", id="model-name", markup=False)
        yield Static("", id="saving", markup=False)
        yield Static("", id="device", markup=False)
        button = Button("+ New conversation", id="new-chat", compact=True)
        button.can_focus = False  # the input keeps the focus; Ctrl+N does the same from the keyboard
        yield button

    def set_model(self, name: str, device: str = "") -> None:
        # the name comes from a directory or a server's model list: never raw to the terminal
        self.query_one("#model-name", Static).update(one_line(name))
        self.query_one("#device", Static).update(one_line(device))

    def set_saving(self, label: str, warning: bool = False) -> None:
        """"" while conversations are saved; "incognito" or "not saving" otherwise."""
        saving = self.query_one("#saving", Static)
        saving.update(one_line(label))
        saving.display = bool(label)
        saving.set_class(warning, "-warning")

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        self.post_message(self.NewConversation())
