"""Run a blocking event stream in a worker thread and consume it from the calling thread.

Front-ends keep their own thread (the terminal's main thread, which receives Ctrl+C) free while
the engine works; cancelling is setting the shared threading.Event.
"""

from __future__ import annotations

import queue
import threading
from typing import Callable, Iterable, Iterator, TypeVar

T = TypeVar("T")
_END = object()


def in_worker_thread(produce: Callable[[], Iterable[T]], name: str = "nanochat-generate") -> Iterator[T]:
    """Iterate `produce()` in a daemon thread; yield its items here, re-raising its exception."""
    items: queue.Queue = queue.Queue()

    def work() -> None:
        try:
            for item in produce():
                items.put(item)
        except BaseException as e:  # handed to the consumer
            items.put(e)
        finally:
            items.put(_END)

    thread = threading.Thread(target=work, name=name, daemon=True)
    thread.start()
    while True:
        item = items.get()
        if item is _END:
            break
        if isinstance(item, BaseException):
            raise item
        yield item
    thread.join()
