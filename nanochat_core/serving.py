"""Serving chat requests from asyncio on engine threads: a worker pool with a bounded queue.

The web server (the nanochat_tui/web package) runs on an asyncio event loop; generation is blocking,
CPU/GPU-heavy work. This module is the hand-off between the two, with no aiohttp or Textual
import (pure threading + asyncio), so it can be tested and reused on its own:

- a `Worker` is one model (one per GPU; one on CPU/MPS) with `slots` streams it may run at once
  (1 for a `ChatModel`, which owns one KV cache; more for a `BatchedChatModel`, whose concurrent
  requests share decode steps). Each slot is a daemon thread of its own that calls the blocking
  `backend.chat(messages, sampling, cancel)` and hands every event to the loop with
  `call_soon_threadsafe`. Nothing heavy ever runs on the event loop.
- `WorkerPool.submit()` (on the loop thread) gives a request a free slot at once, or a place in a
  FIFO queue of at most `queue_size`; beyond that it raises `PoolBusy` (HTTP 503 + Retry-After).
- the returned `Generation` is an async iterator of core events (TextDelta / ToolCall /
  ToolResult, then Done or ErrorEvent). `cancel()` (or leaving `async with`) sets the engine's
  cancel event, which stops decoding within one step; the slot is given back only when the
  engine thread has really finished, so a model never runs two streams it cannot hold.

All `WorkerPool` / `Generation` methods must be called from the event loop's thread.
"""

from __future__ import annotations

import asyncio
import collections
import itertools
import queue
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Iterator, Protocol, Sequence

from .chat import SamplingParams, ValidationError
from .events import Done, ErrorEvent, Event
from .model_info import ModelInfo

__all__ = ["Backend", "Worker", "WorkerPool", "Generation", "PoolBusy", "PoolClosed", "Refused"]


class Backend(Protocol):
    """What a worker runs: `ChatModel`, `BatchedChatModel`, or a test fake."""

    info: ModelInfo

    def chat(self, messages: Sequence[Any], sampling: SamplingParams | None = None,
             cancel: threading.Event | None = None) -> Iterator[Event]: ...


class PoolBusy(Exception):
    """Every slot is busy and the queue is full. `retry_after` is a whole number of seconds."""

    def __init__(self, message: str, retry_after: int):
        super().__init__(message)
        self.retry_after = retry_after


class PoolClosed(Exception):
    """The pool is shutting down and takes no more requests."""


@dataclass(frozen=True)
class Refused(ErrorEvent):
    """The backend refused the request with a ValidationError instead of generating: the
    rulebook, or a conversation longer than the model's context. The request is at fault, not
    the server, so the web server answers 400 where it still can (docs/openai-api.md)."""


_END = object()  # the engine thread is done: no more events for this generation
_STOP = object()  # tells a slot thread to exit


@dataclass(eq=False)
class Worker:
    """One model on one device. `gpu_id` is what the SSE events report as "gpu"."""

    gpu_id: int
    device: str
    backend: Backend
    slots: int = 1
    active: int = field(default=0, init=False)
    served: int = field(default=0, init=False)
    _jobs: "queue.SimpleQueue" = field(default_factory=queue.SimpleQueue, init=False, repr=False)
    _threads: list = field(default_factory=list, init=False, repr=False)

    def __post_init__(self) -> None:
        if self.slots < 1:
            raise ValueError("a worker needs at least one slot")

    @property
    def free(self) -> int:
        return self.slots - self.active

    def describe(self) -> dict:
        return {"gpu_id": self.gpu_id, "device": self.device, "slots": self.slots,
                "active": self.active, "served": self.served}

    # Slot threads are started lazily (a pool built in a test that never runs costs nothing) and
    # are daemons: a hung backend can never keep the process from exiting.
    def _ensure_threads(self) -> None:
        while len(self._threads) < self.slots:
            t = threading.Thread(target=self._slot_loop, daemon=True,
                                 name=f"nanochat-worker-{self.gpu_id}.{len(self._threads)}")
            self._threads.append(t)
            t.start()

    def _slot_loop(self) -> None:
        while True:
            job = self._jobs.get()
            if job is _STOP:
                return
            job()

    def _stop_threads(self) -> None:
        for _ in self._threads:
            self._jobs.put(_STOP)
        self._threads = []


class Generation:
    """One request's stream. Iterate it (async) for events; `cancel()` stops it.

    The stream always ends with exactly one Done or ErrorEvent (a request cancelled while it was
    still queued ends with Done(reason="cancelled") too, with empty stats)."""

    _ids = itertools.count(1)

    def __init__(self, pool: "WorkerPool", messages: Sequence[Any], sampling: SamplingParams):
        self.id = next(self._ids)
        self.messages = messages
        self.sampling = sampling
        self.worker: Worker | None = None
        self.state = "queued"  # queued -> running -> finished (cancel may skip running)
        self.submitted_at = time.monotonic()
        self.started_at: float | None = None
        self.queue_position = 0  # requests ahead of this one when it was submitted (0 = none)
        self._pool = pool
        self._loop = pool._loop
        self._cancel = threading.Event()
        self._events: asyncio.Queue = asyncio.Queue()
        self._ended = False  # the consumer has seen the terminal event
        self._thread_done = self._loop.create_future()

    # -- consumer side (event loop) --

    def __aiter__(self) -> "Generation":
        return self

    async def __anext__(self) -> Event:
        if self._ended:
            raise StopAsyncIteration
        item = await self._events.get()
        if item is _END:
            self._ended = True
            raise StopAsyncIteration
        if isinstance(item, (Done, ErrorEvent)):
            self._ended = True
        return item

    def ready(self) -> list[Event]:
        """The events already waiting, without waiting for more (up to and including the
        terminal one). A consumer that forwards events over a network sends these with the
        one it just got, so a stream whose consumer fell behind catches up in one message
        while one that keeps up still sends each token as it comes (ray_serve/replica.py)."""
        out: list[Event] = []
        while not self._ended:
            try:
                item = self._events.get_nowait()
            except asyncio.QueueEmpty:
                break
            if item is _END:
                self._ended = True
                break
            if isinstance(item, (Done, ErrorEvent)):
                self._ended = True
            out.append(item)
        return out

    async def __aenter__(self) -> "Generation":
        return self

    async def __aexit__(self, *exc: Any) -> None:
        self.cancel()

    @property
    def cancelled(self) -> bool:
        return self._cancel.is_set()

    def cancel(self) -> None:
        """Stop this request: leave the queue, or tell the engine to stop within one step.
        Harmless after the end. The worker slot is freed when the engine thread returns."""
        if self.state == "finished":
            return
        self._cancel.set()
        if self.state == "queued":
            self._pool._forget_waiting(self)
            self.state = "finished"
            self._events.put_nowait(_cancelled_done())
            self._events.put_nowait(_END)
            if not self._thread_done.done():
                self._thread_done.set_result(None)

    async def wait_finished(self) -> None:
        """Until the engine thread has returned (immediately if it never started)."""
        await asyncio.shield(self._thread_done)

    # -- producer side --

    def _start(self, worker: Worker) -> None:  # loop thread
        self.worker = worker
        self.state = "running"
        self.started_at = time.monotonic()
        worker._ensure_threads()
        worker._jobs.put(self._run)

    def _run(self) -> None:  # a worker slot thread
        ended = False
        try:
            for event in self.worker.backend.chat(self.messages, self.sampling, cancel=self._cancel):
                self._put(event)
                if isinstance(event, (Done, ErrorEvent)):
                    ended = True
                    break
            if not ended:
                self._put(ErrorEvent("generation ended without a result"))
        except ValidationError as e:  # the rulebook or the context limit: the request's fault
            self._put(Refused(str(e)))
        except Exception as e:  # a broken step fails this request, not the server
            first = str(e).splitlines()[0] if str(e) else ""
            self._put(ErrorEvent(f"generation failed: {type(e).__name__}: {first}".rstrip(": ")))
        finally:
            self._put(_END)
            self._call(self._pool._finished, self)

    def _put(self, item: Any) -> None:
        self._call(self._events.put_nowait, item)

    def _call(self, fn: Any, *args: Any) -> None:
        try:
            self._loop.call_soon_threadsafe(fn, *args)
        except RuntimeError:  # the loop is closed: nobody is listening any more
            pass


def _cancelled_done() -> Done:
    from .events import GenerationStats

    return Done("cancelled", GenerationStats(0, 0, 0.0, 0.0))


class WorkerPool:
    """Workers plus a bounded FIFO queue of requests waiting for a free slot."""

    def __init__(self, workers: Sequence[Worker], queue_size: int = 64):
        if not workers:
            raise ValueError("a worker pool needs at least one worker")
        if queue_size < 0:
            raise ValueError("queue_size must be 0 or more")
        self.workers = list(workers)
        self.queue_size = queue_size
        self._waiting: collections.deque[Generation] = collections.deque()
        self._running: set[Generation] = set()
        self._closed = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._avg_seconds = 2.0  # running mean of a request's duration, for Retry-After

    # -- numbers for /health and /stats --

    @property
    def total_workers(self) -> int:
        return len(self.workers)

    @property
    def available_workers(self) -> int:
        """Workers that can start a request right now (a free slot)."""
        return sum(1 for w in self.workers if w.free > 0)

    @property
    def busy_workers(self) -> int:
        return self.total_workers - self.available_workers

    @property
    def active_requests(self) -> int:
        return len(self._running)

    @property
    def waiting_requests(self) -> int:
        return len(self._waiting)

    @property
    def closed(self) -> bool:
        return self._closed

    def retry_after(self) -> int:
        """Seconds a refused client should wait: about when the queue will have drained once."""
        slots = sum(w.slots for w in self.workers)
        estimate = self._avg_seconds * (len(self._waiting) + 1) / max(slots, 1)
        return int(min(max(round(estimate), 1), 60))

    # -- requests --

    def submit(self, messages: Sequence[Any], sampling: SamplingParams) -> Generation:
        """Start a request on a free slot, or queue it. Raises PoolBusy / PoolClosed at once.
        Call from the event loop thread; `messages` should already be validated."""
        if self._closed:
            raise PoolClosed("the server is shutting down")
        loop = asyncio.get_running_loop()
        if self._loop is None:
            self._loop = loop
        elif self._loop is not loop:
            raise RuntimeError("a WorkerPool serves one event loop")
        worker = self._free_worker() if not self._waiting else None
        if worker is None and len(self._waiting) >= self.queue_size:
            slots = sum(w.slots for w in self.workers)
            raise PoolBusy(
                f"Server busy: all {slots} generation slots are in use and {len(self._waiting)} "
                f"requests are waiting; try again shortly",
                self.retry_after(),
            )
        gen = Generation(self, messages, sampling)
        if worker is not None:
            self._start(gen, worker)
        else:
            gen.queue_position = len(self._waiting) + 1
            self._waiting.append(gen)
        return gen

    def _free_worker(self) -> Worker | None:
        free = [w for w in self.workers if w.free > 0]
        if not free:
            return None
        return min(free, key=lambda w: (w.active / w.slots, w.active, w.gpu_id))

    def _start(self, gen: Generation, worker: Worker) -> None:
        worker.active += 1
        self._running.add(gen)
        gen._start(worker)

    def _forget_waiting(self, gen: Generation) -> None:
        try:
            self._waiting.remove(gen)
        except ValueError:
            pass

    def _finished(self, gen: Generation) -> None:  # loop thread, after the engine thread returned
        if gen in self._running:
            self._running.discard(gen)
            gen.worker.active -= 1
            gen.worker.served += 1
            if gen.started_at is not None and not gen.cancelled:
                took = time.monotonic() - gen.started_at
                self._avg_seconds = 0.8 * self._avg_seconds + 0.2 * took
        gen.state = "finished"
        if not gen._thread_done.done():
            gen._thread_done.set_result(None)
        self._dispatch()

    def _dispatch(self) -> None:
        while self._waiting and not self._closed:
            worker = self._free_worker()
            if worker is None:
                return
            self._start(self._waiting.popleft(), worker)

    # -- shutdown --

    async def close(self, timeout: float = 10.0) -> None:
        """Refuse new requests, cancel queued and running ones, wait (up to `timeout`) for the
        engine threads to return, then stop the slot threads. Backends are left open."""
        self._closed = True
        for gen in list(self._waiting):
            gen.cancel()
        running = list(self._running)
        for gen in running:
            gen.cancel()
        if running:
            await asyncio.wait([asyncio.ensure_future(g.wait_finished()) for g in running], timeout=timeout)
        for worker in self.workers:
            worker._stop_threads()

    def stats(self) -> dict:
        """nanochat's /stats fields, plus queue and per-worker detail (extra keys)."""
        return {
            "total_workers": self.total_workers,
            "available_workers": self.available_workers,
            "busy_workers": self.busy_workers,
            "workers": [w.describe() for w in self.workers],
            "active_requests": self.active_requests,
            "waiting_requests": self.waiting_requests,
            "queue_size": self.queue_size,
        }
