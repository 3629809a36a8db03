"""Joining a Ray cluster from this process (the `serve` command, a `--web --ray` front door).

- Addresses: "auto" (the cluster this machine is a node of, as `ray start` recorded it) or the
  head's HOST:PORT (its GCS port, 6379 by default). A front door and `serve` are Ray drivers, so
  they run on a node of the cluster; Ray Client addresses (ray://) are refused: Serve's streaming
  handles need a driver on a node (docs/scaling.md).
- An address nobody listens on is checked with a plain TCP connection first: Ray itself would
  retry for minutes, writing warnings, before giving up.
- Ray's console output in this process goes through the one sanitizer: its Python loggers get a
  SafeLogFormatter handler, and the lines its driver prints about workers and replicas that died
  (raw text from the cluster) are logged as single safe lines instead.
"""

from __future__ import annotations

import logging
import socket
import sys
from typing import Any

from nanochat_core.text import SafeLogFormatter, compact_line

from . import RayServeError

PROBE_TIMEOUT_S = 5.0
log = logging.getLogger("nanochat_tui.ray")


def check_address(address: str) -> str:
    """The address as given, or RayServeError for one this process cannot use."""
    value = address.strip()
    if not value:
        raise RayServeError("--ray needs the cluster's address: HOST:PORT of the head (e.g. head-node:6379) or auto")
    if value.startswith("ray://"):
        raise RayServeError("ray:// (Ray Client) addresses cannot stream from Serve replicas: run this on a node of "
                            "the cluster (ray start --address HEAD:6379) and give HEAD:6379 or auto")
    if value != "auto":
        host, sep, port = value.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise RayServeError(f"--ray {compact_line(value, 100)}: expected HOST:PORT (the head's GCS port, 6379 "
                                "by default) or auto")
    return value


def probe(address: str) -> None:
    """A TCP connection to HOST:PORT, or RayServeError saying nothing listens there."""
    host, _, port = address.rpartition(":")
    host = host.strip("[]")
    try:
        with socket.create_connection((host, int(port)), timeout=PROBE_TIMEOUT_S):
            return
    except OSError as e:
        reason = compact_line(getattr(e, "strerror", None) or e, 120)
        raise RayServeError(f"cannot reach the Ray cluster at {compact_line(address, 100)}: {reason} (is its head "
                            "running? ray start --head --port PORT)") from None


def join(address: str | None) -> str:
    """Connect this process to the cluster at `address` ("auto", HOST:PORT), or with None start
    a Ray instance inside this process that ends with it. Returns the GCS address (HOST:PORT)
    other processes can join with."""
    import ray

    quiet_ray_console()
    if address is not None:
        address = check_address(address)
        if address != "auto":
            probe(address)
    if ray.is_initialized():
        return ray.get_runtime_context().gcs_address
    options: dict[str, Any] = {"log_to_driver": False, "configure_logging": False}
    if address is None:
        options["include_dashboard"] = False
    try:
        ray.init(address=address, **options)
    except (ConnectionError, RuntimeError, ValueError) as e:
        where = "on this machine" if address in (None, "auto") else f"at {compact_line(address, 100)}"
        raise RayServeError(f"cannot join the Ray cluster {where}: {compact_line(e, 200)}") from None
    quiet_ray_console()  # ray.init (and Serve, on first use) may have added handlers of their own
    return ray.get_runtime_context().gcs_address


_handles: dict[tuple[str, str], Any] = {}


def deployment_handle(deployment: str, app: str) -> Any:
    """Serve's handle to `deployment` of `app`, remembered so that leave() can stop its router
    first: a router still polling the controller after ray.shutdown() makes Ray's core worker
    print a raw error line and exit the process with status 1."""
    from ray import serve

    key = (deployment, app)
    if key not in _handles:
        _handles[key] = serve.get_deployment_handle(deployment, app_name=app)
    return _handles[key]


def leave() -> None:
    """Stop the handles' routers, then disconnect (a Ray instance join(None) started stops)."""
    import ray

    while _handles:
        _, handle = _handles.popitem()
        try:
            handle.shutdown()
        except Exception:  # never used (no router), or the cluster is gone: nothing to stop
            pass
    if ray.is_initialized():
        ray.shutdown()


_RAY_LOGGERS = ("ray", "ray.serve")


def quiet_ray_console() -> None:
    """Ray's records as one safe line each on stderr, warnings and up; the lines Ray's driver
    prints from the cluster (a worker that died, with its exit detail) through the same path."""
    import ray.serve  # noqa: F401 - importing Serve installs its own stream handler: replace it after

    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(SafeLogFormatter("%(asctime)s %(name)s: %(message)s", "%H:%M:%S"))
    handler.setLevel(logging.WARNING)
    # ray.init() clears the "ray" logger's handlers while it starts, and what it logs meanwhile
    # would reach stderr raw through logging's last resort: make that one sanitize too.
    logging.lastResort = handler
    for name in _RAY_LOGGERS:
        logger = logging.getLogger(name)
        for old in list(logger.handlers):
            logger.removeHandler(old)
        logger.addHandler(handler)
        logger.setLevel(logging.WARNING)
        logger.propagate = False
    _route_driver_prints()


def _route_driver_prints() -> None:
    """ray._private.worker.print_to_stdstream writes what the cluster publishes (raylet errors,
    worker output) straight to stdout. It is private, so it is replaced only where it exists,
    with a function that logs each line through the sanitizing handler above."""
    try:
        from ray._private import worker
    except ImportError:  # pragma: no cover - another Ray layout: nothing to route
        return
    if getattr(worker.print_to_stdstream, "_nanochat_safe", False):
        return

    def print_safely(data: dict, ignore_prefix: bool = False, **_: Any) -> None:
        source = data.get("pid", "ray")
        for line in data.get("lines", ()):
            logging.getLogger("ray").warning("(%s) %s", source, compact_line(line, 400))

    print_safely._nanochat_safe = True  # type: ignore[attr-defined]
    worker.print_to_stdstream = print_safely
