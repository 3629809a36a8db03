"""What the one-shot and line-chat modes share: loading with notices on stderr, and streaming a
reply to stdout from a worker thread with Ctrl+C as "stop"."""

from __future__ import annotations

import sys
import threading
from typing import TextIO

from nanochat_core.chat import Message, SamplingParams
from nanochat_core.events import Done, ErrorEvent, TextDelta, ToolCall, ToolResult
from nanochat_core.text import one_line, sanitize_for_terminal
from nanochat_core.threads import in_worker_thread

from .config import ModelSelection
from .console import say


def load_model(selection: ModelSelection, err: TextIO = sys.stderr):
    """Load, telling stderr about the demo fallback and what was detected."""
    model = selection.load()
    for notice in model.notices:
        say(notice, err)
    say(f"Loaded {model.info.describe()}", err)
    return model


def stream_reply(model, messages: list[Message], sampling: SamplingParams,
                 out: TextIO = sys.stdout, err: TextIO = sys.stderr) -> Done | None:
    """Stream one reply to `out`. Tool calls go to `err` (stdout stays the reply only).
    Ctrl+C stops decoding within one step and returns the partial Done (reason 'cancelled').
    Returns None after an engine error (printed to err)."""
    cancel = threading.Event()
    on_tty = out.isatty()
    clean = sanitize_for_terminal if on_tty else (lambda s: s)
    events = in_worker_thread(lambda: model.chat(messages, sampling, cancel=cancel))
    done: Done | None = None
    noted = False  # a calculator note went to err (inline with the reply on a shared terminal)
    while True:
        try:
            event = next(events)
        except StopIteration:
            break
        except KeyboardInterrupt:
            cancel.set()  # the worker notices within one decode step; keep draining its events
            continue
        if isinstance(event, TextDelta):
            out.write(clean(event.text))
            out.flush()
        elif isinstance(event, ToolCall):
            err.write(f"[calculator: {one_line(event.expression)}")
            err.flush()
        elif isinstance(event, ToolResult):
            result = "no result" if event.result is None else one_line(event.result)
            err.write(f" = {result}]")
            err.flush()
            noted = True
        elif isinstance(event, ErrorEvent):
            out.write("\n")
            say(f"error: {event.message}", err)
            return None
        elif isinstance(event, Done):
            done = event
    if noted and not (out.isatty() and err.isatty()):
        err.write("\n")  # err is a file or pipe of its own: end the notes' line there
        err.flush()
    return done
