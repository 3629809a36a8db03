"""What runs IN the cluster: the two Ray Serve deployments of `nanochat-tui serve --ray`.

NanochatReplica - one copy of the model per replica, on the GPU (or fraction) Ray placed it on.
  Inside is the same engine and the same worker pool as a local `--web` worker: `model_worker()`
  (a ChatModel, or a BatchedChatModel sharing decode steps between `batch_size` streams) behind a
  nanochat_core.serving.WorkerPool. So every checkpoint generation and every fidelity guarantee of
  the local engine holds on the cluster, and a replica is as busy as its pool says.
  - It loads the model itself (ModelSelection.load: a path every node can read, or --hf into
    each node's own Hugging Face cache). No weights pass through Ray's object store.
  - `generate()` streams one request's events. When Ray cancels the call (the front door's Stop,
    its client going away), the pool's generation is cancelled: the engine stops within one
    decode step, as locally. Ray delivers nothing from a stream after its cancellation, so the
    replica leaves that stream's real last event (Done with its stats) on the board for the
    front door to pick up.
  - Serve sends a replica at most `batch_size` streams at once (max_ongoing_requests); more wait
    in the callers' Serve routers, which send them to whichever replica frees a slot first.
NanochatBoard - one small replica that reserves no CPU or GPU: what every replica reports (its
  slots, active and waiting streams, counters, model), read by every front door for /health and
  /stats together with Serve's status of the application (asked here at most once per
  STATUS_MAX_AGE_S however many front doors load balancers poll; a front door's look is then one
  small call); and cancelled streams' last events. It holds nothing that matters across a restart: replicas report again
  within REPORT_EVERY_S.
"""

from __future__ import annotations

import asyncio
import os
import time
from dataclasses import dataclass
from typing import Any, AsyncIterator

from ray import serve

from nanochat_core.chat import SamplingParams
from nanochat_core.conversation import Conversation
from nanochat_core.events import Done, ErrorEvent, Event
from nanochat_core.serving import PoolBusy, PoolClosed, WorkerPool
from nanochat_core.text import compact_line

from ..config import ModelSelection
from .protocol import (
    BOARD_DEPLOYMENT,
    FINAL_KEEP_S,
    FORGET_AFTER_S,
    GRACEFUL_SHUTDOWN_S,
    HEALTH_CHECK_PERIOD_S,
    HEALTH_CHECK_TIMEOUT_S,
    REPLICA_DEPLOYMENT,
    REPORT_EVERY_S,
    REPORT_GAP_S,
    START_FAILURE_MARK,
    STATUS_MAX_AGE_S,
    Started,
)
from .status import serve_status

DRAIN_TIMEOUT_S = 10.0  # a cancelled generation's engine thread returns within one step; this is a backstop


@dataclass(frozen=True)
class ReplicaSpec:
    """What every replica needs to start: which model, and how many streams it decodes together."""

    model: ModelSelection
    batch_size: int
    max_context: int | None = None  # --max-context, as for --web (None: the model's sequence_len)


class ReplicaStartError(RuntimeError):
    """The model could not be loaded; its message starts with START_FAILURE_MARK."""


@serve.deployment(name=REPLICA_DEPLOYMENT)
class NanochatReplica:
    async def __init__(self, spec: ReplicaSpec, board: Any) -> None:
        from nanochat_tui.web.workers import budget_for, model_worker  # the local --web rules

        self._board = board
        self._id = serve.get_replica_context().replica_id.unique_id
        self._started = time.time()
        try:
            # Off the replica's event loop: Serve's health checks keep being answered meanwhile.
            self._model = await asyncio.to_thread(spec.model.load)
        except Exception as e:  # CheckpointError and kin: one line, found again by `serve`
            raise ReplicaStartError(START_FAILURE_MARK + compact_line(e, 300)) from None
        self._worker = model_worker(0, self._model, spec.batch_size, budget_for(spec.max_context, self._model))
        # The pool's queue only absorbs the moment between Serve seeing a stream end and the
        # engine thread giving its slot back (Serve never sends more than batch_size at once).
        self._pool = WorkerPool([self._worker], queue_size=spec.batch_size)
        self._counts = {"requests": 0, "served": 0, "cancelled": 0, "errors": 0, "produced_tokens": 0}
        self._node = _node_address()
        self._changed = asyncio.Event()
        self._reporter = asyncio.get_running_loop().create_task(self._report_loop())

    # ---- the stream

    async def generate(self, request_id: str, conversation: Conversation,
                       sampling: SamplingParams) -> AsyncIterator[Any]:
        """Started, then the core events of one reply in tuples (see protocol.py)."""
        self._counts["requests"] += 1
        try:
            generation = self._pool.submit(conversation, sampling)
        except (PoolBusy, PoolClosed) as e:
            self._counts["errors"] += 1
            yield ErrorEvent(f"the replica cannot take this request: {e}")
            return
        self._poke()
        last: Event | None = None
        try:
            yield Started(self._id)
            async for event in generation:
                events = (event, *generation.ready())  # what piled up meanwhile goes along
                if isinstance(events[-1], (Done, ErrorEvent)):
                    last = events[-1]
                yield events
        except (asyncio.CancelledError, GeneratorExit):
            generation.cancel()  # the engine stops within one decode step
            last = await self._last_event(generation)
            if last is not None:
                await self._leave_final(request_id, last)
            raise
        finally:
            generation.cancel()  # no-op once finished
            self._count(last)
            self._poke()

    async def _last_event(self, generation: Any) -> Event | None:
        try:
            async with asyncio.timeout(DRAIN_TIMEOUT_S):
                async for event in generation:
                    if isinstance(event, (Done, ErrorEvent)):
                        return event
        except (TimeoutError, asyncio.CancelledError):
            pass
        return None

    async def _leave_final(self, request_id: str, event: Event) -> None:
        try:
            async with asyncio.timeout(DRAIN_TIMEOUT_S):
                await self._board.put_final.remote(request_id, event)
        except Exception:  # the board is restarting: the front door makes do without the stats
            pass

    def _count(self, last: Event | None) -> None:
        if isinstance(last, Done):
            self._counts["cancelled" if last.reason == "cancelled" else "served"] += 1
            self._counts["produced_tokens"] += last.stats.generated_tokens
        elif isinstance(last, ErrorEvent):
            self._counts["errors"] += 1

    # ---- what the board shows

    def _poke(self) -> None:
        self._changed.set()

    def report(self) -> dict:
        info = self._model.info
        return {
            "replica": self._id,
            "node": self._node,
            "pid": os.getpid(),
            "device": info.device,
            "model": info.short_name,
            "identity": info.identity(),
            "slots": self._worker.slots,
            "context_limit": getattr(self._worker.backend, "context_limit", None),
            "active": self._pool.active_requests,
            "waiting": self._pool.waiting_requests,
            "started": round(self._started, 3),
            **self._counts,
        }

    async def _report_loop(self) -> None:
        while True:
            try:
                await asyncio.wait_for(self._changed.wait(), REPORT_EVERY_S)
            except TimeoutError:
                pass
            self._changed.clear()
            try:
                async with asyncio.timeout(5.0):
                    await self._board.report.remote(self._id, self.report(), self._model.info,
                                                    list(self._model.notices))
            except asyncio.CancelledError:
                raise
            except Exception:  # the board is (re)starting: the next report goes through
                pass
            await asyncio.sleep(REPORT_GAP_S)  # reports of a busy replica are coalesced

    async def check_health(self) -> None:
        """Serve's periodic health check: a replica whose pool has closed or whose reporter
        stopped is restarted by Serve."""
        if self._pool.closed:
            raise RuntimeError("the replica's worker pool is closed")
        if self._reporter.done():
            raise RuntimeError("the replica's reporter stopped")


@serve.deployment(name=BOARD_DEPLOYMENT, num_replicas=1, max_ongoing_requests=10_000,
                  ray_actor_options={"num_cpus": 0})
class NanochatBoard:
    def __init__(self) -> None:
        self._replicas: dict[str, tuple[float, dict, Any, list]] = {}
        self._finals: dict[str, tuple[float, Event]] = {}
        self._arrived: dict[str, asyncio.Event] = {}
        self._app = serve.get_replica_context().app_name
        self._status: tuple[float, dict] | None = None
        self._refresh: asyncio.Task | None = None

    async def report(self, replica: str, stats: dict, info: Any, notices: list) -> None:
        self._replicas[replica] = (time.monotonic(), stats, info, notices)

    async def snapshot(self) -> list[dict]:
        """The replicas heard from within FORGET_AFTER_S: {"stats", "info", "notices", "age_s"}."""
        now = time.monotonic()
        for replica, (at, *_rest) in list(self._replicas.items()):
            if now - at > FORGET_AFTER_S:
                del self._replicas[replica]
        return [{"stats": stats, "info": info, "notices": notices, "age_s": round(now - at, 3)}
                for at, stats, info, notices in self._replicas.values()]

    async def view(self) -> dict:
        """{"replicas": snapshot(), "serve": the application's status (see serve_status)}. The
        status may be up to STATUS_MAX_AGE_S old (plus one status call); only the first view
        waits for it."""
        now = time.monotonic()
        if self._status is None or now - self._status[0] > STATUS_MAX_AGE_S:
            if self._refresh is None or self._refresh.done():
                self._refresh = asyncio.get_running_loop().create_task(self._refresh_status())
            if self._status is None:
                await asyncio.shield(self._refresh)
        return {"replicas": await self.snapshot(), "serve": self._status[1] if self._status else None}

    async def _refresh_status(self) -> None:
        status = await asyncio.to_thread(serve_status, self._app)
        self._status = (time.monotonic(), status)

    async def put_final(self, request_id: str, event: Event) -> None:
        now = time.monotonic()
        self._finals = {k: v for k, v in self._finals.items() if now - v[0] < FINAL_KEEP_S}
        self._finals[request_id] = (now, event)
        waiter = self._arrived.pop(request_id, None)
        if waiter is not None:
            waiter.set()

    async def take_final(self, request_id: str, wait_s: float) -> Event | None:
        """The last event of cancelled stream `request_id`, waiting up to `wait_s` for it."""
        if request_id not in self._finals:
            waiter = self._arrived.setdefault(request_id, asyncio.Event())
            try:
                await asyncio.wait_for(waiter.wait(), wait_s)
            except TimeoutError:
                pass
            finally:
                self._arrived.pop(request_id, None)
        found = self._finals.pop(request_id, None)
        return found[1] if found else None


def build_app(spec: ReplicaSpec, *, replicas: int, autoscale: tuple[int, int] | None,
              gpus: float, cpus: float) -> Any:
    """The Serve application: `replicas` (or autoscale MIN..MAX) copies of the model, each with
    `gpus` GPUs and `cpus` CPUs reserved (fractions share a device), and the board."""
    options: dict[str, Any] = {
        "ray_actor_options": {"num_cpus": cpus, "num_gpus": gpus},
        "max_ongoing_requests": spec.batch_size,
        "graceful_shutdown_timeout_s": GRACEFUL_SHUTDOWN_S,
        "health_check_period_s": HEALTH_CHECK_PERIOD_S,
        "health_check_timeout_s": HEALTH_CHECK_TIMEOUT_S,
    }
    if autoscale is not None:
        low, high = autoscale
        # Scale up when streams wait for a slot: a replica is "full" at its batch (docs/scaling.md).
        options["autoscaling_config"] = {"min_replicas": low, "max_replicas": high, "initial_replicas": max(low, 1),
                                         "target_ongoing_requests": spec.batch_size}
    else:
        options["num_replicas"] = replicas
    return NanochatReplica.options(**options).bind(spec, NanochatBoard.bind())


def _node_address() -> str:
    import ray

    try:
        return ray.util.get_node_ip_address()
    except Exception:  # pragma: no cover - not inside a Ray worker
        return "?"
