"""Earlier prompts, walked with Up / Down like a shell's history (no Textual import).

Entries are the user's messages, oldest first: those saved in the history database (every
conversation) when the app starts, then each one sent since. Walking starts after the newest;
`older()` / `newer()` move one step and return the text to show; walking past the newest gives
back what was typed before the walk began (the draft).
"""

from __future__ import annotations

MAX_ENTRIES = 1000


class PromptHistory:
    def __init__(self, entries: list[str] | None = None) -> None:
        self.entries: list[str] = []
        for text in entries or []:
            self.add(text)
        self.position: int | None = None  # index being shown; None: not walking
        self.draft = ""

    def add(self, text: str) -> None:
        """A prompt sent: the newest entry (a repeat of the newest is kept once, as shells do)."""
        text = text.strip("\n")
        if not text.strip():
            return
        if not self.entries or self.entries[-1] != text:
            self.entries.append(text)
            del self.entries[:-MAX_ENTRIES]
        self.reset()

    def reset(self) -> None:
        self.position = None
        self.draft = ""

    @property
    def walking(self) -> bool:
        return self.position is not None

    def current(self) -> str | None:
        return None if self.position is None else self.entries[self.position]

    def older(self, draft: str = "") -> str | None:
        """One step back; None when there is nothing older (the input stays as it is)."""
        if not self.entries:
            return None
        if self.position is None:
            self.draft = draft
            self.position = len(self.entries)
        if self.position == 0:
            return None
        self.position -= 1
        return self.entries[self.position]

    def newer(self) -> str | None:
        """One step forward; past the newest, the draft (and the walk ends). None when not walking."""
        if self.position is None:
            return None
        self.position += 1
        if self.position >= len(self.entries):
            draft = self.draft
            self.reset()
            return draft
        return self.entries[self.position]
