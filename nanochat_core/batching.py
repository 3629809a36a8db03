"""Continuous batching: many requests share one decode step.

At batch 1 a decode step reads every weight matrix to produce one token; serving several users
one after another wastes that read. `BatchEngine` runs one scheduler thread that owns a batched
KV cache with `max_batch` rows:

- active requests occupy rows 0..n-1 (kept contiguous, so attention reads a plain slice);
- a newcomer is prefilled into row n in chunks, between decode steps, so the others keep
  streaming; it then joins the batch;
- every step decodes all active rows at their own positions (`GPT.decode_rows`), then each row
  samples with its own temperature / top-k / seeded generator and runs its own stop rules and
  calculator protocol (the same `ToolProtocol` / `EventBuilder` as the batch-1 engine);
- a finished or cancelled request frees its row (the last active row moves into it);
- idle rows keep what they cached, and a newcomer whose prompt extends one of them (the next turn
  of the same chat) starts from that prefix.

Memory (docs/core-api.md "Memory"): the cache has as many rows as were ever busy at once (up to
`max_batch`) and as many positions as the rows in use need, grown as they decode. When a request
longer than the resting size (the model's sequence_len) ends, the cache shrinks back, and idle
rows keep at most the resting size of their prefix. `max_context` caps every request's positions
(a prompt over it is refused with ContextTooLong before it is queued).

At temperature 0 every stream equals its solo run (same math per row, up to the floating-point
order of batched matrix products).
"""

from __future__ import annotations

import queue
import threading
from dataclasses import dataclass, field
from typing import Callable, Iterator

import torch

from .chat import SamplingParams
from .context import check_prompt, context_limit, reply_budget
from .engine import (
    EventBuilder,
    SpecialIds,
    ToolProtocol,
    make_generator,
    resting_capacity,
    round_capacity,
    sample_next,
)
from .events import Done, ErrorEvent, Event
from .model import GPT
from .tokenizer import Tokenizer

EventSink = Callable[[Event], None]


@dataclass
class _Request:
    ids: list[int]
    sampling: SamplingParams
    cancel: threading.Event
    emit: EventSink
    builder: EventBuilder
    tools: ToolProtocol
    rng: torch.Generator
    budget: int
    produced: int = 0
    prefilled: int = 0  # prompt tokens already in the cache row
    reused: int = 0
    logits: torch.Tensor | None = None  # (V,) logits for the next token
    last_token: int = -1  # the token to feed at the next decode step
    done: bool = False
    fed: list[int] = field(default_factory=list)  # tokens whose keys/values are in the row


class BatchEngine:
    def __init__(self, model: GPT, tokenizer: Tokenizer, max_batch: int = 8, prefill_chunk: int = 512,
                 max_context: int | None = None):
        self.model, self.tokenizer = model, tokenizer
        self.device = model.device
        self.ids = SpecialIds(tokenizer)
        self.max_batch = max_batch
        self.prefill_chunk = prefill_chunk
        self.context_limit = context_limit(model.rotary_len, max_context)  # positions per request
        self.resting_capacity = resting_capacity(model, self.context_limit)
        self.cache = model.new_cache(1, round_capacity(1, self.context_limit))  # grows on demand
        self.row_ids: list[list[int]] = [[]]  # what each allocated row caches
        self.active: list[_Request] = []  # rows 0..n-1, in row order
        self.prefilling: _Request | None = None  # sits in row len(active)
        self.waiting: "queue.Queue[_Request | None]" = queue.Queue()
        self.steps = 0  # decode steps run (for stats/tests)
        self._closed = False
        self._thread = threading.Thread(target=self._loop, name="nanochat-batch", daemon=True)
        self._thread.start()

    # -- public API --

    def submit(self, ids: list[int], sampling: SamplingParams, emit: EventSink,
               cancel: threading.Event | None = None) -> threading.Event:
        """Queue a request; `emit` is called from the scheduler thread with each event (ending
        with Done or ErrorEvent). Returns the cancel event (set it to stop the request)."""
        if self._closed:
            raise RuntimeError("engine is closed")
        ids = list(ids)
        check_prompt(len(ids), self.context_limit)  # ContextTooLong before anything is queued
        cancel = cancel or threading.Event()
        request = _Request(
            ids=ids, sampling=sampling, cancel=cancel, emit=emit,
            builder=EventBuilder(self.tokenizer, self.ids, len(ids)),
            tools=ToolProtocol(self.tokenizer, self.ids),
            rng=make_generator(self.device, sampling.seed),
            budget=reply_budget(len(ids), sampling.max_tokens, self.context_limit),
        )
        self.waiting.put(request)
        return cancel

    def stream(self, ids: list[int], sampling: SamplingParams,
               cancel: threading.Event | None = None) -> Iterator[Event]:
        """Blocking iterator over one request's events (ChatModel.stream's contract)."""
        events: "queue.Queue[Event]" = queue.Queue()
        self.submit(ids, sampling, events.put, cancel)
        while True:
            event = events.get()
            yield event
            if isinstance(event, (Done, ErrorEvent)):
                return

    def close(self) -> None:
        self._closed = True
        self.waiting.put(None)
        self._thread.join(timeout=5)

    @property
    def busy_rows(self) -> int:
        return len(self.active) + (1 if self.prefilling else 0)

    @property
    def cache_bytes(self) -> int:
        """Bytes the batched KV cache holds now (rows x positions x layers x keys and values)."""
        return self.cache.nbytes

    # -- the scheduler thread --

    def _loop(self) -> None:
        with torch.inference_mode():
            while not self._closed:
                try:
                    if not self.active and self.prefilling is None:
                        request = self.waiting.get()  # idle: sleep until work arrives
                        if request is None:
                            return
                        self._start_prefill(request)
                    elif self.prefilling is None and len(self.active) < self.max_batch:
                        try:
                            request = self.waiting.get_nowait()
                        except queue.Empty:
                            request = None
                        if request is None and self._closed:
                            return
                        if request is not None:
                            self._start_prefill(request)
                    if self.prefilling is not None:
                        self._prefill_chunk()  # one chunk, then let the batch take a step
                    if self.active:
                        self._decode_step()
                except Exception as e:  # a broken step fails the requests in it, not the server
                    self._fail_all(f"generation failed: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}")

    def _fail_all(self, message: str) -> None:
        for request in self.active + ([self.prefilling] if self.prefilling else []):
            request.emit(ErrorEvent(message))
        self.active, self.prefilling = [], None
        self.row_ids = [[] for _ in range(self.cache.batch)]
        self._give_back_memory()

    def _ensure_capacity(self, positions: int) -> None:
        """Room for `positions` positions in every row. Grows by at least a quarter at a time, so
        a long reply reallocates a few times, not once per granule."""
        if positions > self.cache.capacity:
            wanted = max(positions, self.cache.capacity + self.cache.capacity // 4)
            self.cache.resize(round_capacity(wanted, self.context_limit), keep=self.cache.capacity)

    def _ensure_rows(self, rows: int) -> None:
        """At least `rows` rows (doubling up to max_batch): a server that never sees more than
        one chat at a time holds one row, not max_batch."""
        if rows > self.cache.batch:
            batch = min(self.max_batch, max(rows, 2 * self.cache.batch))
            self.cache.resize(self.cache.capacity, keep=self.cache.capacity, batch=batch)
            self.row_ids += [[] for _ in range(batch - len(self.row_ids))]

    def _give_back_memory(self) -> None:
        """After a request leaves: shrink the positions to what the rows in use need, idle rows
        keeping at most the resting size of their prefix. Nothing happens while the cache is
        within the resting size (no reallocation churn for ordinary chats)."""
        if self.cache.capacity <= self.resting_capacity:
            return
        busy = len(self.active)
        need = [len(self.row_ids[i]) + 1 for i in range(busy)]  # + the next decode position
        if self.prefilling is not None:
            need.append(len(self.prefilling.ids))
            busy += 1
        need += [min(len(ids), self.resting_capacity) for ids in self.row_ids[busy:]]
        capacity = max(round_capacity(max(need, default=1), self.context_limit), self.resting_capacity)
        if capacity < self.cache.capacity:
            self.cache.resize(capacity, keep=capacity)
            self.row_ids = [ids[:capacity] for ids in self.row_ids]

    def _copy_row(self, src: int, dst: int, length: int) -> None:
        if src != dst and length:
            self.cache.k[:, dst, :, :length] = self.cache.k[:, src, :, :length]
            self.cache.v[:, dst, :, :length] = self.cache.v[:, src, :, :length]
        self.row_ids[dst] = list(self.row_ids[src][:length])

    def _start_prefill(self, request: _Request) -> None:
        if request.cancel.is_set():
            for event in request.builder.finish("cancelled"):
                request.emit(event)
            return
        row = len(self.active)
        # Reuse: the idle row (this one or a later one) caching the longest prefix of the prompt.
        best, best_len = row, 0
        for r in range(row, self.cache.batch):
            cached = self.row_ids[r]
            n, limit = 0, min(len(cached), len(request.ids) - 1)
            while n < limit and cached[n] == request.ids[n]:
                n += 1
            if n > best_len:
                best, best_len = r, n
        self._ensure_rows(row + 1)
        self._ensure_capacity(len(request.ids))
        if best != row:
            # Keep row `row`'s own cache by swapping it into the donor's place.
            keep = len(self.row_ids[row])
            tmp_k = self.cache.k[:, row, :, :keep].clone()
            tmp_v = self.cache.v[:, row, :, :keep].clone()
            tmp_ids = self.row_ids[row]
            self._copy_row(best, row, best_len)
            self.cache.k[:, best, :, :keep] = tmp_k
            self.cache.v[:, best, :, :keep] = tmp_v
            self.row_ids[best] = tmp_ids
        self.row_ids[row] = self.row_ids[row][:best_len]
        request.prefilled = request.reused = best_len
        self.prefilling = request

    def _prefill_chunk(self) -> None:
        request, row = self.prefilling, len(self.active)
        if request.cancel.is_set():
            self.prefilling = None
            for event in request.builder.finish("cancelled", request.reused):
                request.emit(event)
            self._give_back_memory()
            return
        start = request.prefilled
        end = min(len(request.ids), start + self.prefill_chunk)
        view = self.cache.row(row)
        view.pos = start
        prev = torch.tensor([request.ids[start - 1]], device=self.device) if start else None
        chunk = torch.tensor([request.ids[start:end]], dtype=torch.long, device=self.device)
        logits = self.model(chunk, cache=view, prev_token=prev, last_only=True)
        self.row_ids[row] = request.ids[:end]
        request.prefilled = end
        if end == len(request.ids):
            request.logits = logits[0]
            self.prefilling = None
            self.active.append(request)
            self._emit_next(request)  # the first token comes straight from the prefill
            if request.done:
                self._release(len(self.active) - 1)
                self._give_back_memory()

    def _emit_next(self, request: _Request) -> None:
        """Sample this request's next token from its logits and run its protocol."""
        if request.cancel.is_set() or request.produced >= request.budget:
            reason = "cancelled" if request.cancel.is_set() else "length"
            for event in request.builder.finish(reason, request.reused):
                request.emit(event)
            request.done = True
            return
        sp = request.sampling
        sampled = int(sample_next(request.logits[None], request.rng, sp.temperature, sp.top_k)[0, 0])
        step = request.tools.choose(sampled)
        request.produced += 1
        for event in request.builder.feed(step.token):
            request.emit(event)
        if step.token in self.ids.stops:
            for event in request.builder.finish("stop", request.reused):
                request.emit(event)
            request.done = True
            return
        request.tools.observe(step.token)
        if request.produced >= request.budget:
            for event in request.builder.finish("length", request.reused):
                request.emit(event)
            request.done = True
            return
        request.last_token = step.token

    def _decode_step(self) -> None:
        n = len(self.active)
        tokens = torch.tensor([r.last_token for r in self.active], device=self.device)
        prev = torch.tensor([self.row_ids[i][-1] for i in range(n)], device=self.device)
        lengths = [len(self.row_ids[i]) for i in range(n)]  # each row's next position
        self._ensure_capacity(max(lengths) + 1)
        positions = torch.tensor(lengths, device=self.device)
        logits = self.model.decode_rows(tokens, positions, prev, self.cache)
        self.steps += 1
        for i, request in enumerate(self.active):
            self.row_ids[i].append(request.last_token)
            request.logits = logits[i]
            self._emit_next(request)
        released = False
        for i in reversed(range(n)):
            if self.active[i].done:
                self._release(i)
                released = True
        if released:
            self._give_back_memory()

    def _release(self, index: int) -> None:
        """Free row `index`: the last active row (and a prefill in progress) move down."""
        last = len(self.active) - 1
        if index != last:
            # Keep the finished row's cache for reuse by swapping it with the last active row.
            keep = len(self.row_ids[index])
            tmp_k = self.cache.k[:, index, :, :keep].clone()
            tmp_v = self.cache.v[:, index, :, :keep].clone()
            tmp_ids = self.row_ids[index]
            self._copy_row(last, index, len(self.row_ids[last]))
            self.cache.k[:, last, :, :keep] = tmp_k
            self.cache.v[:, last, :, :keep] = tmp_v
            self.row_ids[last] = tmp_ids
            self.active[index] = self.active[last]
        self.active.pop()
        if self.prefilling is not None:
            # The prefill lived in row last + 1; it belongs right after the active rows now.
            self._copy_row(last + 1, last, self.prefilling.prefilled)
