"""`nanochat-tui bench --serve N`: concurrent streams through the web server, in-process or --url.

Tiny models and numbers so each run takes seconds; no timing assertions (a loaded CI machine
must not fail these), only that the figures exist, add up and that every stream equals its solo
run at temperature 0."""

from __future__ import annotations

import asyncio
import json
import re
import socket
import subprocess
import sys
import threading
import time

import pytest
from aiohttp import web

from conftest import FIXTURES, cli_command, cli_env
from nanochat_tui.bench_serving import make_prompts, percentile
from nanochat_tui.cli import main
from nanochat_tui.web import ThreadedServer

GEN5_BASE = FIXTURES / "gen5-smear-backout" / "base_dir"
SMALL = ["--serve", "4", "--decode-tokens", "8", "--prompt-tokens", "32"]
KEYS = ("streams", "batch_size", "prompt_tokens", "decode_tokens", "aggregate_tok_s", "per_stream_tok_s",
        "ttft_ms", "health_ms", "identical_to_solo", "mismatches", "device", "dtype", "model", "wall_s",
        "generated_tokens", "cached_tokens", "distinct_prompts", "server")


def bench(capsys, *args: str) -> tuple[int, list[str], str]:
    code = main(["bench", *args])
    out, err = capsys.readouterr()
    return code, out.strip().splitlines(), err


def report(capsys, *args: str) -> dict:
    code, lines, err = bench(capsys, *args)
    assert code == 0, err
    result = json.loads(lines[-1])  # the convention: one JSON object as the last stdout line
    for key in KEYS:
        assert key in result, key
    assert any(line.startswith("aggregate") for line in lines[:-1])  # the readable summary first
    return result


def check_figures(result: dict, streams: int = 4) -> None:
    assert result["streams"] == streams
    assert result["identical_to_solo"] is True and result["mismatches"] == 0
    assert result["aggregate_tok_s"] > 0 and result["wall_s"] > 0
    assert 0 < result["generated_tokens"] <= streams * result["decode_tokens"]
    for key in ("ttft_ms", "health_ms"):
        spread = result[key]
        assert 0 <= spread["p50"] <= spread["p95"] <= spread["max"]
    assert result["health_ms"]["samples"] >= 1  # /health was polled during the pass
    assert 0 <= result["per_stream_tok_s"]["min"] <= result["per_stream_tok_s"]["mean"]


# ---------------------------------------------------------------- in-process server


def test_random_model_in_process_batched_with_one_slot_per_stream(capsys):
    result = report(capsys, "--random", "d2:64:512", "--device-type", "cpu", *SMALL)
    check_figures(result)
    assert result["batch_size"] == 4  # --batch-size left unset: one slot per stream
    assert result["server"] == "in-process" and result["model"] == "random gen5 d2:64:512"
    assert result["device"] == "cpu" and result["dtype"] == "float32"
    assert result["decode_tokens"] == 8 and result["distinct_prompts"] == 4
    assert 24 <= result["prompt_tokens"] <= 40  # sized from the server's own token counts
    assert result["cached_tokens"] <= 4  # the concurrent pass does not start from cached prompts


def test_fixture_checkpoint_with_fewer_slots_than_streams(capsys):
    """--batch-size 2 for 4 streams: two wait in the pool's queue, and still equal their solo runs."""
    result = report(capsys, "--model-dir", str(GEN5_BASE), "--device-type", "cpu", "--batch-size", "2", *SMALL)
    check_figures(result)
    assert result["batch_size"] == 2 and "gen5-smear-backout" in result["model"]


# ---------------------------------------------------------------- --url: a running server


def test_url_benchmarks_a_running_nanochat_tui_web(capsys):
    """A server started with --api-key: refused without the key (one line), measured with it."""
    proc = subprocess.Popen(
        cli_command() + ["--web", "-p", "0", "--host", "127.0.0.1", "--model-dir", str(GEN5_BASE),
                         "--device-type", "cpu", "--batch-size", "4", "--api-key", "s3cret"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=cli_env())
    drain = threading.Thread(target=lambda: proc.stdout.read(), daemon=True)
    try:
        url = None
        deadline = time.monotonic() + 90
        while url is None and time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            found = re.search(r"(http://127\.0\.0\.1:\d+)", line)
            url = found.group(1) if found else None
        assert url, "the server did not say where it listens"
        # Keep reading its log so that a full pipe can never stall the server.
        drain.start()
        code, _lines, err = bench(capsys, "--url", url + "/", *SMALL)
        assert code == 2, err
        assert err.strip().splitlines()[-1].startswith("nanochat-tui: error: POST ")
        assert "answered 401: Missing or wrong API key" in err
        result = report(capsys, "--url", url + "/", "--api-key", "s3cret", *SMALL)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        if drain.ident is not None:  # started
            drain.join(10)
        proc.stdout.close()
    check_figures(result)
    assert result["server"] == url
    assert result["batch_size"] == 4  # the server's slots, from its /stats
    assert "gen5-smear-backout" in result["model"] and result["device"] == "cpu"


def old_protocol_app() -> web.Application:
    """nanochat's own chat_web.py protocol: token events and done, no finish stats, no slots.
    Replies are a function of the prompt, like a greedy model's."""

    async def chat(request: web.Request) -> web.StreamResponse:
        body = await request.json()
        words = body["messages"][-1]["content"].split()[: body["max_tokens"]]
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        for word in words:
            await resp.write(b"data: " + json.dumps({"token": word[::-1] + " ", "gpu": 0}).encode() + b"\n\n")
            await asyncio.sleep(0.001)
        await resp.write(b'data: {"done": true}\n\n')
        return resp

    async def health(request: web.Request) -> web.Response:
        return web.json_response({"status": "ok", "ready": True, "num_gpus": 1, "available_workers": 1})

    app = web.Application()
    app.router.add_post("/chat/completions", chat)
    app.router.add_get("/health", health)
    return app


def test_url_server_without_stats_counts_token_events(capsys):
    with ThreadedServer(old_protocol_app()) as server:
        result = report(capsys, "--url", server.url, *SMALL)
    check_figures(result)
    assert result["generated_tokens"] == 4 * 8  # one token event per token, as nanochat sends them
    assert result["batch_size"] is None and result["cached_tokens"] is None and result["dtype"] is None
    assert result["prompt_tokens"] == 32  # no counts from the server: the asked size is reported


# ---------------------------------------------------------------- errors: one line, exit 2


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("args, words", [
    (["--serve", "0"], "--serve needs between 1 and"),
    (["--serve", "-3"], "--serve needs between 1 and"),
    (["--serve", "2", "--decode-tokens", "0"], "--decode-tokens must be between 1 and 4096"),
    (["--serve", "2", "--batch-size", "0"], "--batch-size must be between 1 and 256"),
    (["--serve", "2", "--naive"], "--naive is for the engine benchmark"),
    (["--url", "http://127.0.0.1:1"], "--url needs --serve N"),
    (["--serve", "2", "--url", "ftp://example.com"], "--url needs an address such as http://127.0.0.1:8000"),
    (["--serve", "2", "--url", "not a url"], "--url needs an address"),
    (["--serve", "2", "--url", "http://127.0.0.1:1", "--random", "d2"], "--random chooses a model to serve here"),
    (["--serve", "2", "--url", "http://127.0.0.1:1", "--batch-size", "4"], "a --url server has its own"),
    (["--serve", "2", "--url", "http://127.0.0.1:{port}"], "cannot reach http://127.0.0.1:"),
    (["--serve", "2", "--random", "dx"], "bad model shape 'dx'"),
    (["--serve", "2", "--model-dir", "/nonexistent/nanochat"], "/nonexistent/nanochat"),
])
def test_errors_are_one_line_and_exit_2(capsys, args, words):
    args = [a.replace("{port}", str(free_port())) for a in args]
    code, out, err = bench(capsys, *args)
    assert code == 2 and out == []
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("nanochat-tui: error: "), err
    assert words in lines[0]


def test_url_mode_loads_no_torch():
    """Benchmarking a remote server needs only aiohttp here (a laptop against a GPU box)."""
    code = ("import sys\nfrom nanochat_tui.cli import main\n"
            f"rc = main(['bench', '--serve', '1', '--url', 'http://127.0.0.1:{free_port()}'])\n"
            "print('RC', rc, 'torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip().splitlines()[-1] == "RC 2 False", out.stderr
    assert "cannot reach" in out.stderr


def test_url_that_is_not_a_nanochat_server(capsys):
    with ThreadedServer(old_protocol_app()) as server:
        code, out, err = bench(capsys, "--url", server.url + "/nothing-here", "--serve", "1")
    assert code == 2 and out == []
    assert err.strip().splitlines() == [f"nanochat-tui: error: GET {server.url}/nothing-here/health answered 404"]


# ---------------------------------------------------------------- helpers


def test_prompts_are_reproducible_distinct_and_extend_with_more_words():
    a, b = make_prompts(4, 20, seed=1), make_prompts(4, 20, seed=1)
    assert a == b and len(set(a)) == 4 and make_prompts(4, 20, seed=2) != a
    longer = make_prompts(4, 30, seed=1)
    assert all(long.startswith(short[:-1]) for short, long in zip(a, longer))


def test_percentile_interpolates_like_numpy():
    assert percentile([], 50) == 0.0 and percentile([7.0], 95) == 7.0
    assert percentile([1.0, 2.0, 3.0, 4.0], 50) == 2.5
    assert percentile(list(map(float, range(1, 101))), 95) == pytest.approx(95.05)
