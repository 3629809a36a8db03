"""What every terminal front-end (full-screen app, --plain, --prompt) does with saved
conversations: open the history store (or say in one line why it cannot), start a new
conversation or resume one (-c / --resume), and save it as it happens.

A history problem never stops a chat: the store is None, `warning` says why, and the front-end
shows it (a stderr line, the TUI header and banner).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from nanochat_core.chat import SamplingParams
from nanochat_core.conversation import Conversation
from nanochat_core.history import HistoryStore, HistoryUnavailable

from .config import HistorySettings


@dataclass
class Session:
    store: HistoryStore | None
    warning: str | None  # why nothing is saved (None when saving, or when incognito by choice)
    incognito: bool  # --no-history

    @property
    def saving(self) -> bool:
        return self.store is not None and self.store.error is None

    @property
    def status(self) -> str:
        """For headers and /stats: where conversations go."""
        if self.incognito:
            return "not saved (--no-history)"
        if self.store is None:
            return "not saved (history unavailable)"
        if self.store.error is not None:
            return "not saved (saving failed)"
        return f"saved to {self.store.path}"


def open_session(settings: HistorySettings) -> Session:
    if not settings.enabled:
        return Session(None, None, incognito=True)
    try:
        return Session(HistoryStore.open(settings.db_path), None, incognito=False)
    except HistoryUnavailable as e:
        return Session(None, f"history: {e}; this chat will not be saved", incognito=False)


def model_identity(backend: Any) -> dict:
    """What a conversation records about its model (shown by `history list`)."""
    info = getattr(backend, "info", None)
    if info is None:
        return {}
    identity = getattr(info, "identity", None)
    if callable(identity):
        return {"name": info.short_name, **identity()}
    return {"name": info.short_name, "generation": info.generation, "source": info.source,
            "model_tag": info.model_tag, "step": info.step, "path": info.checkpoint_dir}


def start_conversation(session: Session, settings: HistorySettings, *, system: str | None,
                       sampling: SamplingParams) -> Conversation:
    """A new conversation, or the one --continue / --resume names (a NanochatError if that
    cannot be found: resuming is an explicit request). Saved as it happens when saving."""
    conversation: Conversation | None = None
    if settings.resume is not None:
        if session.store is None:
            reason = "--no-history" if session.incognito else (session.warning or "history unavailable")
            raise HistoryUnavailable(f"cannot resume a conversation: {reason}")
        store = session.store
        if settings.resume == "latest":
            latest = store.latest_id()
            if latest is not None:
                conversation = store.load(latest)
        else:
            conversation = store.load(store.resolve(settings.resume))
    if conversation is None:
        conversation = Conversation(system=system, sampling=sampling)
    else:
        conversation.sampling = sampling  # this run's settings apply from now on
        if system is not None:
            conversation.system = system
    if session.store is not None:
        session.store.attach(conversation)
    return conversation
