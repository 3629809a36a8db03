"""What the front door and the replicas agree on. No Ray import: both sides and the tests use it.

A chat request is one streaming call of the replica deployment's `generate(request_id,
conversation, sampling)`: the Conversation and SamplingParams are plain picklable objects, and the
stream is `Started`, then tuples of the core events (nanochat_core.events: TextDelta, ToolCall,
ToolResult, then one Done or ErrorEvent; serving.Refused for a request the rulebook or the
context refuses). A tuple holds one event, or every event that was ready when the replica sent:
a stream whose front door keeps up gets each token as it comes, one that fell behind (a busy
replica, a slow network) catches up in one message instead of one per token.
No weights and no tensors ever travel: every replica loads the model itself.
"""

from __future__ import annotations

from dataclasses import dataclass

REPLICA_DEPLOYMENT = "NanochatReplica"  # the model: one copy per replica
BOARD_DEPLOYMENT = "NanochatBoard"  # one small replica: what the replicas report, cancelled streams' ends
DEFAULT_APP = "nanochat"

# A replica reports to the board at least this often (and at once, coalesced, when it starts or
# ends a stream); the board forgets a replica it has not heard from for FORGET_AFTER_S (a dead one).
REPORT_EVERY_S = 1.0
REPORT_GAP_S = 0.05
FORGET_AFTER_S = 2.5

# The board asks Serve for the application's status (replica states) at most this often, and
# only while front doors ask for it: serve.status() costs a caller ~20 ms of CPU, which a front
# door's /health must not spend next to its streams (docs/benchmarks.md "Serving through Ray").
STATUS_MAX_AGE_S = 2.0

# A cancelled stream's last event (Done with its real stats) is left on the board by the replica,
# since Ray delivers nothing from a stream after its cancellation; the front door waits this long.
FINAL_WAIT_S = 2.0
FINAL_KEEP_S = 60.0

# A replica being stopped (the application deleted, scaled down) lets open streams finish this long.
GRACEFUL_SHUTDOWN_S = 20.0

# Serve checks each replica this often (check_health is cheap: generation runs off the replica's
# event loop), so a replica whose process died is noticed and replaced within seconds rather
# than Serve's default 10 s period. A check that takes longer than the timeout fails it.
HEALTH_CHECK_PERIOD_S = 2.0
HEALTH_CHECK_TIMEOUT_S = 15.0

# A replica that fails to load says so on a line that starts with this, so that `serve` can show
# the reason from the deployment's status message (which is otherwise a traceback).
START_FAILURE_MARK = "nanochat replica could not start: "


@dataclass(frozen=True)
class Started:
    """The first item of every stream: the replica has the request (not sent on to clients)."""

    replica: str
