"""Prefill + decode with a KV cache, nanochat's sampling, stop rules and calculator protocol.

`Engine.generate` reproduces nanochat's Engine protocol (nanochat-format.md §6-§7) token for
token, with the full-sequence model's math (the "canonical" ids of the fixtures, i.e. without
the KV-cache bugs nanochat's own Engine had in some eras, §9.5). `Engine.stream` turns that into
the events every front-end renders.

The engine keeps its KV cache between requests: when a new request starts with tokens that are
already cached (the next turn of the same chat), only the new suffix is prefilled.

The per-sequence pieces (`ToolProtocol`, `EventBuilder`) are shared with the batched engine
(batching.py), so one request behaves the same whether it runs alone or beside others.
"""

from __future__ import annotations

import random
import threading
import time
from dataclasses import dataclass
from typing import Iterator

import torch

from .calculator import calculate
from .chat import SamplingParams
from .events import Done, ErrorEvent, Event, GenerationStats, TextDelta, ToolCall, ToolResult
from .context import ContextTooLong, check_prompt, context_limit, positions_needed, reply_budget
from .model import GPT, KVCache
from .tokenizer import StreamDecoder, Tokenizer

CACHE_GRANULE = 256  # KV-cache capacity is a multiple of this many positions (or the limit)


def round_capacity(positions: int, limit: int) -> int:
    """Capacity for `positions`: rounded up to the granule (fewer reallocations), at most `limit`."""
    return min(-(-max(positions, 1) // CACHE_GRANULE) * CACHE_GRANULE, limit)


def resting_capacity(model, limit: int) -> int:
    """What a cache may keep between requests: the model's training context (sequence_len), the
    length nearly every chat stays within. Longer requests grow the cache for as long as they
    need it; the memory goes back once they are over (docs/core-api.md "Memory")."""
    config = getattr(model, "config", None)
    return round_capacity(config.sequence_len if config is not None else CACHE_GRANULE, limit)


def sample_next(logits: torch.Tensor, rng: torch.Generator, temperature: float, top_k: int | None) -> torch.Tensor:
    """nanochat's sampler. logits: (B, V) float32 -> (B, 1) token ids."""
    if temperature == 0.0:
        return torch.argmax(logits, dim=-1, keepdim=True)
    if top_k is not None and top_k > 0:
        k = min(top_k, logits.size(-1))
        values, indices = torch.topk(logits, k, dim=-1)
        probs = torch.softmax(values / temperature, dim=-1)
        return indices.gather(1, torch.multinomial(probs, num_samples=1, generator=rng))
    probs = torch.softmax(logits / temperature, dim=-1)
    return torch.multinomial(probs, num_samples=1, generator=rng)


def make_generator(device: torch.device, seed: int | None) -> torch.Generator:
    """A generator seeded per request (nanochat: the given seed; chat_web: a random one)."""
    rng = torch.Generator(device=device)
    rng.manual_seed(random.randrange(2**63) if seed is None else seed)
    return rng


@dataclass
class Step:
    token: int
    forced: bool  # True for calculator output the engine inserted (nanochat's mask 0)


class SpecialIds:
    def __init__(self, tokenizer: Tokenizer):
        sp = tokenizer.special
        self.bos = tokenizer.bos_id
        self.assistant_end = sp("<|assistant_end|>")
        self.python_start, self.python_end = sp("<|python_start|>"), sp("<|python_end|>")
        self.output_start, self.output_end = sp("<|output_start|>"), sp("<|output_end|>")
        self.stops = (self.assistant_end, self.bos)


class ToolProtocol:
    """nanochat's per-row state machine: a python block is collected; on <|python_end|> the
    calculator runs and its result is queued as forced tokens, which replace the samples."""

    def __init__(self, tokenizer: Tokenizer, ids: SpecialIds):
        self.tokenizer, self.ids = tokenizer, ids
        self.forced: list[int] = []
        self.in_python = False
        self.expression: list[int] = []

    def choose(self, sampled: int) -> Step:
        if self.forced:
            return Step(self.forced.pop(0), True)
        return Step(sampled, False)

    def observe(self, token: int) -> None:
        """Update the state with an emitted token (forced tokens included, as nanochat does)."""
        if token == self.ids.python_start:
            self.in_python, self.expression = True, []
        elif token == self.ids.python_end and self.in_python:
            self.in_python = False
            result = calculate(self.tokenizer.decode(self.expression))
            if result is not None:
                self.forced += [self.ids.output_start, *self.tokenizer.encode(result), self.ids.output_end]
        elif self.in_python:
            self.expression.append(token)


class EventBuilder:
    """Turns emitted tokens into events: text at UTF-8 boundaries, tool calls and results, and
    the final Done with nanochat message parts and timing."""

    def __init__(self, tokenizer: Tokenizer, ids: SpecialIds, prompt_tokens: int):
        self.tokenizer, self.ids = tokenizer, ids
        self.prompt_tokens = prompt_tokens
        self.start = time.perf_counter()
        self.first_token_at: float | None = None
        self.produced: list[int] = []
        self.parts: list[dict] = []
        self.text = StreamDecoder(tokenizer)
        self.block: str | None = None  # None (plain text) | "python" | "python_output"
        self.block_ids: list[int] = []
        self.pending_call: str | None = None
        self.stopped = False  # a stop token was emitted
        self.stop_id: int | None = None

    def _add_text(self, piece: str) -> None:
        if not piece:
            return
        if self.parts and self.parts[-1]["type"] == "text":
            self.parts[-1]["text"] += piece
        else:
            self.parts.append({"type": "text", "text": piece})

    def feed(self, token: int) -> list[Event]:
        if self.first_token_at is None:
            self.first_token_at = time.perf_counter()
        ids = self.ids
        if token in ids.stops:
            self.stopped, self.stop_id = True, token
            return []
        self.produced.append(token)
        events: list[Event] = []
        if token in (ids.python_start, ids.output_start):
            tail = self.text.flush()
            self._add_text(tail)
            if tail:
                events.append(TextDelta(tail))
            self.text = StreamDecoder(self.tokenizer)
            self.block = "python" if token == ids.python_start else "python_output"
            self.block_ids = []
        elif token in (ids.python_end, ids.output_end) and self.block is not None:
            content = self.tokenizer.decode(self.block_ids)
            self.parts.append({"type": self.block, "text": content})
            if self.block == "python":
                self.pending_call = content
                events.append(ToolCall(content))
                if calculate(content) is None:  # nothing will be forced: say so now
                    events.append(ToolResult(content, None))
                    self.pending_call = None
            else:
                events.append(ToolResult(self.pending_call or "", content))
                self.pending_call = None
            self.block = None
        elif self.block is not None:
            self.block_ids.append(token)
        elif token not in self.tokenizer.special_ids:  # stray specials are not reply text
            piece = self.text.feed(token)
            self._add_text(piece)
            if piece:
                events.append(TextDelta(piece))
        return events

    def finish(self, reason: str, cached_tokens: int = 0) -> list[Event]:
        events: list[Event] = []
        tail = self.text.flush()
        if tail and self.block is None:
            self._add_text(tail)
            events.append(TextDelta(tail))
        if self.block is not None:
            # The reply ended inside a python / output block (max tokens, a stop token, Stop):
            # what the model wrote there is part of the reply and must be seen, not dropped.
            content = self.tokenizer.decode(self.block_ids)
            self.parts.append({"type": self.block, "text": content})
            if self.block == "python":
                events += [ToolCall(content), ToolResult(content, None)]
            else:
                events.append(ToolResult(self.pending_call or "", content))
            self.block, self.pending_call = None, None
        end = time.perf_counter()
        stats = GenerationStats(
            prompt_tokens=self.prompt_tokens,
            generated_tokens=len(self.produced),
            ttft_s=(self.first_token_at or end) - self.start,
            total_s=end - self.start,
            cached_tokens=cached_tokens,
        )
        events.append(Done(reason, stats, tuple(self.produced), tuple(self.parts), self.stop_id))
        return events


class Engine:
    """Batch-1 generation with a KV cache that persists across requests."""

    def __init__(self, model: GPT, tokenizer: Tokenizer, max_context: int | None = None):
        self.model = model
        self.tokenizer = tokenizer
        self.device = model.device
        self.ids = SpecialIds(tokenizer)
        # Positions a request may use: the model's (rotary_len), or a lower budget (context.py).
        self.context_limit = context_limit(model.rotary_len, max_context)
        self.resting_capacity = resting_capacity(model, self.context_limit)
        self._lock = threading.Lock()  # one generation at a time: the KV cache is shared state
        # "graph": CUDA-graph replay of a static decode step (CUDA default); "static": the same
        # static step without capture (lets CPU tests check its math); "eager": plain calls.
        from .cuda_graphs import cuda_graphs_enabled

        self.decode_mode = "graph" if cuda_graphs_enabled(self.device) else "eager"
        self._graph = None  # GraphedDecode for the current cache tensors
        self.graph_error: str | None = None  # why graph capture was given up, if it was
        self._cache: KVCache | None = None
        self._cached_ids: list[int] = []  # the tokens whose keys/values are in the cache
        self.last_reused = 0  # prompt tokens the last request took from the cache

    # -- KV cache management --

    def _prefill(self, ids: list[int], max_tokens: int) -> torch.Tensor:
        """Run the part of `ids` not already cached; return the last position's logits (1, V)."""
        check_prompt(len(ids), self.context_limit)
        needed = positions_needed(len(ids), reply_budget(len(ids), max_tokens, self.context_limit))
        # Longest common prefix with what is cached; always recompute at least the last token.
        reuse = 0
        limit = min(len(self._cached_ids), len(ids) - 1)
        while reuse < limit and self._cached_ids[reuse] == ids[reuse]:
            reuse += 1
        self._size_cache(needed, keep=reuse)
        self.last_reused = reuse
        self._cache.pos = reuse
        self._cached_ids = self._cached_ids[:reuse]
        prev = torch.tensor([ids[reuse - 1]], device=self.device) if reuse else None
        chunk = torch.tensor([ids[reuse:]], dtype=torch.long, device=self.device)
        logits = self.model(chunk, cache=self._cache, prev_token=prev, last_only=True)
        self._cached_ids.extend(ids[reuse:])
        return logits

    def _size_cache(self, needed: int, keep: int) -> None:
        """Fit the cache to this request: grow it when it is too small; shrink it when an earlier,
        longer request left it bigger than both this one and the resting size need. The first
        `keep` positions (the reused prefix) survive either way."""
        target = round_capacity(needed, self.context_limit)
        if self._cache is None:
            self._cache = self.model.new_cache(1, target)
            self._cached_ids = []
        elif self._cache.capacity < needed:
            self._cache.resize(target, keep)
        elif self._cache.capacity > max(target, self.resting_capacity):
            self._cache.resize(max(target, self.resting_capacity), keep)

    @property
    def cache_bytes(self) -> int:
        """Bytes the KV cache holds now (0 before the first request)."""
        return 0 if self._cache is None else self._cache.nbytes

    def _decode_one(self, token: int) -> torch.Tensor:
        cache, prev_id = self._cache, self._cached_ids[-1]
        if self.decode_mode == "graph":
            from .cuda_graphs import GraphedDecode

            key = (cache.k.data_ptr(), cache.capacity)
            if self._graph is None or self._graph_key != key:
                try:
                    self._graph, self._graph_key = GraphedDecode(self.model, cache), key
                except RuntimeError as e:
                    # A GPU/driver/torch combination that cannot capture: decode eagerly from
                    # now on (same numbers, slower) instead of failing every reply.
                    self._graph, self.decode_mode = None, "eager"
                    self.graph_error = f"CUDA graph capture failed, decoding eagerly: {e}".splitlines()[0]
        if self.decode_mode == "eager":
            logits = self.model(torch.tensor([[token]], device=self.device), cache=cache,
                                prev_token=torch.tensor([prev_id], device=self.device), last_only=True)
        elif self.decode_mode == "graph":
            logits = self._graph(token, cache.pos, prev_id)
            cache.pos += 1
        else:  # static math, no capture
            logits = self.model.decode_rows(
                torch.tensor([token], device=self.device), torch.tensor([cache.pos], device=self.device),
                torch.tensor([prev_id], device=self.device), cache, static=True)
            cache.pos += 1
        self._cached_ids.append(token)
        return logits

    def cached_prefix(self, ids: list[int]) -> int:
        """How many leading tokens of `ids` this engine's cache already holds (for routing)."""
        n = 0
        for a, b in zip(self._cached_ids, ids):
            if a != b:
                break
            n += 1
        return n

    def reset_cache(self) -> None:
        self._cached_ids = []
        if self._cache is not None:
            self._cache.pos = 0

    # -- nanochat's Engine protocol --

    def generate(
        self,
        ids: list[int],
        temperature: float = 0.0,
        top_k: int | None = None,
        max_tokens: int = 256,
        seed: int | None = 42,
        cancel: threading.Event | None = None,
    ) -> Iterator[Step]:
        """Yield each token appended to the sequence, forced tool tokens and the final stop
        token included, exactly as nanochat's Engine.generate does for one sample."""
        with self._lock, torch.inference_mode():
            rng = make_generator(self.device, seed)
            logits = self._prefill(list(ids), max_tokens)
            tools = ToolProtocol(self.tokenizer, self.ids)
            # The last reply token is sampled, never fed: it needs no position (context.py).
            budget = reply_budget(len(ids), max_tokens, self.context_limit)
            for produced in range(budget):
                if cancel is not None and cancel.is_set():
                    return
                # Sample every step, even when a forced token wins: the random stream then
                # matches nanochat's.
                step = tools.choose(int(sample_next(logits, rng, temperature, top_k)[0, 0]))
                yield step
                if step.token in self.ids.stops:
                    return
                tools.observe(step.token)
                if produced + 1 < budget:
                    logits = self._decode_one(step.token)

    # -- events for front-ends --

    def stream(self, ids: list[int], sampling: SamplingParams,
               cancel: threading.Event | None = None) -> Iterator[Event]:
        """Generate and describe it as events: text at UTF-8 boundaries, tool calls and results,
        then Done with the reason and timing. Generation problems end the stream with an
        ErrorEvent carrying one line; they are never raised."""
        builder = EventBuilder(self.tokenizer, self.ids, len(ids))
        try:
            for step in self.generate(ids, sampling.temperature, sampling.top_k, sampling.max_tokens,
                                      sampling.seed, cancel):
                yield from builder.feed(step.token)
                if builder.stopped:
                    break
        except ContextTooLong as e:  # ChatModel refuses these before any work; direct callers get one line
            yield ErrorEvent(str(e))
            return
        except Exception as e:  # a real engine failure: one line, keep the app alive
            detail = str(e).splitlines()[0] if str(e) else ""
            yield ErrorEvent(f"generation failed: {type(e).__name__}: {detail}")
            return
        if builder.stopped:
            reason = "stop"
        elif cancel is not None and cancel.is_set():
            reason = "cancelled"
        else:
            reason = "length"
        yield from builder.finish(reason, self.last_reused)
