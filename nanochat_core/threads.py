"""Run a blocking event stream in a worker thread and consume it from the calling thread.

Front-ends keep their own thread (the terminal's main thread, which receives Ctrl+C) free while
the engine works; cancelling is setting the shared threading.Event. The consumer is a plain
iterator object rather than a generator on purpose: a KeyboardInterrupt raised while waiting in
`__next__` leaves it usable, so the caller can cancel and keep draining until Done.
"""

from __future__ import annotations

import queue
import threading
from typing import Callable, Generic, Iterable, TypeVar

T = TypeVar("T")
_END = object()


class in_worker_thread(Generic[T]):
    """Iterate `produce()` in a daemon thread; yield its items here, re-raising its exception."""

    def __init__(self, produce: Callable[[], Iterable[T]], name: str = "nanochat-generate"):
        self._items: queue.Queue = queue.Queue()
        self._finished = False
        self._thread = threading.Thread(target=self._work, args=(produce,), name=name, daemon=True)
        self._thread.start()

    def _work(self, produce: Callable[[], Iterable[T]]) -> None:
        try:
            for item in produce():
                self._items.put(item)
        except BaseException as e:  # handed to the consumer
            self._items.put(e)
        finally:
            self._items.put(_END)

    def __iter__(self) -> "in_worker_thread[T]":
        return self

    def __next__(self) -> T:
        if self._finished:
            raise StopIteration
        item = self._items.get()
        if item is _END:
            self._finished = True
            self._thread.join()
            raise StopIteration
        if isinstance(item, BaseException):
            self._finished = True
            raise item
        return item
