"""The models behind the server: one worker per device (or one for a --server, or one front-door
worker for --ray), and why a configuration cannot start (StartError, one line; cli.main prints it
and exits 2)."""

from __future__ import annotations

from typing import Any, Callable

from nanochat_core.errors import NanochatError
from nanochat_core.serving import Worker

from ..config import WebConfig
from ..console import say
from .hosts import check_allowed_host


class StartError(NanochatError):
    """A one-line reason the server cannot start (exit 2)."""


def check_config(config: WebConfig) -> None:
    """What must hold before anything is loaded or bound; StartError otherwise."""
    key = config.api_key
    if key is not None:
        if not key.strip():
            raise StartError("the API key is empty: give a real key with --api-key or "
                             "NANOCHAT_TUI_API_KEY (an empty key would let 'Authorization: Bearer' in)")
        if key != key.strip() or any(ord(c) < 32 or ord(c) == 127 for c in key):
            raise StartError("the API key has spaces at its ends or control characters, which an "
                             "Authorization header cannot carry: use letters, digits and punctuation")
    for entry in config.allowed_hosts:
        try:
            check_allowed_host(entry)
        except ValueError as e:
            raise StartError(str(e)) from None
    for name, value in (("header timeout", config.header_timeout), ("body timeout", config.body_timeout)):
        if not value > 0:
            raise StartError(f"the {name} must be more than 0 seconds")


def plan_devices(config: WebConfig) -> list[str]:
    """One device per worker, or StartError (more GPUs than present, -n > 1 without CUDA)."""
    import torch

    from nanochat_core.api import autodetect_device

    kind = config.model.device_type or autodetect_device()
    n = config.num_gpus
    if n < 1:
        raise StartError("--num-gpus must be at least 1")
    if kind == "cuda":
        present = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if present == 0:
            raise StartError("--device-type cuda was requested but CUDA is not available here")
        if n > present:
            raise StartError(f"--num-gpus {n} asks for more GPUs than this machine has ({present})")
        return [f"cuda:{i}" for i in range(n)]
    if n > 1:
        raise StartError(f"--num-gpus {n} needs CUDA GPUs; this machine runs on {kind}, which serves with one worker (use -n 1)")
    return [kind]


def context_budget(config: WebConfig, model: Any) -> int | None:
    """--max-context: the model's sequence_len by default (hardening: one request must not grow
    every cache row to 10x the context), 0 for none beyond the model's own positions."""
    return budget_for(config.max_context, model)


def budget_for(max_context: int | None, model: Any) -> int | None:
    """context_budget for a --max-context value (also `serve --ray`'s, in each replica)."""
    if max_context is None:
        return int(model.info.sequence_len) or None
    return max_context or None


def model_worker(gpu_id: int, model: Any, slots: int, max_context: int | None = None) -> Worker:
    """A worker for a loaded ChatModel: its requests share decode steps (a BatchedChatModel
    with `slots` rows, which also holds the context budget); with one slot and no budget, the
    model itself runs one stream at a time."""
    backend = model.batched(slots, max_context) if slots > 1 or max_context else model
    return Worker(gpu_id=gpu_id, device=str(model.info.device), backend=backend, slots=slots)


def as_worker(i: int, w: Any) -> Worker:
    """A Worker as is; any other backend (`.info`, `.chat()`) becomes worker `i` with one slot."""
    if isinstance(w, Worker):
        return w
    info = getattr(w, "info", None)
    return Worker(gpu_id=i, device=getattr(info, "device", "cpu"), backend=w, slots=1)


def close_backends(workers: list[Worker]) -> None:
    for worker in workers:
        close = getattr(worker.backend, "close", None)
        if close is not None:
            close()


def load_workers(config: WebConfig, say: Callable[[str], None] = say) -> list[Worker]:
    """Load one model per device, printing nanochat's console lines. With --server, one worker
    that forwards up to `config.max_batch` requests at once to the OpenAI-compatible server.
    With --ray, one worker that streams from the replicas of a Ray Serve application
    (nanochat_tui/ray_serve/frontdoor.py: the only path that imports Ray)."""
    if config.ray is not None:
        from ..ray_serve.frontdoor import connect_front_door

        worker = connect_front_door(config.ray, say)
        for notice in worker.backend.notices:
            say(f"  Notice: {notice}")
        say(f"Model: {worker.backend.info.describe()}")
        _say_context(worker, say, "set by nanochat-tui serve --max-context")
        return [worker]
    if config.model.server is not None:
        say("Initializing worker pool with 1 remote server...")
        backend = config.model.load(progress=lambda line: say(f"  {line}"))
        for notice in backend.notices:
            say(f"  Notice: {notice}")
        say("All 1 workers initialized!")
        say(f"Model: {backend.info.describe()}")
        return [Worker(gpu_id=0, device=backend.info.server, backend=backend, slots=config.max_batch)]
    devices = plan_devices(config)
    say(f"Initializing worker pool with {len(devices)} GPUs...")
    workers = []
    for i, device in enumerate(devices):
        say(f"Loading model on GPU {i}..." if device.startswith("cuda") else f"Loading model on {device}...")
        said: list[str] = []

        def progress(line: str) -> None:
            said.append(line)
            say(f"  {line}")

        model = config.model.load(progress=progress, device=device)
        for notice in model.notices:
            if notice not in said:  # the demo-model notice is also a progress line
                say(f"  Notice: {notice}")
        workers.append(model_worker(i, model, config.max_batch, context_budget(config, model)))
    say(f"All {len(workers)} workers initialized!")
    say(f"Model: {workers[0].backend.info.describe()}")
    _say_context(workers[0], say)
    return workers


def _say_context(worker: Worker, say: Callable[[str], None], where: str = "--max-context") -> None:
    limit = getattr(worker.backend, "context_limit", None)
    if limit is not None:
        say(f"Context: at most {limit} tokens per conversation, prompt and reply "
            f"({where}; longer ones are refused with a 400)")
