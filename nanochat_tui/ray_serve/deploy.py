"""`nanochat-tui serve --ray [ADDRESS]`: deploy the model as a Ray Serve application.

1. join the cluster (or, with no ADDRESS, start a Ray instance in this process: it ends with it);
2. start Serve without its HTTP proxies (the front doors are `nanochat-tui --web --ray`, so no
   port 8000 is taken on the cluster's nodes);
3. deploy NanochatReplica (N replicas, or MIN..MAX autoscaled) and the board, printing replica
   states as Serve reports them, and the reason when a replica cannot load the model;
4. once ready, check that every replica loaded the same checkpoint (each node resolves the
   model flags on its own files), and print how to start a front door;
5. stay attached, printing changes (Ctrl+C deletes the application), or return (--detach;
   `--stop` deletes a detached application later).
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from typing import Any, Callable, Iterator

from nanochat_core.text import compact_line

from ..config import ServeConfig
from ..console import say as console_say
from . import RayServeError
from .connect import deployment_handle, join, leave
from .protocol import BOARD_DEPLOYMENT, GRACEFUL_SHUTDOWN_S, REPLICA_DEPLOYMENT, START_FAILURE_MARK

POLL_S = 0.5
REPORTS_TIMEOUT_S = 30.0  # running replicas report to the board within about a second


def run_serve(config: ServeConfig, say: Callable[[str], None] = console_say) -> int:
    where = config.address or "a new Ray instance in this process"
    say(f"Connecting to {where} ...")
    gcs = join(config.address)
    try:
        return _serve(config, gcs, say)
    finally:
        if config.address is None:
            say("Stopping Ray ...")
        with _no_interrupts():  # a second Ctrl+C must not leave a local Ray's processes behind
            leave()


def _serve(config: ServeConfig, gcs: str, say: Callable[[str], None]) -> int:
    from ray import serve

    if config.address is None:
        # Ray turns on its token authentication for an instance ray.init() starts (the token
        # is in ~/.ray/auth_token); a front door then needs RAY_AUTH_MODE=token to join.
        auth = "RAY_AUTH_MODE=token " if os.environ.get("RAY_AUTH_MODE", "").lower() == "token" else ""
        say(f"Started Ray at {gcs}; it stops when this command does. Front doors on this machine: "
            f"{auth}nanochat-tui --web --ray {gcs}")
    else:
        say(f"Joined the Ray cluster at {gcs}")
    if config.stop:
        return _stop(config.app, say)
    gpus = _gpus_per_replica(config, say)
    _start_serve()
    existed = config.app in serve.status().applications  # an update that fails leaves the old one serving
    spec_line = _describe_plan(config, gpus)
    say(f"Deploying Serve application '{config.app}': {spec_line}")
    from .replica import ReplicaSpec, build_app

    app = build_app(ReplicaSpec(config.model, config.batch_size, config.max_context), replicas=config.replicas,
                    autoscale=config.autoscale, gpus=gpus, cpus=config.cpus_per_replica)
    failure = None
    try:
        with _Progress(config.app, say):
            try:
                serve.run(app, name=config.app, route_prefix=None, blocking=False)
            except Exception as e:
                failure = _deploy_failure(config.app, e)  # before deleting: its status says why
    except KeyboardInterrupt:
        if not existed:
            _delete(config.app, say)
        raise
    if failure is not None:
        if not existed:
            _delete(config.app, say)
        raise RayServeError(failure)
    try:
        models = _check_models(config.app, say)
    except RayServeError:
        if not existed:
            _delete(config.app, say)
        raise
    running = _running(config.app)
    say(f"Ready: {running} replica{'' if running == 1 else 's'} of {models}")
    address = config.address or gcs  # the address the user gave works for them
    if config.address is not None:
        say(f"Start a front door (any number, on nodes of this cluster): nanochat-tui --web --ray {address}"
            + ("" if config.app == "nanochat" else f" --ray-app {config.app}"))
    if config.detach:
        say(f"Detached: the application keeps running; remove it with nanochat-tui serve --ray {address} --stop"
            + ("" if config.app == "nanochat" else f" --ray-app {config.app}"))
        return 0
    say("Press Ctrl+C to stop serving (" + ("the application is deleted)." if config.address is not None
                                           else "Ray stops, and the replicas with it)."))
    return _stay_attached(config.app, say, delete=config.address is not None)


def _start_serve() -> None:
    from ray import serve

    try:
        serve.start(proxy_location="Disabled")
    except Exception as e:
        try:  # another `serve` started it at the same moment ("SERVE_CONTROLLER_ACTOR already exists")
            serve.status()
        except Exception:
            raise RayServeError(f"cannot start Ray Serve on the cluster: {compact_line(e, 200)}") from None


def _gpus_per_replica(config: ServeConfig, say: Callable[[str], None]) -> float:
    """--gpus-per-replica, else 1 when the cluster has GPUs and 0 when it has none."""
    import ray

    present = float(ray.cluster_resources().get("GPU", 0))
    if config.gpus_per_replica is not None:
        if config.gpus_per_replica > 0 and present == 0:
            say("Notice: the cluster has no GPUs right now; the replicas wait until GPU nodes join "
                "(use --gpus-per-replica 0 to run on CPUs)")
        return config.gpus_per_replica
    return 1.0 if present > 0 else 0.0


def _describe_plan(config: ServeConfig, gpus: float) -> str:
    if config.autoscale is not None:
        low, high = config.autoscale
        count = f"{low} to {high} replicas (autoscaled on streams per replica, target {config.batch_size})"
    else:
        count = f"{config.replicas} replica{'' if config.replicas == 1 else 's'}"
    return (f"{count}, each with {gpus:g} GPU and {config.cpus_per_replica:g} CPU, "
            f"{config.batch_size} stream{'' if config.batch_size == 1 else 's'} decoded together per replica")


def _deploy_failure(app: str, error: Exception) -> str:
    """Why the deployment failed, in one line: the replica's own words when it said them (in
    the deployment's status message, which is otherwise a traceback)."""
    from ray import serve

    texts = [str(error)]
    try:
        status = serve.status().applications.get(app)
        deployment = status.deployments.get(REPLICA_DEPLOYMENT) if status else None
        if deployment is not None and deployment.message:
            texts.insert(0, deployment.message)
    except Exception:
        pass
    for text in texts:
        reason = _reason(text)
        if reason:
            return reason
    return f"deploying '{compact_line(app, 80)}' failed: {compact_line(texts[-1], 300)}"


def _reason(message: str) -> str | None:
    """The line of a Serve status message that says why: the replica's START_FAILURE_MARK
    line, else the exception line that ends a traceback; None when there is none."""
    lines = [line.strip() for line in message.splitlines() if line.strip()]
    for line in lines:
        if START_FAILURE_MARK in line:
            return compact_line(line[line.index(START_FAILURE_MARK):], 400)
    if len(lines) > 1 and any("Traceback" in line for line in lines):
        return compact_line(lines[-1], 300)
    return None


def _summary(message: str) -> str:
    """A Serve status message in one short line: its first sentence(s) and the reason."""
    first = message.strip().splitlines()[0] if message.strip() else ""
    first = first.split(" Error:")[0].split(" See controller logs")[0]
    reason = _reason(message)
    return compact_line(f"{first} {reason}" if reason else first, 300)


def _board_reports(app: str) -> list[dict]:
    board = deployment_handle(BOARD_DEPLOYMENT, app)
    return board.snapshot.remote().result(timeout_s=10.0)


def _running(app: str) -> int:
    from ray import serve

    status = serve.status().applications.get(app)
    deployment = status.deployments.get(REPLICA_DEPLOYMENT) if status else None
    if deployment is None:
        return 0
    return sum(int(n) for state, n in deployment.replica_states.items() if _name(state) == "RUNNING")


def _check_models(app: str, say: Callable[[str], None]) -> str:
    """Wait for every running replica's report; RayServeError if they loaded different
    checkpoints. Returns the model's description; prints the notices (the demo model...)."""
    deadline = time.monotonic() + REPORTS_TIMEOUT_S
    reports: list[dict] = []
    while time.monotonic() < deadline:
        reports = _board_reports(app)
        if reports and len(reports) >= _running(app):
            break
        time.sleep(POLL_S)
    if not reports:
        raise RayServeError(f"the replicas of '{compact_line(app, 80)}' are running but none reported its model "
                            f"within {REPORTS_TIMEOUT_S:g} s")
    identities = {}
    for report in reports:
        stats = report["stats"]
        # Not the path: each node has its own (its Hugging Face cache, its home directory).
        key = repr(sorted((k, v) for k, v in stats["identity"].items() if k != "path"))
        identities.setdefault(key, []).append(f"{stats['model']} on {stats['node']}")
    if len(identities) > 1:
        seen = "; ".join(entries[0] for entries in identities.values())
        raise RayServeError(f"the replicas loaded different models ({compact_line(seen, 300)}): give every node "
                            "the same files (a shared --model-dir) or name the checkpoint with --hf")
    for notice in dict.fromkeys(n for report in reports for n in report["notices"]):
        say(f"  Notice: {notice}")
    limit = reports[0]["stats"].get("context_limit")
    if limit:
        say(f"Context: at most {limit} tokens per conversation, prompt and reply (--max-context; longer "
            "ones are refused with a 400)")
    return reports[0]["info"].describe()


def _stay_attached(app: str, say: Callable[[str], None], delete: bool) -> int:
    """Print status changes until Ctrl+C or SIGTERM, then delete the application (a local Ray
    instance needs no deleting: it stops, and everything on it with it)."""
    stop = threading.Event()
    previous = signal.signal(signal.SIGTERM, lambda *_: stop.set())
    last = None
    try:
        while not stop.wait(POLL_S * 2):
            line = _status_line(app)
            if line != last:
                say(line)
                last = line
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)
    if delete:
        _delete(app, say)
    return 0


def _status_line(app: str) -> str:
    from ray import serve

    try:
        status = serve.status().applications.get(app)
    except Exception as e:
        return f"Ray Serve status unavailable: {compact_line(e, 200)}"
    if status is None:
        return f"The application '{app}' is gone from the cluster"
    deployment = status.deployments.get(REPLICA_DEPLOYMENT)
    states = {_name(k): v for k, v in (deployment.replica_states.items() if deployment else ())}
    message = f" ({_summary(deployment.message)})" if deployment and deployment.message else ""
    return f"{_name(status.status)}: replicas {states or 'none'}{message}"


class _Progress:
    """Prints Serve's replica states while `serve.run` waits for the deployment."""

    def __init__(self, app: str, say: Callable[[str], None]):
        self.app, self.say = app, say
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="nanochat-serve-progress", daemon=True)

    def __enter__(self) -> "_Progress":
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join(5)

    def _run(self) -> None:
        last = None
        while not self._stop.wait(POLL_S):
            line = _status_line(self.app)
            if line != last and not line.startswith("The application"):
                self.say("  " + line)
                last = line


def _stop(app: str, say: Callable[[str], None]) -> int:
    from ray import serve

    if app not in serve.status().applications:
        raise RayServeError(f"no Serve application '{compact_line(app, 80)}' on this cluster: nothing to stop")
    _delete(app, say)
    return 0


def _delete(app: str, say: Callable[[str], None]) -> None:
    from ray import serve

    say(f"Deleting Serve application '{app}' (open streams get up to {GRACEFUL_SHUTDOWN_S:g} s to finish) ...")
    try:
        with _no_interrupts():
            serve.delete(app)
    except Exception as e:
        say(f"Could not delete '{app}': {compact_line(e, 200)}")
        return
    say("Deleted.")


@contextlib.contextmanager
def _no_interrupts() -> Iterator[None]:
    """Ctrl+C ignored meanwhile (on the main thread; elsewhere signals cannot be changed)."""
    try:
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    except ValueError:  # not the main thread
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def _name(value: Any) -> str:
    return str(getattr(value, "value", value))
