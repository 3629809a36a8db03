"""The engine as a Ray Serve application, and `--web --ray`'s front door to it (optional extra:
`pip install 'nanochat-tui[ray]'`). docs/scaling.md "Ray Serve" is the user's view.

    nanochat-tui serve --ray HEAD:6379 --replicas 4      replicas of OUR engine on the cluster's GPUs
    nanochat-tui --web --ray HEAD:6379                   a stateless front door (page, SSE, OpenAI API)

Modules (only this package imports Ray, and only when a --ray flag is used; this file and
protocol.py import no Ray, so `--help` and every other mode stay as they were):

    protocol.py    names and small types the two sides share (no Ray import)
    connect.py     joining a cluster from this process: address checks, Ray's console output
    replica.py     the two deployments that run IN the cluster: NanochatReplica, NanochatBoard
    frontdoor.py   RayBackend: the web server's worker backend that streams from the replicas
    deploy.py      `nanochat-tui serve --ray`: deploy, wait, report, stay attached or detach
"""

from __future__ import annotations

from nanochat_core.errors import NanochatError

INSTALL_HINT = "pip install 'nanochat-tui[ray]'"


class RayServeError(NanochatError):
    """Why a Ray Serve command cannot go on, in one line (cli.main prints it, exit 2)."""


def require_ray(flag: str = "--ray") -> None:
    """RayServeError (one line) unless Ray Serve can be imported. Imports it, so call this only
    once a --ray flag was given."""
    try:
        import ray  # noqa: F401
        from ray import serve  # noqa: F401
    except ImportError:
        raise RayServeError(f"{flag} needs Ray Serve, which is not installed: {INSTALL_HINT}") from None
