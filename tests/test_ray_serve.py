"""Ray Serve: `nanochat-tui serve --ray` replicas and `nanochat-tui --web --ray` front doors.

On one machine, on CPUs, over loopback: the tests start a local Ray cluster (`ray start --head`,
3 logical CPUs, no GPU), deploy with the real CLI two applications of two replicas each (half a CPU
per replica): the bundled demo model (with `--max-context 256`), and a random-weight model with
no context budget whose replies run to their 4096-token limit (long enough to cancel or kill one
mid-reply), and start a real `--web --ray` front door for each. What is checked: the official `openai` SDK streams through a front door;
16 concurrent streams each equal their solo run at temperature 0; a client that goes away
cancels the generation ON the replica (its counters say so); a replica killed mid-reply ends
that stream with an error then done (SSE) or an error chunk (OpenAI), and later requests
succeed while Ray restarts it. No test process imports Ray: everything goes through the CLI
and HTTP, as a user would.

Marked `ray` (deselect with -m 'not ray'); CI installs Ray with the test extra and must run
them. The CLI checks at the end need no cluster (the "not installed" path fakes a missing Ray).
"""

from __future__ import annotations

import ast
import concurrent.futures
import contextlib
import http.client
import importlib.util
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from conftest import REPO, cli_command, cli_env, wait_for
from web_process import web_process

RAY_INSTALLED = importlib.util.find_spec("ray") is not None
if not RAY_INSTALLED and os.environ.get("CI"):
    raise RuntimeError("CI must run the Ray tests, but Ray is not installed (the test extra installs it)")
needs_ray = pytest.mark.skipif(not RAY_INSTALLED, reason="Ray is not installed: pip install 'nanochat-tui[ray]'")

LONG_APP = "long"  # the random-weight model: every reply runs to max_tokens
LONG_MAX_TOKENS = 4096
DEMO_CONTEXT = 256  # the demo application's --max-context (the model's own is 512)
DEADLINE_S = 120.0


# ---------------------------------------------------------------- the cluster (module scope)


def free_port() -> int:
    """A free port outside Ray's default worker port range (10002-19999)."""
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if not 10002 <= port <= 19999:
            return port


def ray_env(**extra: str) -> dict:
    """The CLI's environment, with no Ray settings of the developer's: no RAY_ADDRESS, and Ray's
    token authentication off (a token in ~/.ray would otherwise turn it on for the head only)."""
    env = cli_env(RAY_USAGE_STATS_ENABLED="0", RAY_AUTH_MODE="disabled", **extra)
    env.pop("RAY_ADDRESS", None)
    env.pop("RAY_AUTH_TOKEN", None)
    return env


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """A local Ray head (`ray start --head --block`, its own process group); yields its address.
    3 logical CPUs: two applications of two half-CPU replicas, and room for one more replica.
    The replicas find no checkpoint in NANOCHAT_BASE_DIR (an empty folder) and so load the
    bundled demo model unless told otherwise."""
    temp = tempfile.mkdtemp(prefix="nct-ray-", dir="/tmp")  # short: Ray puts unix sockets under it
    empty = tmp_path_factory.mktemp("no-checkpoints")
    port = free_port()
    ray_bin = Path(sys.executable).parent / "ray"
    proc = subprocess.Popen(
        [str(ray_bin), "start", "--head", "--block", "--node-ip-address", "127.0.0.1", "--port", str(port),
         "--num-cpus", "3", "--num-gpus", "0", "--include-dashboard=false", "--disable-usage-stats",
         "--temp-dir", temp],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        # no drain on SIGTERM (it exists for Kubernetes upgrades): the test's teardown is immediate
        env=ray_env(NANOCHAT_BASE_DIR=str(empty), RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S="0"),
        start_new_session=True,
    )

    def listening() -> bool:
        assert proc.poll() is None, "ray start --head exited"
        with socket.socket() as s:
            s.settimeout(1)
            return s.connect_ex(("127.0.0.1", port)) == 0

    try:
        wait_for(listening, "the Ray head to listen", timeout=90)
        yield f"127.0.0.1:{port}"
    finally:
        # SIGTERM: `ray start --block` stops what it started. Ray's workers (the replicas) have
        # process groups of their own but stay in the session started here: whatever of it is
        # still running after a while is killed by its pid, so no test run leaves Ray behind.
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass
        try:
            wait_for(lambda: not session_members(proc.pid), "Ray's processes to exit", timeout=15, every=0.2)
        except AssertionError:
            for pid in session_members(proc.pid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        shutil.rmtree(temp, ignore_errors=True)


def session_members(sid: int) -> list[int]:
    """The pids of the processes in session `sid` (Linux /proc)."""
    pids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:  # it exited meanwhile
            continue
        if int(fields[3]) == sid:  # after "(comm)": state, ppid, pgrp, session
            pids.append(int(stat.parent.name))
    return pids


def run_cli(*args: str, timeout: float = 300, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([*cli_command(), *args], capture_output=True, text=True, timeout=timeout,
                          env=env or ray_env())


@pytest.fixture(scope="module")
def deployed(cluster, tmp_path_factory):
    """Both applications, deployed at once by `nanochat-tui serve --ray ... --detach`."""
    from nanochat_core.synthetic import write_random_checkpoint

    long_dir = tmp_path_factory.mktemp("long-model")
    write_random_checkpoint(long_dir, "d2:128:512")
    common = ["--replicas", "2", "--cpus-per-replica", "0.5", "--batch-size", "4", "--detach"]
    procs = [
        subprocess.Popen([*cli_command(), "serve", "--ray", cluster, "--max-context", str(DEMO_CONTEXT), *common],
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=ray_env()),
        subprocess.Popen([*cli_command(), "serve", "--ray", cluster, "--ray-app", LONG_APP, "--model-dir",
                          str(long_dir), "--max-context", "0", *common], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                         text=True, env=ray_env()),
    ]
    outputs = [p.communicate(timeout=300)[0] for p in procs]
    for proc, out in zip(procs, outputs):
        assert proc.returncode == 0, out
    return {"demo": outputs[0], "long": outputs[1], "long_dir": long_dir}


def front_door(*args: str, timeout: float = 120, env: dict | None = None, ended: dict | None = None):
    """`nanochat-tui --web --ray ...` (web_process with the Ray tests' environment)."""
    return web_process(*args, timeout=timeout, env=env or ray_env(), ended=ended)


@pytest.fixture(scope="module")
def demo_door(cluster, deployed):
    with front_door("--ray", cluster, "-t", "0") as (base, lines):
        yield base, lines


@pytest.fixture(scope="module")
def long_door(cluster, deployed):
    with front_door("--ray", cluster, "--ray-app", LONG_APP, "-t", "0") as (base, lines):
        yield base, lines


# ---------------------------------------------------------------- HTTP helpers


def get_json(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=30) as resp:
        return json.loads(resp.read())


def sse_request(base: str, prompt: str, **fields) -> http.client.HTTPResponse:
    """POST /chat/completions; returns the response to read events from as they arrive."""
    host, port = base.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=60)
    body = json.dumps({"messages": [{"role": "user", "content": prompt}], **fields})
    conn.request("POST", "/chat/completions", body=body, headers={"Content-Type": "application/json"})
    resp = conn.getresponse()
    assert resp.status == 200, resp.read()
    resp.conn = conn  # type: ignore[attr-defined]
    return resp


def events(resp: http.client.HTTPResponse):
    for raw in resp:
        line = raw.decode("utf-8").strip()
        if line.startswith("data: "):
            yield json.loads(line[len("data: "):])


def sse_reply(base: str, prompt: str, max_tokens: int = 48) -> str:
    resp = sse_request(base, prompt, temperature=0, max_tokens=max_tokens)
    got = list(events(resp))
    resp.conn.close()
    assert got[-1] == {"done": True}, got[-3:]
    assert not any("error" in e for e in got), got
    return "".join(e.get("token", "") for e in got)


def replicas(base: str) -> list[dict]:
    return get_json(base + "/stats")["workers"]


def fresh_replicas(base: str) -> list[dict]:
    """/stats's replicas from a look at the cluster taken after this call began (the front door
    refreshes its view every second; `view_age_s` says how old the one it answers with is)."""
    mark = time.monotonic()

    def look() -> list[dict] | None:
        sent = time.monotonic()
        stats = get_json(base + "/stats")
        return stats["workers"] if sent - stats["ray"]["view_age_s"] > mark else None

    return wait_for(look, "a view of the cluster newer than the call", timeout=30)


# ---------------------------------------------------------------- the demo model through a front door


@needs_ray
@pytest.mark.ray
def test_serve_reports_the_replicas_and_how_to_start_a_front_door(deployed, cluster):
    out = deployed["demo"]
    assert "Ready: 2 replicas of demo model" in out, out
    assert f"nanochat-tui --web --ray {cluster}" in out
    assert "using the bundled demo model" in out  # the replicas' notice, shown once


@needs_ray
@pytest.mark.ray
def test_health_and_stats_report_the_replicas_from_ray(demo_door):
    base, lines = demo_door
    assert any("2 replicas running" in line for line in lines), lines
    health = get_json(base + "/health")
    assert health["ready"] is True and health["num_gpus"] == 2 and health["available_workers"] == 2
    assert health["ray"]["replica_states"] == {"RUNNING": 2} and health["ray"]["app"] == "nanochat"
    stats = get_json(base + "/stats")
    assert stats["total_workers"] == 2 and len(stats["workers"]) == 2
    for worker in stats["workers"]:
        assert worker["slots"] == 4 and worker["active"] == 0 and worker["pid"] > 0
        assert worker["model"].startswith("demo model")
    assert len({w["pid"] for w in stats["workers"]}) == 2  # two processes, one model each


@needs_ray
@pytest.mark.ray
def test_openai_sdk_streams_through_the_front_door(demo_door):
    import openai

    from nanochat_core import load_chat_model
    from nanochat_core.chat import SamplingParams
    from nanochat_core.resources import demo_model_dir

    base, _ = demo_door
    client = openai.OpenAI(base_url=base + "/v1", api_key="unused", max_retries=0)
    assert [m.id for m in client.models.list()] == ["nanochat-demo"]
    messages = [{"role": "user", "content": "What can you do?"}]
    stream = client.chat.completions.create(model="nanochat-demo", messages=messages, stream=True,
                                            temperature=0, max_tokens=40,
                                            stream_options={"include_usage": True})
    pieces, finish, usage = [], None, None
    for chunk in stream:
        if chunk.usage is not None:
            usage = chunk.usage
        for choice in chunk.choices:
            pieces.append(choice.delta.content or "")
            finish = choice.finish_reason or finish
    local = load_chat_model(base_dir=demo_model_dir(), device="cpu")
    want = local.reply(messages, SamplingParams(temperature=0.0, max_tokens=40))
    assert "".join(pieces) == want  # the replica's engine is the local engine
    assert finish in ("stop", "length") and usage.completion_tokens > 0


@needs_ray
@pytest.mark.ray
def test_the_replicas_context_budget_refuses_a_long_conversation(deployed, demo_door):
    """serve --max-context holds in the replicas: a whole reply is a 400, a stream (whose
    headers went out before a replica looked at it) ends with an invalid_request_error chunk."""
    import openai

    base, lines = demo_door
    budget = f"Context: at most {DEMO_CONTEXT} tokens per conversation"
    assert budget in deployed["demo"] and any(budget in line for line in lines), lines
    client = openai.OpenAI(base_url=base + "/v1", api_key="unused", max_retries=0)
    messages = [{"role": "user", "content": " ".join(["word"] * (DEMO_CONTEXT * 2))}]
    too_long = f"Maximum {DEMO_CONTEXT} tokens allowed"
    with pytest.raises(openai.BadRequestError, match=too_long):
        client.chat.completions.create(model="nanochat-demo", messages=messages, max_tokens=4)
    stream = client.chat.completions.create(model="nanochat-demo", messages=messages, max_tokens=4, stream=True)
    with pytest.raises(openai.APIError, match=too_long):
        for _chunk in stream:
            pass


@needs_ray
@pytest.mark.ray
def test_sixteen_concurrent_streams_equal_their_solo_runs(demo_door):
    base, _ = demo_door
    prompts = [f"{question} ({i})" for i, question in enumerate(
        ["Hello", "What is 12*13?", "How do I quit?", "Tell me about the web mode",
         "Which keys can I use?", "What is nanochat?", "How do I load my checkpoint?", "Thanks!"] * 2)]
    before = {w["replica"]: w["served"] for w in replicas(base)}
    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        together = list(pool.map(lambda p: sse_reply(base, p), prompts))

    def served_all() -> dict | None:  # /stats is a view refreshed every second (frontdoor.py)
        now = {w["replica"]: w["served"] for w in replicas(base)}
        return now if sum(now.values()) - sum(before.values()) >= len(prompts) else None

    after = wait_for(served_all, "/stats to count the 16 streams", timeout=30)
    solo = [sse_reply(base, p) for p in prompts]  # after: so the concurrent pass found no warm cache
    assert together == solo
    assert all(text for text in solo)
    # a replica takes 4 streams at once (--batch-size 4): Ray must have spread them over both
    assert len(after) == 2 and all(after[r] > before.get(r, 0) for r in after), (before, after)


@needs_ray
@pytest.mark.ray
def test_front_door_stops_on_ctrl_c_with_status_0_and_no_raw_ray_lines(cluster, deployed):
    """Its Serve handles are shut down before it leaves the cluster: a router left polling
    makes Ray's core worker print a raw error line and end the process with status 1."""
    ended: dict = {}
    with front_door("--ray", cluster, "-t", "0", ended=ended) as (base, _lines):
        assert sse_reply(base, "Hello", max_tokens=4)
    assert ended["returncode"] == 0, ended["output"]
    assert "core_worker" not in ended["output"] and "\x1b" not in ended["output"], ended["output"]


# ---------------------------------------------------------------- cancel and failure (the long model)


def stream_until_first_token(base: str, prompt: str = "Hello") -> tuple[http.client.HTTPResponse, object]:
    resp = sse_request(base, prompt, temperature=0, max_tokens=LONG_MAX_TOKENS)
    it = events(resp)
    first = next(it)
    assert "token" in first, first
    return resp, it


def serving(base: str) -> list[dict]:
    return [w for w in replicas(base) if w["active"] > 0]


@needs_ray
@pytest.mark.ray
def test_client_disconnect_cancels_the_generation_on_the_replica(long_door):
    base, _ = long_door
    wait_for_two_replicas(base)
    before = {w["replica"]: w for w in fresh_replicas(base)}
    resp, _it = stream_until_first_token(base)
    resp.conn.close()  # the client goes away at its first token

    def cancelled_on_a_replica():
        for now in replicas(base):
            was = before.get(now["replica"])
            if was and now["cancelled"] == was["cancelled"] + 1 and now["active"] == 0:
                return now, was
        return None

    replica, was = wait_for(cancelled_on_a_replica, "a replica to count the cancelled stream", timeout=DEADLINE_S)
    # It stopped where the cancel reached it: not served, and far from the reply's 4096 tokens
    # (the application has no context budget, so only the cancel can end it early).
    produced = replica["produced_tokens"] - was["produced_tokens"]
    assert 0 < produced < LONG_MAX_TOKENS // 2, produced
    assert replica["served"] == was["served"]


def kill_the_serving_replica(base: str) -> dict:
    busy = wait_for(lambda: serving(base), "the replica to report the stream", timeout=DEADLINE_S)
    assert len(busy) == 1
    os.kill(busy[0]["pid"], signal.SIGKILL)
    return busy[0]


def wait_for_two_replicas(base: str) -> None:
    """Two replicas running, as Serve and the board both see it (a killed one's replacement has
    loaded the model and reported)."""
    wait_for(lambda: get_json(base + "/health")["ray"]["replica_states"] == {"RUNNING": 2}
             and len(replicas(base)) == 2 and all(w["active"] == 0 for w in replicas(base)),
             "Ray to run two replicas again", timeout=DEADLINE_S, every=0.5)


@needs_ray
@pytest.mark.ray
def test_replica_killed_mid_stream_ends_the_sse_stream_and_later_requests_succeed(long_door):
    base, _ = long_door
    wait_for_two_replicas(base)
    resp, it = stream_until_first_token(base)
    killed = kill_the_serving_replica(base)
    rest = list(it)  # must end: an error event, then done (never a hang: the socket times out at 60 s)
    resp.conn.close()
    assert rest[-1] == {"done": True}, rest[-3:]
    errors = [e["error"] for e in rest if "error" in e]
    assert len(errors) == 1 and "replica" in errors[0] and "\n" not in errors[0], errors
    # The next requests go to the live replica while Ray restarts the dead one.
    text = wait_for(lambda: _try_reply(base), "a request to succeed after the kill", timeout=DEADLINE_S, every=0.2)
    assert text
    assert killed["replica"] not in {w["replica"] for w in replicas(base)}  # this front door saw it die
    wait_for_two_replicas(base)  # Ray restarted it


def _try_reply(base: str) -> str | None:
    try:
        return sse_reply(base, "Hello", max_tokens=8)
    except AssertionError:
        return None


@needs_ray
@pytest.mark.ray
def test_replica_killed_mid_stream_ends_the_openai_stream_with_an_error_chunk(long_door):
    import openai

    base, _ = long_door
    wait_for_two_replicas(base)
    client = openai.OpenAI(base_url=base + "/v1", api_key="unused", max_retries=0)
    stream = client.chat.completions.create(messages=[{"role": "user", "content": "Hello"}], model="nanochat-d2",
                                            stream=True, temperature=0, max_tokens=LONG_MAX_TOKENS)
    chunks = iter(stream)
    assert next(chunks).choices[0].delta.role == "assistant"
    next(chunks)  # some text: the replica is generating
    kill_the_serving_replica(base)
    with pytest.raises(openai.APIError, match="replica"):
        for _chunk in chunks:
            pass
    assert wait_for(lambda: _try_reply(base), "a request to succeed after the kill", timeout=DEADLINE_S, every=0.2)


@needs_ray
@pytest.mark.ray
def test_stop_sequence_ends_the_reply_with_the_replicas_own_usage(long_door):
    """A stop sequence cancels the stream; Ray delivers nothing after a cancellation, so the
    usage comes from the replica's own last event (left on the board), not from the front door."""
    import openai

    base, _ = long_door
    head = sse_reply(base, "Hello", max_tokens=40)
    stop = next(head[i:i + 3] for i in range(5, len(head) - 3)  # not at the start: some text comes first
                if head.find(head[i:i + 3]) == i and "\ufffd" not in head[i:i + 3])
    client = openai.OpenAI(base_url=base + "/v1", api_key="unused", max_retries=0)
    reply = client.chat.completions.create(messages=[{"role": "user", "content": "Hello"}], model="nanochat-d2",
                                           temperature=0, max_tokens=LONG_MAX_TOKENS, stop=[stop])
    assert reply.choices[0].message.content == head[:head.find(stop)]
    assert reply.choices[0].finish_reason == "stop"
    assert reply.usage.prompt_tokens > 0  # the replica's stats (a Done made by the front door has none)
    assert 0 < reply.usage.completion_tokens < LONG_MAX_TOKENS


@needs_ray
@pytest.mark.ray
def test_serve_stop_deletes_the_application_and_the_front_door_says_not_ready(cluster, long_door):
    base, _ = long_door
    result = run_cli("serve", "--ray", cluster, "--ray-app", LONG_APP, "--stop")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Deleted." in result.stdout
    # /health reads a view refreshed every second (frontdoor.py): the deletion shows within it
    health = wait_for(lambda: (h := get_json(base + "/health"))["ray"]["status"] == "NOT_DEPLOYED" and h,
                      "the front door to see the application gone", timeout=30)
    assert health["ready"] is False and health["num_gpus"] == 0, health
    again = run_cli("serve", "--ray", cluster, "--ray-app", LONG_APP, "--stop")
    assert again.returncode == 2 and "nothing to stop" in again.stderr


# ---------------------------------------------------------------- the CLI's Ray paths


@needs_ray
@pytest.mark.ray
def test_front_door_for_a_missing_application_is_one_line(cluster, deployed):
    result = run_cli("--web", "--ray", cluster, "--ray-app", "nope", "-p", "0", timeout=120)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "no Serve application 'nope'" in lines[0] and "nanochat-tui serve --ray" in lines[0]


@needs_ray
@pytest.mark.ray
def test_a_replica_that_cannot_load_says_why_in_one_line(cluster, deployed, tmp_path):
    # The replica's error names the path, escape sequence and all: it reaches the terminal
    # only through the sanitizer (ESC shown as ^[).
    missing = tmp_path / "no-such-\x1b[31mdir"
    result = run_cli("serve", "--ray", cluster, "--ray-app", "broken", "--model-dir", str(missing),
                     "--cpus-per-replica", "0.25", "--detach")
    assert result.returncode == 2, result.stdout + result.stderr
    error = result.stderr.strip().splitlines()
    shown = str(missing).replace("\x1b", "^[")
    assert len(error) == 1 and shown in error[0] and "could not start" in error[0], error
    assert "Traceback" not in result.stdout + result.stderr
    assert "\x1b" not in result.stdout + result.stderr


@needs_ray
@pytest.mark.ray
def test_unreachable_cluster_is_one_line():
    port = free_port()
    for args in (["--web", "--ray", f"127.0.0.1:{port}"], ["serve", "--ray", f"127.0.0.1:{port}"]):
        result = run_cli(*args, timeout=60)
        assert result.returncode == 2
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and "cannot reach the Ray cluster" in lines[0], lines


@pytest.mark.parametrize("args, words", [
    (["serve"], "serve needs --ray"),
    (["serve", "--ray", "auto", "--replicas", "0"], "--replicas must be at least 1"),
    (["serve", "--ray", "auto", "--replicas", "2", "--autoscale", "1:3"], "give one"),
    (["serve", "--ray", "auto", "--autoscale", "3:2"], "MIN <= MAX"),
    (["serve", "--ray", "auto", "--autoscale", "two"], "expected MIN:MAX"),
    (["serve", "--ray", "auto", "--gpus-per-replica", "1.5"], "--gpus-per-replica"),
    (["serve", "--ray", "auto", "--cpus-per-replica", "0"], "--cpus-per-replica"),
    (["serve", "--ray", "--detach"], "--detach needs a cluster ADDRESS"),
    (["serve", "--ray", "auto", "--device-type", "cuda", "--gpus-per-replica", "0"], "needs GPUs"),
    (["--web", "--ray", "auto", "-g", "d20"], "-g/--model-tag"),
    (["--web", "--ray", "auto", "--batch-size", "4"], "--batch-size"),
    (["--web", "--ray", "auto", "--max-context", "100"], "--max-context"),
    (["serve", "--ray", "auto", "--max-context", "-1"], "--max-context must be 0"),
    (["--web", "--ray", "auto", "--server", "http://x/v1"], "give one"),
    (["--web", "--ray-app", "x"], "--ray-app is for --ray"),
])
def test_ray_flag_mistakes_are_one_line(args, words, capsys):
    from nanochat_tui import cli

    assert cli.main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("nanochat-tui: error:") and words in err[0], err


def env_without_ray(folder: Path, **extra: str) -> tuple[dict, Path]:
    """The CLI's environment with a stand-in `ray` package first on the path that cannot be
    imported (as without the extra) and leaves a file behind when something tries."""
    fake = folder / "ray"
    fake.mkdir()
    marker = folder / "ray-was-imported"
    (fake / "__init__.py").write_text(f"open({str(marker)!r}, 'a').write('x')\n"
                                      "raise ImportError(\"No module named 'ray'\")\n")
    path = os.pathsep.join([str(folder), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return cli_env(PYTHONPATH=path, **extra), marker


def test_without_ray_the_flags_say_how_to_install_it(tmp_path):
    env, _ = env_without_ray(tmp_path)
    for args in (["serve", "--ray", "auto"], ["--web", "--ray", "auto"]):
        result = subprocess.run([*cli_command(), *args], capture_output=True, text=True, env=env, timeout=60)
        assert result.returncode == 2
        assert result.stderr.strip().splitlines() == [
            f"nanochat-tui: error: {'serve --ray' if args[0] == 'serve' else '--ray'} needs Ray Serve, which is "
            "not installed: pip install 'nanochat-tui[ray]'"]


def test_prompt_and_web_without_ray_flags_never_try_to_import_ray(tmp_path):
    """The real one-shot and web modes (the demo model), as processes: not even an attempt."""
    env, marker = env_without_ray(tmp_path, NANOCHAT_BASE_DIR=str(tmp_path / "none"))
    result = subprocess.run([*cli_command(), "-p", "Hello", "-t", "0", "-m", "4"], capture_output=True,
                            text=True, env=env, timeout=120)
    assert result.returncode == 0 and result.stdout.strip(), result.stderr
    with front_door("-t", "0", env=env) as (base, _lines):
        assert sse_reply(base, "Hello", max_tokens=4)
        assert get_json(base + "/health")["ready"] is True
    assert not marker.exists()


def test_help_imports_neither_ray_nor_torch():
    code = ("import sys\nfrom nanochat_tui import cli\n"
            "for argv in (['serve', '--help'], ['--web', '--help']):\n"
            "    try:\n        cli.main(argv)\n    except SystemExit:\n        pass\n"
            "bad = [m for m in ('ray', 'torch') if m in sys.modules]\n"
            "print('IMPORTED', bad)\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=cli_env(), timeout=60)
    assert "IMPORTED []" in result.stdout, result.stdout + result.stderr
    assert "--ray [ADDRESS]" in result.stdout and "--gpus-per-replica" in result.stdout
    assert "--ray ADDRESS" in result.stdout  # the web parser's flag


def test_only_the_ray_serve_package_imports_ray():
    allowed = REPO / "nanochat_tui" / "ray_serve"
    offenders = []
    for path in [*(REPO / "nanochat_core").rglob("*.py"), *(REPO / "nanochat_tui").rglob("*.py")]:
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) and node.level == 0 else [])
            if any(n == "ray" or n.startswith("ray.") for n in names) and allowed not in path.parents:
                offenders.append(f"{path.relative_to(REPO)}:{node.lineno}")
    assert offenders == []
