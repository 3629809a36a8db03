"""Serve's status of one application in plain values, for the board (replica.py), which asks
for every front door, and for a front door whose board does not answer (frontdoor.py)."""

from __future__ import annotations

from typing import Any

from ray import serve

from nanochat_core.text import compact_line

from .protocol import REPLICA_DEPLOYMENT


def serve_status(app: str) -> dict:
    """Serve's view of `app` in plain values: {"status", "states" (replica state -> count),
    "message"}, status NOT_DEPLOYED when there is no such application, UNREACHABLE (with
    "error") when Serve cannot be asked. Blocking."""
    try:
        found = serve.status().applications.get(app)
    except Exception as e:  # the controller is restarting: say so rather than fail the caller
        return {"status": "UNREACHABLE", "states": {}, "message": "", "error": compact_line(e, 200)}
    if found is None:
        return {"status": "NOT_DEPLOYED", "states": {}, "message": "",
                "error": f"no Serve application '{compact_line(app, 80)}' on the cluster"}
    deployment = found.deployments.get(REPLICA_DEPLOYMENT)
    states = {_name(k): int(v) for k, v in (deployment.replica_states.items() if deployment else ())}
    message = compact_line(deployment.message, 300) if deployment and deployment.message else ""
    return {"status": _name(found.status), "states": states, "message": message}


def _name(value: Any) -> str:
    """A Serve status or replica state (a str enum) as its plain name, e.g. RUNNING."""
    return str(getattr(value, "value", value))
