"""What the one-shot and line-chat modes share: loading with progress on stderr, and streaming a
reply to stdout from a worker thread (Ctrl+C = stop) into the Conversation that keeps it."""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from contextlib import contextmanager
from typing import Any, Callable, Iterator, TextIO

from nanochat_core.chat import SamplingParams
from nanochat_core.conversation import Conversation, ReplyRecorder
from nanochat_core.events import Done, ErrorEvent, TextDelta, ToolCall, ToolResult
from nanochat_core.text import one_line, sanitize_for_terminal
from nanochat_core.threads import in_worker_thread

from .config import ModelSelection
from .console import say


class LoadProgress:
    """Loading progress on stderr. On a terminal: one status line that updates in place (with
    the seconds spent on the current step), erased when loading ends. Elsewhere: quiet (the
    `Loaded …` line follows), so logs of scripted runs stay short."""

    TICK_S = 0.5

    def __init__(self, err: TextIO) -> None:
        self.err = err
        self.live = err.isatty()
        self.line = ""
        self._width = 0  # what the status line last took (to blank it out)
        self.since = time.monotonic()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._ticker: threading.Thread | None = None

    def __call__(self, line: str) -> None:
        with self._lock:
            self.line, self.since = one_line(line, 200), time.monotonic()
            self._draw()
        if self.live and self._ticker is None:
            self._ticker = threading.Thread(target=self._tick, name="nanochat-load-progress", daemon=True)
            self._ticker.start()

    def _draw(self) -> None:
        if not self.live:
            return
        seconds = int(time.monotonic() - self.since)
        suffix = f" … {seconds}s" if seconds else " …"
        # One row, or "\r" would return to the start of its last wrapped row and leave the
        # others behind: a long path is cut in the middle to fit the terminal's width.
        room = self._columns() - 1 - len(suffix)
        line = self.line if len(self.line) <= room else self.line[: max(room // 2 - 1, 0)] + "…" + self.line[-(room - room // 2):]
        shown = line + suffix
        # Carriage return and spaces only (no escape codes): it works on any terminal.
        self.err.write("\r" + shown.ljust(self._width))
        self._width = len(shown)
        self.err.flush()

    def _columns(self) -> int:
        try:
            return max(os.get_terminal_size(self.err.fileno()).columns, 20)
        except (OSError, ValueError, AttributeError):
            return 80

    def _tick(self) -> None:
        while not self._stop.wait(self.TICK_S):
            with self._lock:
                self._draw()

    def close(self) -> None:
        self._stop.set()
        with self._lock:
            if self.live and self.line:
                self.err.write("\r" + " " * self._width + "\r")
                self.err.flush()
            self.line = ""


def load_model(selection: ModelSelection, err: TextIO | None = None) -> Any:
    """Load with progress on stderr, then the demo-fallback notice and what was detected."""
    err = err or sys.stderr  # looked up now: sys.stderr may have been replaced since import
    progress = LoadProgress(err)
    try:
        model = selection.load(progress=progress)
    finally:
        progress.close()
    for notice in model.notices:
        say(notice, err)
    say(f"Loaded {model.info.describe()}", err)
    return model


def stream_reply(model: Any, conversation: Conversation, sampling: SamplingParams,
                 out: TextIO | None = None, err: TextIO | None = None,
                 on_text: Callable[[str], None] | None = None) -> ReplyRecorder:
    """Stream the reply to the conversation's last message to `out`, recording it in the
    conversation (saved as it grows when a store is attached). Tool calls go to `err` (stdout
    stays the reply only). Ctrl+C stops decoding within one step; the partial reply is kept,
    marked stopped. An engine error is recorded (marked failed) and returned, not printed:
    the caller decides how to say it."""
    out, err = out or sys.stdout, err or sys.stderr
    cancel = threading.Event()
    recorder = ReplyRecorder.start(conversation, model, seed=sampling.seed)
    with ctrl_c_sets(cancel):
        _stream(model, recorder, sampling, cancel, out, err, on_text)
    return recorder


@contextmanager
def ctrl_c_sets(cancel: threading.Event) -> Iterator[None]:
    """While a reply streams, Ctrl+C (SIGINT) means "stop the reply": it sets `cancel` instead of
    raising KeyboardInterrupt wherever the main thread happens to be (writing, saving)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, lambda _sig, _frame: cancel.set())
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def _stream(model: Any, recorder: ReplyRecorder, sampling: SamplingParams, cancel: threading.Event,
            out: TextIO, err: TextIO, on_text: Callable[[str], None] | None) -> None:
    on_tty = out.isatty()
    inline = on_tty and err.isatty()  # notes land in the same lines as the reply
    clean = sanitize_for_terminal if on_tty else (lambda s: s)
    events = in_worker_thread(lambda: model.chat(recorder.request, sampling, cancel=cancel))
    noted = False  # a calculator note went to err (inline with the reply on a shared terminal)
    last = " "  # the last character shown on the reply's line (a note gets a space before it)
    after_note = False
    while True:
        try:
            event = next(events)
        except StopIteration:
            break
        except KeyboardInterrupt:  # (not the main thread: no handler) stop, keep draining
            cancel.set()
            continue
        except Exception as e:  # validation or a backend bug before the stream began
            event = ErrorEvent(str(e) if isinstance(e, ValueError) else f"{type(e).__name__}: {e}")
        recorder.feed(event)
        if isinstance(event, TextDelta):
            if inline and after_note and event.text and not event.text[0].isspace():
                err.write(" ")  # on screen only: the reply on stdout stays as the model wrote it
            after_note = False
            out.write(clean(event.text))
            out.flush()
            if event.text:
                last = event.text[-1]
            if on_text is not None:
                on_text(event.text)
        elif isinstance(event, ToolCall):
            space = " " if inline and not last.isspace() else ""
            err.write(f"{space}[calculator: {one_line(event.expression)}")
            err.flush()
        elif isinstance(event, ToolResult):
            result = "no result" if event.result is None else one_line(event.result)
            err.write(f" = {result}]")
            err.flush()
            noted = True
            after_note, last = True, "]"
        if isinstance(event, (Done, ErrorEvent)):
            break
    for _rest in events:  # the worker's last items (none after Done); ends its thread
        pass
    if noted and not (out.isatty() and err.isatty()):
        err.write("\n")  # err is a file or pipe of its own: end the notes' line there
        err.flush()
