"""`nanochat-tui --web --ray ADDRESS`: the web server as a stateless front door to the replicas.

The page, nanochat's SSE API and the OpenAI API are the local server's own (nanochat_tui/web),
with one worker whose backend is a `RayBackend`: its blocking `chat(conversation, sampling,
cancel)` (the nanochat_core.serving contract, run on a worker slot thread) makes one streaming
call through a Ray Serve handle and yields the replica's events as they arrive. Ray's router
picks the replica (the least busy of two it samples) and holds a request while every replica's
slots are taken. The front door keeps nothing between requests, so any number of them can run
behind a load balancer.

- Stop, a client that goes away, a server shutting down: the pool sets the request's cancel
  event, a small watcher thread cancels the Ray call at once, Ray cancels the replica's stream
  and the replica's engine stops within one decode step. The stream then ends with the
  replica's own Done("cancelled") and its stats (left on the board, see replica.py), or a Done
  made here from what arrived when the board cannot say.
- A replica that dies mid-reply: Ray raises ActorDiedError in the stream; the reply ends with an
  ErrorEvent (SSE: an error event then done; OpenAI: an error chunk then [DONE]), never a hang.
  A request that had received nothing yet is sent again (Ray routes it to a live replica).
- /health and /stats: the replicas as Ray Serve and the board see them (`cluster_health`,
  `cluster_stats`; routes_nanochat asks a backend that has them).
"""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from typing import Any, Callable, Iterator, Sequence

from nanochat_core.chat import SamplingParams
from nanochat_core.conversation import Conversation
from nanochat_core.events import Done, ErrorEvent, Event, GenerationStats, TextDelta
from nanochat_core.model_info import ModelInfo
from nanochat_core.serving import Worker
from nanochat_core.text import compact_line

from ..config import RayTarget
from . import RayServeError
from .connect import deployment_handle, join
from .protocol import BOARD_DEPLOYMENT, FINAL_WAIT_S, REPLICA_DEPLOYMENT, Started

FRONT_DOOR_STREAMS = 128  # streams one front door forwards at once; more wait in its --queue-size queue
FIRST_EVENT_TIMEOUT_S = 300.0  # no replica took the request in this long (none running, all busy)
RETRIES_BEFORE_FIRST_EVENT = 2  # a request whose replica died before sending anything goes again
# /health and /stats read a view of the cluster that a background thread refreshes every
# VIEW_REFRESH_S while anyone keeps asking (within VIEW_KEEP_WARM_S): a health check then never
# waits for Ray, and its cost (a call to the board) does not land on a stream starting at the same
# moment (docs/benchmarks.md "Serving through Ray Serve").
VIEW_REFRESH_S = 1.0
VIEW_KEEP_WARM_S = 30.0
WAIT_POLL_S = 0.5


class RayBackend:
    """The backend of a front door's one worker (module docstring)."""

    def __init__(self, target: RayTarget, gcs_address: str, replicas: Any, board: Any,
                 info: ModelInfo, notices: Sequence[str], context_limit: int | None = None):
        self.target = target
        self.gcs_address = gcs_address
        self.info = info
        self.notices = list(notices)
        self.context_limit = context_limit  # the replicas' (serve --max-context); they refuse longer ones
        self._replicas = replicas.options(stream=True)
        self._board = board
        self._lock = threading.Lock()
        self._unassigned = 0  # requests sent that no replica has started yet (waiting in Ray's router)
        self._view: dict | None = None
        self._view_lock = threading.Lock()
        self._asked_at = 0.0
        self._refresher: threading.Thread | None = None
        self._closed = threading.Event()
        # Replicas this front door saw die (Ray raised ActorDiedError in their stream): left out
        # of /stats at once, rather than when the board stops hearing from them.
        self._dead: dict[str, float] = {}

    # ---- one request

    def chat(self, request: "Conversation | Sequence[Any]", sampling: SamplingParams | None = None,
             cancel: threading.Event | None = None) -> Iterator[Event]:
        conversation = request if isinstance(request, Conversation) else Conversation.from_messages(request)
        sampling = sampling or SamplingParams()
        cancel = cancel or threading.Event()
        request_id = uuid.uuid4().hex
        began = time.monotonic()
        text: list[str] = []
        first_text_at: float | None = None
        for attempt in range(RETRIES_BEFORE_FIRST_EVENT + 1):
            response = self._replicas.generate.remote(request_id, conversation, sampling)
            watch = _Watch(cancel, response, FIRST_EVENT_TIMEOUT_S)
            started = received = False
            replica = None
            self._count_unassigned(+1)
            try:
                for item in response:
                    if isinstance(item, Started):
                        started, replica = True, item.replica
                        watch.started()
                        self._count_unassigned(-1)
                        continue
                    for event in item:  # a tuple of the events that were ready (protocol.py)
                        received = True
                        if isinstance(event, TextDelta):
                            text.append(event.text)
                            first_text_at = first_text_at or time.monotonic()
                        yield event
                        if isinstance(event, (Done, ErrorEvent)):
                            return
                yield ErrorEvent("the replica ended the reply without a result")
                return
            except Exception as e:  # Ray's errors: cancelled, replica died, back pressure
                if cancel.is_set():
                    yield self._cancelled_end(request_id, started, text, began, first_text_at)
                    return
                if _replica_gone(e) and replica is not None:
                    self._mark_dead(replica)
                if watch.timed_out:
                    yield ErrorEvent(f"no replica started this reply within {FIRST_EVENT_TIMEOUT_S:g} s "
                                     "(none running, or all busy): see /stats")
                    return
                if _replica_gone(e) and not received and attempt < RETRIES_BEFORE_FIRST_EVENT:
                    continue  # nothing reached the client yet: Ray routes it to a live replica
                yield ErrorEvent(_describe(e, mid_reply=received))
                return
            finally:
                watch.stop()
                if not started:
                    self._count_unassigned(-1)

    def _cancelled_end(self, request_id: str, started: bool, text: list[str], began: float,
                       first_text_at: float | None) -> Event:
        """The replica's own last event of a cancelled stream (the board has it), else a Done
        made from what arrived (a request no replica had started generated nothing)."""
        if started:
            try:
                final = self._board.take_final.remote(request_id, FINAL_WAIT_S).result(timeout_s=FINAL_WAIT_S + 3)
            except Exception:
                final = None
            if isinstance(final, (Done, ErrorEvent)):
                return final
        now = time.monotonic()
        joined = "".join(text)
        stats = GenerationStats(0, 0, (first_text_at or now) - began, now - began)
        return Done("cancelled", stats, parts=({"type": "text", "text": joined},) if joined else ())

    def _mark_dead(self, replica: str) -> None:
        with self._lock:
            now = time.monotonic()
            self._dead = {r: t for r, t in self._dead.items() if now - t < 60} | {replica: now}

    def _count_unassigned(self, delta: int) -> None:
        with self._lock:
            self._unassigned += delta

    # ---- the cluster's view, for /health and /stats

    def view(self) -> dict:
        """Serve's status of the application and the board's replicas, less those this front
        door saw die. The first call looks at the cluster (blocking: run it off the event loop);
        later ones read what the refresher keeps up to date. Never raises."""
        with self._view_lock:
            self._asked_at = time.monotonic()
            if self._view is None:
                self._view = self._look()
                if not self._closed.is_set():
                    self._refresher = threading.Thread(target=self._refresh, name="nanochat-ray-view",
                                                       daemon=True)
                    self._refresher.start()
            view = self._view
        with self._lock:
            dead = set(self._dead)
        return {**view, "replicas": [r for r in view["replicas"] if r["replica"] not in dead]}

    def _refresh(self) -> None:
        """Every VIEW_REFRESH_S while asked; after VIEW_KEEP_WARM_S without a caller it stops
        and forgets the view (the next caller looks again)."""
        while not self._closed.wait(VIEW_REFRESH_S):
            if time.monotonic() - self._asked_at > VIEW_KEEP_WARM_S:
                with self._view_lock:
                    if time.monotonic() - self._asked_at > VIEW_KEEP_WARM_S:
                        self._view = None
                        return
            view = self._look()
            with self._view_lock:
                if self._view is not None:
                    self._view = view

    def _look(self) -> dict:
        """One call to the board: its replicas and the Serve status it keeps (replica.py). When
        the board does not answer (the application was deleted, or it is restarting), Serve is
        asked here."""
        from .status import serve_status

        app = self.target.app
        taken = time.monotonic()  # what the board says is at least this recent
        try:
            seen = self._board.view.remote().result(timeout_s=5.0)
            status, replicas = seen["serve"], seen["replicas"]
        except Exception as e:
            status, replicas = serve_status(app), []
            if status["status"] not in ("NOT_DEPLOYED", "UNREACHABLE"):
                status["error"] = f"the application's board did not answer: {compact_line(e, 200)}"
        return {
            "app": app,
            "taken": taken,
            **status,
            "running": status["states"].get("RUNNING", 0),
            "replicas": sorted((r["stats"] for r in replicas), key=lambda s: (s["node"], s["started"])),
        }

    async def cluster_health(self, pool: Any) -> dict:
        """nanochat's /health fields for the cluster: `num_gpus` is the replicas Ray runs,
        `available_workers` those with a free slot; `ray` says more."""
        view = await asyncio.to_thread(self.view)
        replicas = view["replicas"]
        available = sum(1 for r in replicas if r["active"] < r["slots"])
        return {
            "status": "ok",
            "ready": view["running"] > 0 and not pool.closed,
            "num_gpus": view["running"],
            "available_workers": available,
            "ray": self._ray_summary(view),
        }

    async def cluster_stats(self, pool: Any) -> dict:
        """nanochat's /stats fields with one entry per replica (its node, pid, slots, active and
        waiting streams, counters), this front door's own streams, and `ray`."""
        view = await asyncio.to_thread(self.view)
        workers = []
        for i, r in enumerate(view["replicas"]):
            workers.append({
                "gpu_id": i, "device": f"{r['device']}@{r['node']}", "slots": r["slots"], "active": r["active"],
                "served": r["served"], "waiting": r["waiting"], "replica": r["replica"], "node": r["node"],
                "pid": r["pid"], "model": r["model"], "requests": r["requests"], "cancelled": r["cancelled"],
                "errors": r["errors"], "produced_tokens": r["produced_tokens"],
            })
        available = sum(1 for w in workers if w["active"] < w["slots"])
        return {
            "total_workers": view["running"],
            "available_workers": available,
            "busy_workers": len(workers) - available,
            "workers": workers,
            "active_requests": pool.active_requests,
            "waiting_requests": pool.waiting_requests,
            "queue_size": pool.queue_size,
            "ray": self._ray_summary(view),
        }

    def _ray_summary(self, view: dict) -> dict:
        summary = {"address": self.gcs_address, "app": view["app"], "status": view["status"],
                   "replica_states": view["states"], "waiting_for_a_replica": self._unassigned,
                   # how old this view is: the refresher looks every VIEW_REFRESH_S
                   "view_age_s": round(time.monotonic() - view["taken"], 3)}
        for key in ("message", "error"):
            if view.get(key):
                summary[key] = view[key]
        return summary

    def close(self) -> None:
        from .connect import leave

        self._closed.set()
        if self._refresher is not None:
            self._refresher.join(10)  # a look in progress ends within its 5 s timeout
        leave()


class _Watch:
    """Cancels `response` as soon as `cancel` is set, or when no replica has started it within
    `first_event_timeout` seconds. A thread of its own, since the slot thread is blocked in Ray's
    iterator; it ends within POLL_S of stop(). stop() also lets go of the response at once: a
    Ray object freed by this thread after the front door left the cluster would make Ray's core
    worker print a raw error line and exit the process with status 1."""

    POLL_S = 0.1

    def __init__(self, cancel: threading.Event, response: Any, first_event_timeout: float):
        self.timed_out = False
        self._cancel, self._response = cancel, response
        self._deadline: float | None = time.monotonic() + first_event_timeout
        self._stopped = False
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="nanochat-ray-watch", daemon=True)
        self._thread.start()

    def started(self) -> None:
        self._deadline = None

    def stop(self) -> None:
        with self._lock:
            self._stopped = True
            self._response = None

    def _run(self) -> None:
        while not self._stopped:
            if self._cancel.wait(self.POLL_S):
                self._cancel_call()  # not once stopped
                return
            deadline = self._deadline
            if deadline is not None and time.monotonic() > deadline:
                self.timed_out = True
                self._cancel_call()
                return

    def _cancel_call(self) -> None:
        with self._lock:
            if self._response is None:
                return
            try:
                self._response.cancel()
            except Exception:  # already finished or its replica is gone: nothing left to stop
                pass


def _name(value: Any) -> str:
    """A Serve status or replica state (a str enum) as its plain name, e.g. RUNNING."""
    return str(getattr(value, "value", value))


def _replica_gone(error: Exception) -> bool:
    from ray.exceptions import RayActorError

    try:
        from ray.serve.exceptions import ReplicaUnavailableError
    except ImportError:  # pragma: no cover - older Ray
        ReplicaUnavailableError = RayActorError  # noqa: N806
    return isinstance(error, (RayActorError, ReplicaUnavailableError))


def _describe(error: Exception, *, mid_reply: bool) -> str:
    """One line for a Ray error in a stream (Ray's own text, which spans many lines, cut to its
    first line and sanitized)."""
    from ray.serve.exceptions import BackPressureError

    first = compact_line(str(error).strip().splitlines()[0] if str(error).strip() else "", 200)
    name = type(error).__name__
    if isinstance(error, BackPressureError):
        return f"the cluster is busy: every replica's queue is full; try again shortly ({name})"
    if _replica_gone(error):
        where = "mid-reply" if mid_reply else "before replying"
        return (f"the model replica serving this reply stopped {where} ({name}: {first}); "
                "Ray is restarting it and other replicas take new requests: try again")
    return f"the Ray cluster failed this request ({name}: {first})"


def connect_front_door(target: RayTarget, say: Callable[[str], None]) -> Worker:
    """Join the cluster, wait until the application has a running replica, and return the one
    worker whose backend streams from it. RayServeError (one line) when it cannot."""
    say(f"Connecting to the Ray cluster at {target.address} ...")
    gcs = join(target.address)
    say(f"Joined the Ray cluster at {gcs}; waiting for Serve application '{target.app}' ...")
    _check_deployed(target)
    replicas = deployment_handle(REPLICA_DEPLOYMENT, target.app)
    board = deployment_handle(BOARD_DEPLOYMENT, target.app)
    info, notices, limit = _wait_for_replica(target, board, say)
    backend = RayBackend(target, gcs, replicas, board, info, notices, limit)
    view = backend.view()
    say(f"Serving through Ray: application '{target.app}', {view['running']} replica"
        f"{'' if view['running'] == 1 else 's'} running")
    return Worker(gpu_id=0, device=f"ray:{target.app}@{gcs}", backend=backend, slots=FRONT_DOOR_STREAMS)


def _check_deployed(target: RayTarget) -> None:
    """RayServeError, saying what to do, unless the application exists (in any state)."""
    from ray import serve

    try:
        apps = serve.status().applications
    except Exception as e:
        raise RayServeError(f"cannot read Ray Serve's status on the cluster: {compact_line(e, 200)}") from None
    if target.app not in apps:
        names = ", ".join(sorted(apps)) or "none"
        raise RayServeError(f"no Serve application '{compact_line(target.app, 80)}' on the Ray cluster at "
                            f"{compact_line(target.address, 100)} (applications there: {compact_line(names, 200)}): "
                            f"deploy the model with nanochat-tui serve --ray {compact_line(target.address, 100)}")


def _wait_for_replica(target: RayTarget, board: Any,
                      say: Callable[[str], None]) -> tuple[ModelInfo, list[str], int | None]:
    """Until one replica runs and has reported its model (and context limit); says what Serve
    reports meanwhile."""
    from ray import serve

    said = None
    while True:
        app = serve.status().applications.get(target.app)
        if app is None:
            raise RayServeError(f"the Serve application '{compact_line(target.app, 80)}' was deleted")
        state = _name(app.status)
        if state == "DEPLOY_FAILED":
            raise RayServeError(f"the Serve application '{compact_line(target.app, 80)}' failed to deploy: "
                                f"{compact_line(app.message, 300)} (see nanochat-tui serve)")
        try:
            reports = board.snapshot.remote().result(timeout_s=5.0)
        except Exception:
            reports = []
        if reports:
            first = reports[0]
            return first["info"], list(first["notices"]), first["stats"].get("context_limit")
        deployment = app.deployments.get(REPLICA_DEPLOYMENT)
        states = {_name(k): v for k, v in (deployment.replica_states.items() if deployment else ())}
        line = f"  {state}: replicas {states or 'none yet'}"
        if line != said:
            say(line)
            said = line
        time.sleep(WAIT_POLL_S)
