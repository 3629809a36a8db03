"""The scrollback: follows the stream unless the user scrolled up (an anchored scroll view),
and folds old messages into Archive widgets so a long chat stays cheap to lay out."""

from __future__ import annotations

from textual.containers import VerticalScroll
from textual.widget import Widget

from .messages import Archive, AssistantMessage, UserMessage

LIVE_MESSAGES = 60  # the newest messages stay widgets of their own
FOLD_BATCH = 20  # beyond LIVE_MESSAGES + FOLD_BATCH, the oldest FOLD_BATCH become one Archive


class ChatLog(VerticalScroll, can_focus=False):
    """Messages in order. `layout: stream` (app.tcss) keeps placements of old messages; Textual
    still visits every widget on each layout pass, hence the archives: with them a chat of
    hundreds of messages is a few dozen widgets."""

    def on_mount(self) -> None:
        self.anchor()

    def _scroll_to(self, x: float | None = None, y: float | None = None, *, release_anchor: bool = True,
                   **kwargs) -> bool:
        """At the bottom means following. Textual re-anchors only when the position equals the
        bottom, which a growing reply moves away from while a scroll (a wheel turn, a drag) is
        still on its way there; so a scroll that aims at the bottom re-anchors at once.
        (Overrides Widget._scroll_to, where every scroll ends up; `_anchor_released` is the
        anchor state Textual keeps, see Widget.anchor.)"""
        aims_at_end = y is not None and y >= self.max_scroll_y
        moved = super()._scroll_to(x, y, release_anchor=release_anchor, **kwargs)
        if aims_at_end and self.is_anchored and self._anchor_released:
            self._anchor_released = False
        return moved

    def scroll_page_down(self, **kwargs) -> None:
        # PageDown computes its target now and scrolls after the next refresh, by when a
        # streaming reply may have moved the bottom further: decide on what the user sees now.
        if self.is_anchored and self.scroll_target_y + self.scrollable_content_region.height >= self.max_scroll_y:
            self.follow()
            return
        super().scroll_page_down(**kwargs)

    @property
    def following(self) -> bool:
        """True while new content scrolls into view (the user has not scrolled up)."""
        return self.is_anchored and not self._anchor_released

    async def add(self, *widgets: Widget) -> None:
        await self.mount_all(widgets)
        await self.fold_old()

    async def fold_old(self, keep: int = LIVE_MESSAGES, batch: int = FOLD_BATCH) -> int:
        """Fold the oldest messages into archives while more than keep + batch are live.
        Returns how many messages were folded."""
        folded = 0
        while True:
            live = [child for child in self.children if not isinstance(child, Archive)]
            if len(live) <= keep + batch:
                return folded
            # never fold the last user message or anything after it (edit-last and regenerate
            # work on those), nor a reply still streaming
            users = [i for i, w in enumerate(live) if isinstance(w, UserMessage)]
            limit = min(batch, users[-1] if users else batch)
            old = []
            for w in live[:limit]:
                if (isinstance(w, AssistantMessage) and not w.finished) or w.has_focus:
                    break
                old.append(w)
            if not old:
                return folded
            parts = [w.archive_renderable() for w in old if hasattr(w, "archive_renderable")]
            await self.mount(Archive(parts, count=len(old)), before=old[0])
            await self.remove_children(old)
            folded += len(old)

    @property
    def archived(self) -> int:
        return sum(child.count for child in self.children if isinstance(child, Archive))

    async def clear(self) -> None:
        await self.remove_children()
        self.anchor()

    def follow(self) -> None:
        """Re-anchor to the bottom (after the user sends: their new message should be seen)."""
        self.anchor()

    def on_resize(self) -> None:
        # a resize changes where the bottom is: one that leaves the view there follows again
        if self.is_anchored and self.scroll_y >= self.max_scroll_y:
            self.call_after_refresh(self._refollow_if_at_end)

    def _refollow_if_at_end(self) -> None:
        if self.scroll_y >= self.max_scroll_y:
            self.follow()
