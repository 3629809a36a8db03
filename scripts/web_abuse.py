"""Measure what hostile clients do to a real `nanochat-tui --web` on loopback; prints one JSON line.

    python scripts/web_abuse.py [--requests 200] [--hold 30]

Starts the server (the code this interpreter imports, on a fixture checkpoint, port chosen by
the OS), then:

1. log flood: `--requests` connections each send a malformed request (half an over-long request
   line, half an over-long header without a colon); reports the bytes and lines the server logged;
2. slowloris: `--requests` connections each send a request line and then one header byte every
   0.5 s for `--hold` seconds; reports how many the server still holds open at the end.

docs/security.md ("Web server") quotes its figures. Loopback only; nothing is sent elsewhere.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

FIXTURE = Path(__file__).resolve().parent.parent / "tests/fixtures/nanochat-generations/gen5-smear-backout/base_dir"


def start_server() -> tuple[subprocess.Popen, int, bytearray]:
    proc = subprocess.Popen([sys.executable, "-m", "nanochat_tui", "--web", "-p", "0", "--host", "127.0.0.1",
                             "--model-dir", str(FIXTURE), "--device-type", "cpu"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    port = None
    for line in iter(proc.stdout.readline, b""):
        found = re.search(rb"http://127\.0\.0\.1:(\d+)", line)
        port = int(found.group(1)) if found else port
        if line.startswith(b"Press Ctrl+C"):
            break
    if port is None:
        proc.kill()
        raise SystemExit("the server did not start")
    log = bytearray()
    threading.Thread(target=lambda: [log.extend(b) for b in iter(proc.stdout.readline, b"")], daemon=True).start()
    return proc, port, log


async def malformed(port: int, i: int) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    if i % 2:
        writer.write(b"GET /" + b"A" * 10_000 + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    else:
        writer.write(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n" + b"B" * 8000 + b"\r\n\r\n")
    await writer.drain()
    await reader.read()
    writer.close()


async def slowloris(port: int, count: int, hold: float) -> int:
    conns = [await asyncio.open_connection("127.0.0.1", port) for _ in range(count)]
    for _, writer in conns:
        writer.write(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
    closed = [asyncio.ensure_future(reader.read()) for reader, _ in conns]
    end = time.monotonic() + hold
    while time.monotonic() < end:
        for _, writer in conns:
            if not writer.is_closing():
                writer.write(b"a")
        await asyncio.sleep(0.5)
    still_open = sum(1 for f in closed if not f.done())
    for _, writer in conns:
        writer.close()
    return still_open


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--requests", type=int, default=200)
    p.add_argument("--hold", type=float, default=30.0)
    args = p.parse_args()
    proc, port, log = start_server()
    try:
        before = len(log)

        async def flood() -> None:
            await asyncio.gather(*(malformed(port, i) for i in range(args.requests)))

        asyncio.run(flood())
        time.sleep(1.0)  # let the last log lines through the pipe before counting them
        logged = bytes(log[before:])
        still_open = asyncio.run(slowloris(port, args.requests, args.hold))
    finally:
        proc.terminate()
        proc.wait(30)
    print(json.dumps({"malformed_requests": args.requests, "log_bytes": len(logged),
                      "log_lines": logged.count(b"\n"), "slowloris_connections": args.requests,
                      "held_s": args.hold, "still_open": still_open}))


if __name__ == "__main__":
    main()
