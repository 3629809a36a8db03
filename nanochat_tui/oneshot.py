"""`nanochat-tui --prompt TEXT`: one reply on stdout (and nothing else there), then exit.

Saved to the history like any chat (`-c` continues the latest conversation), unless
--no-history. Notices, the calculator's notes and the speed summary go to stderr.
"""

from __future__ import annotations

import sys

from nanochat_core.chat import ValidationError
from nanochat_core.errors import NanochatError

from .chat_session import model_identity, open_session, start_conversation
from .commands import terminal_words
from .config import ChatConfig
from .console import note
from .terminal_chat import load_model, stream_reply


class ReplyFailed(NanochatError):
    """The engine or server could not answer (its one line); the CLI prints it, exit 2."""


def run_oneshot(config: ChatConfig, prompt: str) -> int:
    if not prompt.strip():
        raise ValidationError("Message 0 has empty content (your message)")  # as Conversation.validate says it
    session = open_session(config.history)
    if session.warning:
        note(session.warning)
    conversation = start_conversation(session, config.history, system=config.system,
                                      sampling=config.sampling)
    try:
        conversation.validate(extra_user=prompt)  # rulebook words, exit 2, before loading anything
    except ValidationError as e:
        raise ValidationError(terminal_words(str(e))) from None
    model = load_model(config.model)
    conversation.model = model_identity(model)
    conversation.add_user(prompt)
    recorder = stream_reply(model, conversation, config.sampling)
    if recorder.parts:
        sys.stdout.write("\n")
    sys.stdout.flush()
    if recorder.error is not None:
        raise ReplyFailed(recorder.error)
    done = recorder.done
    assert done is not None
    note(done.stats.summary())
    if session.store is not None and session.store.error:
        note(session.store.error)
    if done.reason == "cancelled":
        note("stopped")
        return 130
    return 0
