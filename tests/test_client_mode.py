"""Client mode (`--server URL`): every front-end on a remote OpenAI-compatible server.

The server is this project's own `nanochat-tui --web` on loopback (a real process, real HTTP)
serving the gen5 fixture checkpoint. At temperature 0 the reply through `--server` must be the
reply the server gives directly on its nanochat SSE endpoint, in one-shot, line-chat, web and
TUI modes; a server that cannot be used is one clear line (exit 2; the banner in the TUI), and
the client path never imports torch.
"""

from __future__ import annotations

import json
import re
import socket
import subprocess
import sys
import urllib.request

import pytest

from conftest import FIXTURES, cli_command, cli_env
from web_process import web_process

GEN5 = FIXTURES / "gen5-smear-backout" / "base_dir"
PROMPT = "Hello model"
MAX_TOKENS = 20


@pytest.fixture(scope="module")
def upstream():
    """Our own web server on the gen5 fixture: the 'remote' OpenAI-compatible server."""
    with web_process("--model-dir", str(GEN5), "--device-type", "cpu", "-t", "0") as (base, _lines):
        yield base


def sse_reply(base: str, prompt: str = PROMPT, **sampling) -> str:
    """The server's own answer on nanochat's SSE endpoint (temperature 0)."""
    body = {"messages": [{"role": "user", "content": prompt}], "temperature": 0,
            "max_tokens": MAX_TOKENS, **sampling}
    req = urllib.request.Request(base + "/chat/completions", data=json.dumps(body).encode(), method="POST",
                                 headers={"Content-Type": "application/json"})
    raw = urllib.request.urlopen(req, timeout=60).read().decode("utf-8")
    events = [json.loads(block[len("data: "):]) for block in raw.split("\n\n") if block.startswith("data: ")]
    assert events[-1] == {"done": True}
    return "".join(e.get("token", "") for e in events)


def run_cli(*args: str, stdin: str | None = None, timeout: float = 90) -> subprocess.CompletedProcess:
    return subprocess.run([*cli_command(), *args], input=stdin, capture_output=True, text=True,
                          env=cli_env(), timeout=timeout)


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---------------------------------------------------------------- one-shot and line chat


def test_prompt_through_server_equals_the_servers_own_reply(upstream):
    want = sse_reply(upstream)
    assert want.strip()
    out = run_cli("-p", PROMPT, "-t", "0", "-m", str(MAX_TOKENS), "--server", upstream + "/v1")
    assert out.returncode == 0, out.stderr
    assert out.stdout == want + "\n"  # stdout carries the reply only
    assert "Loaded" in out.stderr and upstream in out.stderr
    assert re.search(r"\d+ tokens? · \d+\.\d tok/s", out.stderr)


def test_prompt_through_server_equals_the_local_model(upstream, load_fixture):
    from nanochat_core.chat import SamplingParams

    local = load_fixture("gen5-smear-backout").reply(
        [{"role": "user", "content": "Two plus two"}], SamplingParams(temperature=0.0, max_tokens=MAX_TOKENS))
    out = run_cli("-p", "Two plus two", "-t", "0", "-m", str(MAX_TOKENS), "--server", upstream + "/v1")
    assert out.returncode == 0, out.stderr
    assert out.stdout == local + "\n"


def test_plain_chat_through_server_keeps_history(upstream):
    out = run_cli("--plain", "-t", "0", "-m", str(MAX_TOKENS), "--server", upstream + "/v1",
                  stdin=f"{PROMPT}\nsecond turn\nquit\n")
    assert out.returncode == 0, out.stderr
    # piped: the prompts go to stderr, the replies alone to stdout (one line each here)
    assert out.stderr.count("Assistant: ") == 2 and out.stderr.rstrip().endswith("Goodbye!")
    assert out.stdout.splitlines()[0] == sse_reply(upstream)


def test_client_path_never_imports_torch(upstream):
    code = (
        "import sys, io, contextlib\n"
        "from nanochat_tui.cli import main\n"
        "buf = io.StringIO()\n"
        "with contextlib.redirect_stdout(buf):\n"
        f"    rc = main(['-p', 'hi', '-t', '0', '-m', '4', '--server', {upstream + '/v1'!r}])\n"
        "print(rc, 'torch' in sys.modules, 'textual' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=cli_env(), timeout=60)
    assert out.stdout.split()[-3:] == ["0", "False", "False"], out.stdout + out.stderr


# ---------------------------------------------------------------- one-line errors


def test_unreachable_server_is_one_line_exit_2():
    port = closed_port()
    out = run_cli("-p", "hi", "--server", f"http://127.0.0.1:{port}/v1")
    assert out.returncode == 2
    assert out.stderr.strip() == (f"nanochat-tui: error: cannot reach http://127.0.0.1:{port}/v1: "
                                  "connection refused (is the server running?)")
    assert out.stdout == ""


def test_unknown_model_is_one_line_exit_2(upstream):
    out = run_cli("-p", "hi", "--server", upstream + "/v1", "--model", "no-such-model")
    assert out.returncode == 2
    assert out.stderr.count("\n") == 1
    assert out.stderr.startswith(f"nanochat-tui: error: model 'no-such-model' not found on {upstream}/v1 (available: ")


def test_rulebook_applies_before_anything_is_sent(upstream):
    out = run_cli("-p", "x" * 8001, "--server", upstream + "/v1")
    assert out.returncode == 2
    assert out.stderr.strip() == ("nanochat-tui: error: Message 0 is too long. Maximum 8000 characters "
                                  "allowed per message (your message, 8,001 characters)")
    out = run_cli("-p", "hi", "-t", "3", "--server", upstream + "/v1")
    assert out.returncode == 2 and "Temperature must be between 0.0 and 2.0" in out.stderr


@pytest.mark.parametrize("args, words", [
    (["--server", "http://127.0.0.1:1/v1", "-g", "d20"], "-g/--model-tag chooses a local checkpoint and cannot be used with --server"),
    (["--server", "http://127.0.0.1:1/v1", "--model-dir", "/x", "-d", "float32"], "--model-dir, -d/--dtype chooses a local checkpoint"),
    (["--api-key", "k"], "--api-key is for client mode: add --server URL"),
    (["--model", "m"], "--model is for client mode: add --server URL"),
    (["--server", ""], "--server needs a URL"),
    (["--server", "gpu-box:8000"], "--server must be an http:// or https:// URL"),
])
def test_bad_client_flags_are_one_line_errors(args, words):
    out = run_cli("-p", "hi", *args)
    assert out.returncode == 2, out.stderr
    assert out.stderr.count("\n") == 1 and out.stderr.startswith("nanochat-tui: error: ")
    assert words in out.stderr


def test_web_client_flags_are_checked(upstream):
    out = run_cli("--web", "-p", "0", "--server", upstream + "/v1", "-n", "2")
    assert out.returncode == 2 and "--num-gpus is for local models" in out.stderr
    out = run_cli("--web", "-p", "0", "--model", "m")
    assert out.returncode == 2 and "--model is for client mode" in out.stderr


# ---------------------------------------------------------------- a server that needs a key


@pytest.fixture(scope="module")
def keyed_upstream():
    with web_process("--model-dir", str(GEN5), "--device-type", "cpu", "-t", "0", "--api-key", "s3cret") as (base, _):
        yield base


def test_missing_and_wrong_keys_are_one_line_errors(keyed_upstream):
    out = run_cli("-p", "hi", "--server", keyed_upstream + "/v1")
    assert out.returncode == 2 and out.stderr.count("\n") == 1
    assert "requires an API key" in out.stderr and "pass --api-key" in out.stderr
    out = run_cli("-p", "hi", "--server", keyed_upstream + "/v1", "--api-key", "wrong")
    assert out.returncode == 2 and out.stderr.count("\n") == 1 and "refused the API key" in out.stderr
    out = run_cli("-p", PROMPT, "-t", "0", "-m", str(MAX_TOKENS), "--server", keyed_upstream + "/v1",
                  "--api-key", "s3cret")
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip()


# ---------------------------------------------------------------- the browser UI in front of a server


def test_web_mode_in_front_of_a_server(upstream):
    with web_process("--server", upstream + "/v1", "-t", "0") as (front, lines):
        out = "\n".join(lines)
        assert "Initializing worker pool with 1 remote server..." in out
        assert "All 1 workers initialized!" in out and f"{upstream}/v1" in out
        assert sse_reply(front) == sse_reply(upstream)
        health = json.loads(urllib.request.urlopen(front + "/health", timeout=10).read())
        assert health["ready"] is True
        page = urllib.request.urlopen(front + "/", timeout=10).read().decode()
        assert "Ask anything" in page
        # the front's own OpenAI API answers for the upstream model, under its id
        models = [json.loads(urllib.request.urlopen(base + "/v1/models", timeout=10).read())["data"][0]["id"]
                  for base in (upstream, front)]
        assert models[0] == models[1] == "nanochat-d4"


# ---------------------------------------------------------------- the full-screen app


async def test_tui_through_server(upstream):
    from test_app import SIZE, replies, send, wait_for

    from nanochat_core.chat import SamplingParams
    from nanochat_core.text import sanitize_for_terminal
    from nanochat_tui.app import NanochatApp
    from nanochat_tui.config import ChatConfig, ModelSelection

    want = sse_reply(upstream)
    config = ChatConfig(model=ModelSelection(server=upstream + "/v1", explicit=True),
                        sampling=SamplingParams(temperature=0.0, max_tokens=MAX_TOKENS))
    app = NanochatApp(config, animate=False)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: app.backend is not None or app.load_error is not None, timeout=30)
        assert app.load_error is None, app.load_error
        await send(pilot, PROMPT)
        assert replies(app)[0].text == sanitize_for_terminal(want)
        assert re.match(r"^\d+ tokens? · \d+\.\d tok/s", app.status.text)


async def test_tui_unreachable_server_shows_the_banner():
    from test_app import SIZE, wait_for

    from nanochat_tui.app import NanochatApp
    from nanochat_tui.config import ChatConfig, ModelSelection

    port = closed_port()
    app = NanochatApp(ChatConfig(model=ModelSelection(server=f"http://127.0.0.1:{port}/v1", explicit=True)),
                      animate=False)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: app.load_error is not None, timeout=30)
        assert app.banner.display
        assert f"cannot reach http://127.0.0.1:{port}/v1: connection refused" in app.load_error
