"""Prefill + decode with a KV cache, nanochat's sampling, stop rules and calculator protocol.

`Engine.generate` reproduces nanochat's Engine protocol (nanochat-format.md §6-§7) token for
token, with the full-sequence model's math (the "canonical" ids of the fixtures, i.e. without
the KV-cache bugs nanochat's own Engine had in some eras, §9.5). `Engine.stream` turns that into
the events every front-end renders.

The engine keeps its KV cache between requests: when a new request starts with tokens that are
already cached (the next turn of the same chat), only the new suffix is prefilled.
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
from .model import GPT, KVCache
from .tokenizer import StreamDecoder, Tokenizer

CACHE_GRANULE = 256  # grow the KV cache in steps of this many positions


class ContextOverflow(ValueError):
    """The prompt does not fit the model's context (10 x sequence_len positions)."""


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


@dataclass
class Step:
    token: int
    forced: bool  # True for calculator output the engine inserted (nanochat's mask 0)


class Engine:
    def __init__(self, model: GPT, tokenizer: Tokenizer):
        self.model = model
        self.tokenizer = tokenizer
        self.device = model.lm_head.weight.device
        tok = tokenizer.special
        self.bos = tokenizer.bos_id
        self.assistant_end = tok("<|assistant_end|>")
        self.python_start, self.python_end = tok("<|python_start|>"), tok("<|python_end|>")
        self.output_start, self.output_end = tok("<|output_start|>"), tok("<|output_end|>")
        self.context_limit = model.rotary_len
        self._lock = threading.Lock()  # one generation at a time: the KV cache is shared state
        self._cache: KVCache | None = None
        self._cached_ids: list[int] = []  # the tokens whose keys/values are in the cache
        self.last_reused = 0  # prompt tokens the last request took from the cache

    # -- KV cache management --

    def _prefill(self, ids: list[int], max_tokens: int) -> torch.Tensor:
        """Run the part of `ids` not already cached; return the last position's logits (1, V)."""
        if len(ids) >= self.context_limit:
            raise ContextOverflow(
                f"The conversation is {len(ids)} tokens, more than this model's context of "
                f"{self.context_limit - 1} tokens; start a new conversation or shorten it"
            )
        needed = min(len(ids) + max_tokens, self.context_limit)
        if self._cache is None or self._cache.capacity < needed:
            capacity = min(-(-needed // CACHE_GRANULE) * CACHE_GRANULE, self.context_limit)
            if self._cache is None:
                self._cache = self.model.new_cache(1, capacity)
                self._cached_ids = []
            else:
                self._cache.grow(capacity)
        # Longest common prefix with what is cached; always recompute at least the last token.
        reuse = 0
        limit = min(len(self._cached_ids), len(ids) - 1)
        while reuse < limit and self._cached_ids[reuse] == ids[reuse]:
            reuse += 1
        self.last_reused = reuse
        self._cache.pos = reuse
        self._cached_ids = self._cached_ids[:reuse]
        prev = torch.tensor([ids[reuse - 1]], device=self.device) if reuse else None
        chunk = torch.tensor([ids[reuse:]], dtype=torch.long, device=self.device)
        logits = self.model(chunk, cache=self._cache, prev_token=prev, last_only=True)
        self._cached_ids.extend(ids[reuse:])
        return logits

    def _decode_one(self, token: int) -> torch.Tensor:
        prev = torch.tensor([self._cached_ids[-1]], device=self.device)
        logits = self.model(torch.tensor([[token]], device=self.device), cache=self._cache,
                            prev_token=prev, last_only=True)
        self._cached_ids.append(token)
        return logits

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
            rng = torch.Generator(device=self.device)
            rng.manual_seed(random.randrange(2**63) if seed is None else seed)
            logits = self._prefill(list(ids), max_tokens)
            forced: list[int] = []
            in_python, expression = False, []
            room = self.context_limit - len(ids)  # positions left before the rotary table ends
            for produced in range(min(max_tokens, room)):
                if cancel is not None and cancel.is_set():
                    return
                sampled = int(sample_next(logits, rng, temperature, top_k)[0, 0])
                is_forced = bool(forced)
                token = forced.pop(0) if is_forced else sampled
                yield Step(token, is_forced)
                if token in (self.assistant_end, self.bos):
                    return
                # The calculator state machine (runs on forced tokens too, like nanochat's).
                if token == self.python_start:
                    in_python, expression = True, []
                elif token == self.python_end and in_python:
                    in_python = False
                    result = calculate(self.tokenizer.decode(expression))
                    if result is not None:
                        forced += [self.output_start, *self.tokenizer.encode(result), self.output_end]
                elif in_python:
                    expression.append(token)
                if produced + 1 < min(max_tokens, room):
                    logits = self._decode_one(token)

    # -- events for front-ends --

    def stream(self, ids: list[int], sampling: SamplingParams,
               cancel: threading.Event | None = None) -> Iterator[Event]:
        """Generate and describe it as events: text at UTF-8 boundaries, tool calls and results,
        then Done with the reason and timing. Never raises for generation problems: those end the
        stream with an ErrorEvent carrying one line."""
        start = time.perf_counter()
        first_token_at: float | None = None
        produced: list[int] = []
        parts: list[dict] = []
        text = StreamDecoder(self.tokenizer)
        block: str | None = None  # None (plain text) | "python" | "python_output"
        block_ids: list[int] = []
        pending_call: str | None = None
        reason = "length"

        def add_text(piece: str) -> None:
            if not piece:
                return
            if parts and parts[-1]["type"] == "text":
                parts[-1]["text"] += piece
            else:
                parts.append({"type": "text", "text": piece})

        try:
            for step in self.generate(ids, sampling.temperature, sampling.top_k, sampling.max_tokens,
                                      sampling.seed, cancel):
                if first_token_at is None:
                    first_token_at = time.perf_counter()
                tok = step.token
                if tok in (self.assistant_end, self.bos):
                    reason = "stop"
                    break
                produced.append(tok)
                if tok in (self.python_start, self.output_start):
                    tail = text.flush()
                    add_text(tail)
                    if tail:
                        yield TextDelta(tail)
                    text = StreamDecoder(self.tokenizer)
                    block, block_ids = ("python" if tok == self.python_start else "python_output"), []
                elif tok in (self.python_end, self.output_end) and block is not None:
                    content = self.tokenizer.decode(block_ids)
                    parts.append({"type": block, "text": content})
                    if block == "python":
                        pending_call = content
                        yield ToolCall(content)
                        if calculate(content) is None:  # nothing will be forced: say so now
                            yield ToolResult(content, None)
                            pending_call = None
                    else:
                        yield ToolResult(pending_call or "", content)
                        pending_call = None
                    block = None
                elif block is not None:
                    block_ids.append(tok)
                elif tok in self.tokenizer.special_ids:
                    continue  # a stray special token (e.g. <|user_start|>) is not reply text
                else:
                    piece = text.feed(tok)
                    add_text(piece)
                    if piece:
                        yield TextDelta(piece)
            else:
                if cancel is not None and cancel.is_set():
                    reason = "cancelled"
        except ContextOverflow as e:
            yield ErrorEvent(str(e))
            return
        except Exception as e:  # a real engine failure: report it in one line, keep the app alive
            yield ErrorEvent(f"generation failed: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}")
            return
        tail = text.flush()
        if tail and block is None:
            add_text(tail)
            yield TextDelta(tail)
        end = time.perf_counter()
        stats = GenerationStats(
            prompt_tokens=len(ids),
            generated_tokens=len(produced),
            ttft_s=(first_token_at or end) - start,
            total_s=end - start,
            cached_tokens=self.last_reused,
        )
        yield Done(reason, stats, tuple(produced), tuple(parts))
