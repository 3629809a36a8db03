"""`nanochat-tui bench --serve N`: concurrent streams through the web server's own path.

The engine benchmark (nanochat_core.bench) times the model alone. This one times what a user of
`nanochat-tui --web` gets: N chat requests at once over HTTP, answered by the worker pool with
continuous batching, parsed from nanochat's SSE protocol. It either starts the real application
(`web.create_app`) in-process on 127.0.0.1 with ONE worker of `batch_size` slots, on an event
loop of its own in a thread (web.ThreadedServer), or, with `url`, measures a server that is already running (another
`nanochat-tui --web`, or nanochat's own chat_web.py) without loading anything.

The client is aiohttp's, on its own event loop; generation never runs on either loop. Passes:

1. sizing: one-token requests tune each distinct prompt's word count until the server's
   "prompt_tokens" is about the asked `prompt_tokens` (a server without stats: a words estimate);
2. warm-up: one full-length request (kernels, allocator, KV-cache growth) on a text of its own;
3. concurrent: N streams at once, each one of a few distinct prompts, temperature 0, while a
   separate task polls GET /health every ~50 ms and records its latency;
4. solo: each distinct prompt once, alone, temperature 0; every concurrent stream's text must
   equal the solo text of its prompt (`identical_to_solo`).

The solo pass comes AFTER the concurrent one on purpose: the batch engine keeps what each row
cached and a request extending a cached prompt skips its prefill, so solo runs first would turn
the concurrent pass's time to first token into cache hits. (`cached_tokens` in the report shows
any reuse that did happen. Only the in-process server reports it, since its one client is this
benchmark; a nanochat-tui --web server keeps it from clients, docs/security.md: None there.)

Figures: aggregate tok/s = all generated tokens / wall time of the concurrent pass; per-stream
tok/s = (tokens - 1) / (last event - first token) of each stream; time to first token is measured
by the client from sending the request (queueing and HTTP included); generated tokens are the
server's finish stats, else the number of token events.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from dataclasses import dataclass, field
from typing import Any, Callable
from urllib.parse import urlsplit

import aiohttp

from nanochat_core.chat import MAX_MAX_TOKENS, MAX_MESSAGE_CHARS
from nanochat_core.errors import NanochatError

__all__ = ["ServingBenchError", "run_serving_benchmark", "make_prompts"]

DISTINCT_PROMPTS = 4  # "a few": enough to mix rows, few enough that the solo pass stays short
HEALTH_INTERVAL_S = 0.05
MAX_STREAMS = 1024
MAX_SLOTS = 256  # the same bound as `--web --batch-size`
CHARS_PER_TOKEN_GUESS = 4.0  # English text in a GPT-style BPE, before calibration
CONNECT_TIMEOUT_S = 10.0
READ_TIMEOUT_S = 600.0  # one stream may idle this long between events (a slow CPU, a long queue)

# A fixed vocabulary, so the same --seed gives the same prompts on every machine and server.
WORDS = tuple("""
the model keeps a cache of keys and values so that each new token only attends to what was
already computed instead of running the whole conversation again every step while the server
batches many streams together sharing one read of every weight matrix per decode step and each
user still sees their own reply appear word by word as if they were alone on the machine with
a patient assistant explaining windows rotary embeddings softcaps logits tokenizers and queues
""".split())


class ServingBenchError(NanochatError):
    """A one-line reason the serving benchmark cannot run or finish (exit 2)."""


# ---------------------------------------------------------------- prompts and statistics


def _word_stream(seed: int, salt: int, count: int) -> list[str]:
    rng = random.Random(seed * 1_000_003 + salt)
    return [rng.choice(WORDS) for _ in range(count)]


def _text(words: list[str]) -> str:
    text = " ".join(words)
    while len(text) > MAX_MESSAGE_CHARS - 1 and " " in text:  # the rulebook's per-message cap
        text = text.rsplit(" ", 1)[0]
    return text + "?"


def make_prompt(index: int, words: int, seed: int = 0) -> str:
    """Prompt `index` (0, 1, ...): `words` words from WORDS, reproducible from `seed`. Prompt i
    with fewer words is a prefix of itself with more, so calibration only trims the end."""
    return _text(_word_stream(seed, index + 1, max(1, words)))


def make_prompts(count: int, words: int, seed: int = 0) -> list[str]:
    """`count` distinct user messages of `words` words each."""
    return [make_prompt(i, words, seed) for i in range(count)]


def _warmup_text(words: int, seed: int) -> str:
    # Salt 0 is no prompt's, so the warm-up row shares almost no prefix with the real prompts.
    return _text(_word_stream(seed, 0, max(1, words)))


def percentile(values: list[float], q: float) -> float:
    """Linear interpolation between closest ranks (numpy's default); 0.0 for no values."""
    if not values:
        return 0.0
    xs = sorted(values)
    pos = (len(xs) - 1) * q / 100
    lo = int(pos)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


def _spread(values: list[float], digits: int = 1) -> dict:
    return {"p50": round(percentile(values, 50), digits), "p95": round(percentile(values, 95), digits),
            "max": round(max(values), digits) if values else 0.0}


# ---------------------------------------------------------------- one stream over HTTP


@dataclass
class StreamResult:
    """What one /chat/completions stream gave, with client-side timestamps (perf_counter)."""

    text: str = ""
    token_events: int = 0
    stats: dict | None = None
    finish: str | None = None
    sent_at: float = 0.0
    first_token_at: float | None = None
    ended_at: float = 0.0
    prompt_index: int = 0

    @property
    def generated_tokens(self) -> int:
        if self.stats and isinstance(self.stats.get("generated_tokens"), int):
            return self.stats["generated_tokens"]
        return self.token_events  # nanochat's chat_web.py sends no stats: one event per token

    @property
    def ttft_ms(self) -> float:
        first = self.first_token_at if self.first_token_at is not None else self.ended_at
        return (first - self.sent_at) * 1000

    @property
    def decode_tok_s(self) -> float | None:
        """Tokens per second after the first one; None when there is no decode phase."""
        if self.first_token_at is None or self.generated_tokens <= 1:
            return None
        span = self.ended_at - self.first_token_at
        return (self.generated_tokens - 1) / span if span > 0 else None


@dataclass
class Client:
    """The benchmark's HTTP side: one aiohttp session against `base` (no trailing slash)."""

    base: str
    session: aiohttp.ClientSession
    health_ms: list[float] = field(default_factory=list)

    async def stream(self, message: str, max_tokens: int, prompt_index: int = 0) -> StreamResult:
        body = {"messages": [{"role": "user", "content": message}], "temperature": 0,
                "max_tokens": max_tokens}
        result = StreamResult(prompt_index=prompt_index, sent_at=time.perf_counter())
        parts: list[str] = []
        async with self.session.post(f"{self.base}/chat/completions", json=body) as resp:
            if resp.status != 200:
                raise ServingBenchError(f"POST {self.base}/chat/completions answered {resp.status}: "
                                        f"{await _detail(resp)}")
            if not resp.headers.get("Content-Type", "").startswith("text/event-stream"):
                raise ServingBenchError(f"POST {self.base}/chat/completions did not answer with an "
                                        "event stream: is this a nanochat server?")
            async for raw in resp.content:
                event = _parse_sse_line(raw)
                if event is None:
                    continue
                now = time.perf_counter()
                if "error" in event:
                    raise ServingBenchError(f"a stream failed on the server: {event['error']}")
                if event.get("token"):
                    parts.append(event["token"])
                    result.token_events += 1
                    if result.first_token_at is None:
                        result.first_token_at = now
                if "finish" in event:
                    result.finish = event["finish"]
                    result.stats = event.get("stats") if isinstance(event.get("stats"), dict) else None
                    result.ended_at = now
                if event.get("done"):
                    if not result.ended_at:
                        result.ended_at = now
                    break
            else:
                raise ServingBenchError("the server closed a stream before {\"done\": true}")
        result.text = "".join(parts)
        return result

    async def health_once(self) -> float:
        t0 = time.perf_counter()
        async with self.session.get(f"{self.base}/health") as resp:
            await resp.read()
            status = resp.status
        if status != 200:
            raise ServingBenchError(f"GET {self.base}/health answered {status}")
        return (time.perf_counter() - t0) * 1000

    async def poll_health(self, stop: asyncio.Event) -> None:
        """GET /health every ~HEALTH_INTERVAL_S until `stop`: the server must stay responsive
        while its engine is busy (generation off the event loop)."""
        while not stop.is_set():
            started = time.perf_counter()
            self.health_ms.append(await self.health_once())
            wait = HEALTH_INTERVAL_S - (time.perf_counter() - started)
            try:
                await asyncio.wait_for(stop.wait(), timeout=max(wait, 0.001))
            except asyncio.TimeoutError:
                pass

    async def json_or_none(self, path: str) -> Any:
        """GET a JSON document, None if the server has none there (or wants a key)."""
        try:
            async with self.session.get(f"{self.base}{path}") as resp:
                if resp.status != 200:
                    return None
                return await resp.json(content_type=None)
        except (aiohttp.ClientError, ValueError):
            return None


def _parse_sse_line(raw: bytes) -> dict | None:
    line = raw.strip()
    if not line.startswith(b"data:"):
        return None
    try:
        event = json.loads(line[5:].strip())
    except ValueError:
        return None
    return event if isinstance(event, dict) else None


async def _detail(resp: aiohttp.ClientResponse) -> str:
    text = (await resp.text(errors="replace")).strip()
    try:
        data = json.loads(text)
        if isinstance(data, dict) and isinstance(data.get("detail"), str):
            return data["detail"]
    except ValueError:
        pass
    return (text.splitlines()[0][:200] if text else resp.reason) or "no detail"


# ---------------------------------------------------------------- the passes


async def _calibrate(client: Client, index: int, target: int, seed: int) -> tuple[str, int | None]:
    """Prompt `index` with as many words as make the server count about `target` prompt tokens
    (its rendering adds a few special tokens), found with one-token requests; and that count.
    A server without stats gets the chars-per-token guess (count None)."""
    words = max(1, round(target * CHARS_PER_TOKEN_GUESS / 6))  # ~6 chars per word with the space
    best: tuple[int, str, int] | None = None  # (distance, text, measured)
    tried: set[int] = set()
    for _ in range(6):
        text = make_prompt(index, words, seed)
        probe = await client.stream(text, max_tokens=1)
        measured = (probe.stats or {}).get("prompt_tokens")
        if not isinstance(measured, int) or measured <= 0:
            return text, None
        if best is None or abs(measured - target) < best[0]:
            best = (abs(measured - target), text, measured)
        tried.add(words)
        if abs(measured - target) <= max(1, target * 0.02):
            break
        step = round(words * target / measured) - words  # proportional, at least one word
        words = max(1, words + (step if step else (1 if measured < target else -1)))
        if words in tried:
            break
    return best[1], best[2]


async def _concurrent_pass(client: Client, prompts: list[str], streams: int,
                           decode_tokens: int) -> tuple[list[StreamResult], float]:
    stop = asyncio.Event()
    poller = asyncio.create_task(client.poll_health(stop))
    t0 = time.perf_counter()
    tasks = [asyncio.create_task(client.stream(prompts[i % len(prompts)], decode_tokens, i % len(prompts)))
             for i in range(streams)]
    try:
        results = await asyncio.gather(*tasks)
    except BaseException:  # one stream failed: stop the others and the poller, report that one
        for task in (*tasks, poller):
            task.cancel()
        await asyncio.gather(*tasks, poller, return_exceptions=True)
        raise
    wall = time.perf_counter() - t0
    stop.set()
    await poller  # a /health that failed during the pass fails the benchmark
    return list(results), wall


async def _bench(base: str, streams: int, prompt_tokens: int, decode_tokens: int,
                 seed: int, say: Callable[[str], None], api_key: str | None = None) -> tuple[dict, Any]:
    """The passes against `base`; returns the report and the server's /stats (or None)."""
    timeout = aiohttp.ClientTimeout(total=None, connect=CONNECT_TIMEOUT_S, sock_read=READ_TIMEOUT_S)
    # limit=0: no client-side cap on connections, or streams beyond 100 would wait in aiohttp.
    connector = aiohttp.TCPConnector(limit=0)
    # read_bufsize: a finish event carrying a long reply's parts is one (long) SSE line.
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else None  # a server run with --api-key
    async with aiohttp.ClientSession(timeout=timeout, connector=connector, read_bufsize=2**20,
                                     headers=headers) as session:
        client = Client(base, session)
        try:
            await client.health_once()
        except aiohttp.ClientError as e:
            raise ServingBenchError(f"cannot reach {base}: {_client_error(e)}") from None
        except asyncio.TimeoutError:
            raise ServingBenchError(f"cannot reach {base}: no answer within {CONNECT_TIMEOUT_S:g} s") from None
        stats = await client.json_or_none("/stats")
        try:
            count = min(streams, DISTINCT_PROMPTS)
            say(f"sizing {count} prompts to ~{prompt_tokens} tokens ...")
            prompts = [(await _calibrate(client, i, prompt_tokens, seed))[0] for i in range(count)]
            # Sequential requests all land in batch row 0, so this full-length warm-up also
            # replaces the calibration probes there: the concurrent pass starts without cached
            # prefixes of its prompts.
            say("warm-up request ...")
            await client.stream(_warmup_text(len(prompts[0].split()), seed), decode_tokens)
            say(f"{streams} concurrent streams ...")
            together, wall = await _concurrent_pass(client, prompts, streams, decode_tokens)
            say(f"{len(prompts)} solo runs ...")
            solo = [await client.stream(p, decode_tokens, i) for i, p in enumerate(prompts)]
        except aiohttp.ClientError as e:
            raise ServingBenchError(f"lost {base}: {_client_error(e)}") from None
        except asyncio.TimeoutError:
            raise ServingBenchError(f"{base} sent nothing for {READ_TIMEOUT_S:g} s") from None
    return _report(together, solo, wall, client.health_ms, prompt_tokens, decode_tokens), stats


def _client_error(e: aiohttp.ClientError) -> str:
    text = str(e).splitlines()[0] if str(e) else ""
    return f"{type(e).__name__}: {text}".rstrip(": ")


def _report(together: list[StreamResult], solo: list[StreamResult], wall: float, health: list[float],
            prompt_tokens: int, decode_tokens: int) -> dict:
    generated = sum(r.generated_tokens for r in together)
    rates = [r for r in (s.decode_tok_s for s in together) if r is not None]
    with_stats = [r.stats for r in together if r.stats]
    mismatches = sum(1 for r in together if r.text != solo[r.prompt_index].text)

    def mean_stat(key: str) -> float | None:
        values = [s[key] for s in with_stats if isinstance(s.get(key), (int, float))]
        return sum(values) / len(values) if values else None

    measured_prompt = mean_stat("prompt_tokens")
    cached = mean_stat("cached_tokens")
    return {
        "mode": "serve",
        "streams": len(together),
        "distinct_prompts": len(solo),
        "prompt_tokens": round(measured_prompt) if measured_prompt is not None else prompt_tokens,
        "cached_tokens": round(cached, 1) if cached is not None else None,
        "decode_tokens": decode_tokens,
        "generated_tokens": generated,
        "aggregate_tok_s": round(generated / wall, 2) if wall > 0 else 0.0,
        "per_stream_tok_s": {"mean": round(sum(rates) / len(rates), 2) if rates else 0.0,
                             "min": round(min(rates), 2) if rates else 0.0},
        "ttft_ms": _spread([r.ttft_ms for r in together]),
        "health_ms": {**_spread(health, 2), "samples": len(health)},
        "identical_to_solo": mismatches == 0,
        "mismatches": mismatches,
        "stopped_early": sum(1 for r in together if r.finish == "stop"),
        "wall_s": round(wall, 3),
    }


def _slots(server_stats: Any) -> int | None:
    """Total generation slots a nanochat-tui server reports in /stats (None if it does not)."""
    try:
        slots = [w["slots"] for w in server_stats["workers"]]
        return sum(slots) if all(isinstance(s, int) for s in slots) else None
    except (TypeError, KeyError):
        return None


def _remote_fields(base: str, server_stats: Any, label: str | None) -> dict:
    """What a running server tells about itself in /stats (nanochat-tui: model, device, slots;
    nanochat's chat_web.py: the device only)."""
    try:
        worker = server_stats["workers"][0]
        model, device = worker.get("model"), worker.get("device")
    except (TypeError, KeyError, IndexError, AttributeError):
        model = device = None
    return {"server": base, "batch_size": _slots(server_stats), "model": label or model or base,
            "device": device, "dtype": None}


def _device_name(device: str) -> str:
    if device.startswith("cuda"):
        import torch

        return torch.cuda.get_device_name(torch.device(device))
    return device


# ---------------------------------------------------------------- the entry point


def check_url(url: str) -> str:
    """The server's base URL without a trailing slash, or ServingBenchError."""
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.query or parts.fragment:
        raise ServingBenchError(f"--url needs an address such as http://127.0.0.1:8000, not {url!r}")
    base = url.strip().rstrip("/")
    if base.endswith("/chat/completions"):  # accept the endpoint itself too
        base = base[: -len("/chat/completions")]
    return base


def check_numbers(streams: int, prompt_tokens: int, decode_tokens: int, batch_size: int | None) -> None:
    if not (1 <= streams <= MAX_STREAMS):
        raise ServingBenchError(f"--serve needs between 1 and {MAX_STREAMS} streams, not {streams}")
    if prompt_tokens < 1:
        raise ServingBenchError("--prompt-tokens must be at least 1")
    if not (1 <= decode_tokens <= MAX_MAX_TOKENS):
        raise ServingBenchError(f"--decode-tokens must be between 1 and {MAX_MAX_TOKENS} with --serve "
                                "(the API's max_tokens range)")
    if batch_size is not None and not (1 <= batch_size <= MAX_SLOTS):
        raise ServingBenchError(f"--batch-size must be between 1 and {MAX_SLOTS} with --serve")


def default_slots(streams: int) -> int:
    """One batch row per stream, within what --web accepts."""
    return min(streams, MAX_SLOTS)


def run_serving_benchmark(
    streams: int,
    prompt_tokens: int,
    decode_tokens: int,
    *,
    chat_model: Any = None,
    batch_size: int | None = None,
    url: str | None = None,
    label: str | None = None,
    seed: int = 0,
    say: Callable[[str], None] = lambda _line: None,
    api_key: str | None = None,
) -> dict:
    """Run the serving benchmark and return the report (see the module docstring).

    Exactly one of `chat_model` (a loaded ChatModel: served in-process by one worker with
    `batch_size` slots, default one per stream; closed afterwards) or `url` (a running server,
    `api_key` if it was started with --api-key). Raises ServingBenchError with one line."""
    check_numbers(streams, prompt_tokens, decode_tokens, batch_size)
    if (chat_model is None) == (url is None):
        raise ServingBenchError("give a model to serve in-process or a --url, not both or neither")
    if url is not None:
        base = check_url(url)
        result, server_stats = asyncio.run(_bench(base, streams, prompt_tokens, decode_tokens, seed, say,
                                                  api_key=api_key))
        result.update(_remote_fields(base, server_stats, label))
        return result

    slots = batch_size or default_slots(streams)
    from .config import WebConfig
    from .web import StartError, ThreadedServer, create_app, model_worker  # what `--web` builds

    worker = model_worker(0, chat_model, slots)
    info = chat_model.info
    say(f"serving {label or info.short_name} in-process with {slots} slots ...")
    import torch

    # Its only client is this benchmark, so it may hear how much of each prompt was cached.
    config = WebConfig(host="127.0.0.1", port=0, queue_size=max(64, streams), report_cached_tokens=True)
    server = ThreadedServer(create_app(config, [worker], close_backends=True), config)
    try:
        server.start()
    except (StartError, OSError, TimeoutError) as e:
        raise ServingBenchError(f"cannot start the in-process server: {e}") from None
    try:
        result, _ = asyncio.run(_bench(server.url, streams, prompt_tokens, decode_tokens, seed, say))
    finally:
        server.close()  # closes the pool, then the backend (close_backends)
    result.update({
        "server": "in-process",
        "batch_size": slots,
        "model": label or info.short_name,
        "device": _device_name(str(info.device)),
        "dtype": info.dtype,
        "params": info.params,
        "torch_threads": torch.get_num_threads(),
    })
    return result
