"""`nanochat-tui --plain`: nanochat's line chat (scripts/chat_cli.py), on the shared engine.

"User: " prompt, "Assistant: " streamed reply; quit/exit or Ctrl+D/Ctrl+C at the prompt say
"Goodbye!"; clear starts over; empty lines are skipped; Ctrl+C during a reply stops it.
"""

from __future__ import annotations

import sys

from nanochat_core.chat import Message, ValidationError, validate_messages

from .config import ChatConfig
from .console import say
from .terminal_chat import load_model, stream_reply


def run_plain(config: ChatConfig) -> int:
    model = load_model(config.model)
    print("nanochat line chat. Type 'quit' or 'exit' to leave, 'clear' to start over.")
    history: list[Message] = [Message("system", config.system)] if config.system else []
    start = list(history)
    while True:
        try:
            line = input("\nUser: ")
        except (EOFError, KeyboardInterrupt):
            print("\nGoodbye!")
            return 0
        text = line.strip()
        if not text:
            continue
        if text.lower() in ("quit", "exit"):
            print("Goodbye!")
            return 0
        if text.lower() == "clear":
            history = list(start)
            print("Conversation cleared.")
            continue
        try:
            messages = validate_messages(history + [Message("user", line)])
        except ValidationError as e:
            say(f"error: {e}", sys.stderr)
            continue
        sys.stdout.write("\nAssistant: ")
        sys.stdout.flush()
        done = stream_reply(model, messages, config.sampling)
        print()
        if done is None:
            continue
        if done.reason == "cancelled":
            print("[stopped]")
        history = messages
        if done.parts and any(p["text"] for p in done.parts):
            history = messages + [Message("assistant", tuple(done.parts))]
