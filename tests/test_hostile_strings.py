"""Nothing from outside reaches a terminal raw (docs/security.md).

Outside strings are a server's model ids, error bodies and mid-stream error chunks, checkpoint
directory names, and a web client's messages in the operator's log. Each is injected with what
an attacker would use (retitle the pane, write the clipboard, erase the line, a right-to-left
override) and must arrive visible (`^[`, `<U+202E>`) and never as the control itself.
"""

from __future__ import annotations

import json
import re
import shutil
import signal
import subprocess
import urllib.request
from pathlib import Path

import pytest
from conftest import FIXTURES, cli_command, cli_env
from hostile_server import EVIL, HostileServer, error_reply, sse_chunk, stream_of, text_chunk

GEN5 = FIXTURES / "gen5-smear-backout" / "base_dir"
RAW_CONTROLS = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def run(args: list[str], timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([*cli_command(), *args], capture_output=True, text=True, env=cli_env(),
                          timeout=timeout)


def assert_safe(text: str) -> None:
    bad = RAW_CONTROLS.findall(text)
    assert not bad, f"raw control characters {bad!r} in:\n{text!r}"


def test_model_ids_and_owner_from_a_server_are_shown_visibly():
    models = [{"id": "m" + EVIL, "object": "model", "owned_by": "o" + EVIL},
              {"id": "second" + EVIL, "object": "model"}]
    with HostileServer(models=models, chat=stream_of(["Hello", " there"])) as url:
        out = run(["--server", url, "-p", "hi"])
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "Hello there"
    assert_safe(out.stderr)
    # the Loaded line names the id, visibly
    assert re.search(r"^Loaded m\^\[\]0;PWNED-TITLE\^G\^\[\]52;c;Y3VybCBldmlsLnNofHNo\^G\^\[\[2K\\r<U\+202E>",
                     out.stderr, re.M)
    assert "owned by o^[]0;PWNED-TITLE" in out.stderr


def test_server_error_bodies_at_connect_and_per_request_are_one_safe_line():
    with HostileServer(models_answer=(401, json.dumps({"error": {"message": "no" + EVIL + "\nline 2"}}).encode())) as url:
        out = run(["--server", url, "-p", "hi"])
    assert out.returncode == 2
    assert_safe(out.stderr)
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("nanochat-tui: error: ") and "no^[]0;PWNED" in lines[0]

    with HostileServer(chat=error_reply(400, "bad" + EVIL)) as url:
        out = run(["--server", url, "-p", "hi"])
    assert out.returncode != 0
    assert_safe(out.stderr)
    assert_safe(out.stdout)
    assert re.search(r"error: .*bad\^\[\]0;PWNED-TITLE", out.stderr)


def test_an_error_chunk_mid_stream_is_shown_visibly():
    chat = stream_of(["partial"], tail=[sse_chunk({"error": {"message": "boom" + EVIL}})])

    def no_finish(body):  # a stream that breaks off with an error instead of finishing
        status, headers, _chunks = chat(body)
        return status, headers, [text_chunk("partial"), sse_chunk({"error": {"message": "boom" + EVIL}})]

    with HostileServer(chat=no_finish) as url:
        out = run(["--server", url, "-p", "hi"])
    assert_safe(out.stderr)
    assert "boom^[]0;PWNED-TITLE" in out.stderr


@pytest.fixture
def evil_checkpoint(tmp_path) -> Path:
    """The gen5 fixture in a base dir and tag dir whose names carry escape sequences."""
    base = tmp_path / ("base" + EVIL.replace("/", ""))
    shutil.copytree(GEN5, base)
    sft = base / "chatsft_checkpoints"
    (sft / "d4").rename(sft / ("d4" + EVIL.replace("/", "")))
    return base


def test_checkpoint_directory_names_are_shown_visibly(evil_checkpoint):
    out = run(["--model-dir", str(evil_checkpoint), "-t", "0", "-m", "4", "-p", "hi"])
    assert out.returncode == 0, out.stderr
    assert_safe(out.stderr)
    assert re.search(r"^Loaded d4\^\[\]0;PWNED-TITLE\^G.*<U\+202E>", out.stderr, re.M)

    missing = run(["--model-dir", str(evil_checkpoint), "-s", "5", "-p", "hi"])
    assert missing.returncode == 2
    assert_safe(missing.stderr)
    assert missing.stderr.count("\n") == 1 and "no step 5 in " in missing.stderr


def test_web_console_lines_and_conversation_log_are_one_safe_line_each(evil_checkpoint):
    proc = subprocess.Popen([*cli_command(), "--web", "-p", "0", "--host", "127.0.0.1",
                             "--model-dir", str(evil_checkpoint), "--log-conversations",
                             "-m", "4"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=cli_env())
    lines: list[str] = []
    try:
        port = None
        while True:
            line = proc.stdout.readline()
            assert line, "\n".join(lines)
            lines.append(line)
            if m := re.match(r"\s+http://127\.0\.0\.1:(\d+)$", line.rstrip("\n")):
                port = int(m.group(1))
            if line.startswith("Press Ctrl+C"):
                break
        body = json.dumps({"messages": [{"role": "user", "content": "hi" + EVIL + "\nrm -rf ~"}]}).encode()
        request = urllib.request.Request(f"http://127.0.0.1:{port}/chat/completions", data=body,
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=60) as resp:
            resp.read()
        while not any(re.search(r"chat request \d+:", line) for line in lines):
            line = proc.stdout.readline()
            assert line, "".join(lines)
            lines.append(line)
    finally:
        proc.send_signal(signal.SIGINT)
        rest, _ = proc.communicate(timeout=30)
        lines.append(rest)
    text = "".join(lines)
    assert_safe(text)
    assert re.search(r"^Model: d4\^\[\]0;PWNED-TITLE", text, re.M)
    user_lines = [line for line in text.splitlines() if "[USER]" in line]
    assert len(user_lines) == 1  # one line per message: the newline is escaped, not written
    assert user_lines[0].endswith("[USER]: hi^[]0;PWNED-TITLE^G^[]52;c;Y3VybCBldmlsLnNofHNo^G^[[2K\\r<U+202E>\\nrm -rf ~")


@pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed (CI installs it)")
def test_full_screen_app_on_a_hostile_server_keeps_title_and_clipboard(tmp_path):
    from test_tui_tmux import Tmux

    tmux = Tmux(tmp_path)
    tmux.conf.write_text("set -s extended-keys always\nset -s set-clipboard on\n")
    models = [{"id": "m" + EVIL, "object": "model", "owned_by": "o" + EVIL}]
    try:
        with HostileServer(models=models, chat=error_reply(400, "bad" + EVIL)) as url:
            tmux.start(["--server", url])
            before = tmux._tmux("display", "-p", "-t", tmux.session, "#{pane_title}").stdout
            tmux.wait(r"Ready: m\^\[\]0;PWNED-TITLE", timeout=60)
            tmux.keys("hello", "Enter")
            screen = tmux.wait(r"bad\^\[\]0;PWNED-TITLE", timeout=30)
            assert "m^[]0;PWNED" in screen.splitlines()[0]  # the header shows the id visibly
            title = tmux._tmux("display", "-p", "-t", tmux.session, "#{pane_title}").stdout
            assert "PWNED" not in title and title == before
            assert tmux._tmux("list-buffers", check=False).stdout.strip() == ""  # no OSC 52 write
    finally:
        tmux.kill()
