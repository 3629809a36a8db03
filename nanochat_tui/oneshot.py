"""`nanochat-tui --prompt TEXT`: one reply on stdout (and nothing else there), then exit."""

from __future__ import annotations

import sys

from nanochat_core.chat import Message, validate_messages

from .config import ChatConfig
from .terminal_chat import load_model, stream_reply


def run_oneshot(config: ChatConfig, prompt: str) -> int:
    messages = ([Message("system", config.system)] if config.system else []) + [Message("user", prompt)]
    messages = validate_messages(messages)  # rulebook words, exit 2, before loading anything
    model = load_model(config.model)
    done = stream_reply(model, messages, config.sampling)
    sys.stdout.write("\n")
    sys.stdout.flush()
    if done is None:
        return 1
    print(done.stats.summary(), file=sys.stderr)
    if done.reason == "cancelled":
        print("stopped", file=sys.stderr)
        return 130
    return 0
