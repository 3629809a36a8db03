"""The scrollback: follows the stream unless the user scrolled up (an anchored scroll view)."""

from __future__ import annotations

from textual.containers import VerticalScroll


class ChatLog(VerticalScroll, can_focus=False):
    """Messages in order. `layout: stream` (app.tcss) keeps hundreds of messages cheap to lay out."""

    def on_mount(self) -> None:
        self.anchor()

    async def clear(self) -> None:
        await self.remove_children()
        self.anchor()

    def follow(self) -> None:
        """Re-anchor to the bottom (after the user sends: their new message should be seen)."""
        self.anchor()
