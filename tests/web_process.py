"""`nanochat-tui --web` as a real process on 127.0.0.1 and a free port, for the tests that
need the whole CLI (client mode, the Ray front door)."""

from __future__ import annotations

import re
import signal
import subprocess
import time
from contextlib import contextmanager
from typing import Iterator

from conftest import cli_command, cli_env


@contextmanager
def web_process(*args: str, timeout: float = 90, env: dict | None = None,
                ended: dict | None = None) -> Iterator[tuple[str, list[str]]]:
    """Start `nanochat-tui --web -p 0 --host 127.0.0.1 ARGS`; yield (base_url, lines printed
    up to "Press Ctrl+C"). Stopped with Ctrl+C (SIGINT); `ended` gets its exit status and the
    rest of its output."""
    proc = subprocess.Popen([*cli_command(), "--web", "-p", "0", "--host", "127.0.0.1", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env or cli_env())
    lines: list[str] = []
    try:
        deadline = time.monotonic() + timeout
        port = None
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line.rstrip("\n"))
            m = re.match(r"\s+http://127\.0\.0\.1:(\d+)$", line.rstrip("\n"))
            if m:
                port = int(m.group(1))
            if line.startswith("Press Ctrl+C"):
                break
        assert port is not None, "\n".join(lines)
        yield f"http://127.0.0.1:{port}", lines
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            rest = proc.communicate(timeout=30)[0]
        except subprocess.TimeoutExpired:
            proc.kill()
            rest = proc.communicate()[0]
        if ended is not None:
            ended.update(returncode=proc.returncode, output=rest)
