"""Serving through Ray Serve against serving with `--web` alone, side by side on one machine
(docs/benchmarks.md "Serving through Ray Serve"; issue 15).

    .venv/bin/python scripts/bench_ray.py [--shape d8:512:8192] [--rounds 3] [--hop-rounds 9]

Writes a random checkpoint, starts a local Ray head (`ray start --head`, its own session), deploys
it twice with the real CLI (`nanochat-tui serve --ray`: application "one" with 1 replica,
"two" with 2; 1 CPU each, so Ray gives each replica's torch one thread), starts a front door for
each (`nanochat-tui --web --ray`) and a plain `nanochat-tui --web` on the same checkpoint with
OMP_NUM_THREADS=1 (one replica's share of the machine). Then, alternating the servers in every
round (the order rotated), it runs `nanochat-tui bench --serve N --url URL` against each:

- throughput: `--serve STREAMS` (default 8) against web, ray-1 and ray-2, `--rounds` times;
- the Ray hop: `--serve 1` with a short prompt against web and ray-1, `--hop-rounds` times: the
  difference of the median time to first token is what the front door -> replica hop adds.

Prints each run's figures on stderr and one JSON object (medians, the commands) as the last
stdout line. Stops everything it started (Ray's whole session) before it exits.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack, contextmanager, suppress
from pathlib import Path

BIN = Path(sys.executable).parent
CLI = [str(BIN / "nanochat-tui")] if (BIN / "nanochat-tui").exists() else [sys.executable, "-m", "nanochat_tui"]


def log(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def free_port() -> int:
    while True:  # outside Ray's default worker ports (10002-19999)
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if not 10002 <= port <= 19999:
            return port


def env(**extra: str) -> dict:
    out = dict(os.environ, RAY_USAGE_STATS_ENABLED="0", RAY_AUTH_MODE="disabled", PYTHONUNBUFFERED="1", **extra)
    out.pop("RAY_ADDRESS", None)
    return out


def session_members(sid: int) -> list[int]:
    pids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[3]) == sid:
            pids.append(int(stat.parent.name))
    return pids


@contextmanager
def ray_head(cpus: int, base_dir: str):
    temp = tempfile.mkdtemp(prefix="nct-bench-ray-", dir="/tmp")
    port = free_port()
    proc = subprocess.Popen(
        [str(BIN / "ray"), "start", "--head", "--block", "--node-ip-address", "127.0.0.1", "--port", str(port),
         "--num-cpus", str(cpus), "--num-gpus", "0", "--include-dashboard=false", "--disable-usage-stats",
         "--temp-dir", temp],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        env=env(NANOCHAT_BASE_DIR=base_dir, RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S="0"),
    )
    try:
        deadline = time.monotonic() + 120
        while True:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            if proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit("bench_ray: the Ray head did not start")
            time.sleep(0.2)
        yield f"127.0.0.1:{port}"
    finally:
        proc.send_signal(signal.SIGTERM)
        with suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=15)
        deadline = time.monotonic() + 15
        while session_members(proc.pid) and time.monotonic() < deadline:
            time.sleep(0.2)
        for pid in session_members(proc.pid):
            with suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        shutil.rmtree(temp, ignore_errors=True)


@contextmanager
def web_server(args: list[str], extra_env: dict | None = None):
    """A `nanochat-tui --web ...` on 127.0.0.1 and a free port; yields its base URL."""
    proc = subprocess.Popen([*CLI, "--web", "-p", "0", "--host", "127.0.0.1", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env=env(**(extra_env or {})))
    lines = []
    try:
        for line in proc.stdout:
            lines.append(line.rstrip("\n"))
            if line.startswith("Press Ctrl+C"):
                break
        port = next((m.group(1) for m in (re.match(r"\s+http://127\.0\.0\.1:(\d+)$", x) for x in lines) if m), None)
        if port is None:
            raise SystemExit("bench_ray: a web server did not start:\n" + "\n".join(lines[-10:]))
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()


def bench(url: str, streams: int, prompt_tokens: int, decode_tokens: int) -> dict:
    cmd = [*CLI, "bench", "--serve", str(streams), "--url", url, "--prompt-tokens", str(prompt_tokens),
           "--decode-tokens", str(decode_tokens)]
    result = subprocess.run(cmd, capture_output=True, text=True, env=env(), timeout=900)
    if result.returncode != 0:
        raise SystemExit(f"bench_ray: {' '.join(cmd)} failed:\n{result.stderr[-2000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def rotated(items: list, by: int) -> list:
    by %= len(items)
    return items[by:] + items[:by]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--shape", default="d8:512:8192", help="random model shape (nanochat_core.synthetic)")
    p.add_argument("--streams", type=int, default=8, help="concurrent streams of the throughput runs")
    p.add_argument("--batch-size", type=int, default=8, help="streams each replica / the web worker decodes together")
    p.add_argument("--prompt-tokens", type=int, default=128)
    p.add_argument("--decode-tokens", type=int, default=64)
    p.add_argument("--rounds", type=int, default=3, help="throughput rounds (each server once per round)")
    p.add_argument("--hop-rounds", type=int, default=9, help="first-token rounds, web and ray-1 once each")
    p.add_argument("--hop-prompt-tokens", type=int, default=16)
    p.add_argument("--hop-decode-tokens", type=int, default=8)
    args = p.parse_args()

    from nanochat_core.synthetic import write_random_checkpoint

    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="nct-bench-ray-model-") as model_dir, ExitStack() as stack:
        write_random_checkpoint(model_dir, args.shape)
        empty = stack.enter_context(tempfile.TemporaryDirectory(prefix="nct-bench-ray-none-"))
        log("starting a local Ray head (3 CPUs: replicas of 1 CPU each) ...")
        address = stack.enter_context(ray_head(3, empty))
        common = ["--model-dir", model_dir, "--cpus-per-replica", "1", "--batch-size", str(args.batch_size),
                  "--detach"]
        deploys = [subprocess.Popen([*CLI, "serve", "--ray", address, "--ray-app", app, "--replicas", str(n), *common],
                                    stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env())
                   for app, n in (("one", 1), ("two", 2))]
        for proc in deploys:
            out = proc.communicate(timeout=600)[0]
            if proc.returncode != 0:
                raise SystemExit(f"bench_ray: serve --ray failed:\n{out}")
        log("deployed 'one' (1 replica) and 'two' (2 replicas); starting the servers ...")
        servers = {
            "web": stack.enter_context(web_server(["--model-dir", model_dir, "--batch-size", str(args.batch_size)],
                                                  {"OMP_NUM_THREADS": "1"})),
            "ray-1": stack.enter_context(web_server(["--ray", address, "--ray-app", "one"])),
            "ray-2": stack.enter_context(web_server(["--ray", address, "--ray-app", "two"])),
        }
        runs: dict[str, list[dict]] = {name: [] for name in servers}
        for r in range(args.rounds):
            for name in rotated(list(servers), r):
                got = bench(servers[name], args.streams, args.prompt_tokens, args.decode_tokens)
                runs[name].append(got)
                log(f"round {r + 1} {name}: {got['aggregate_tok_s']} tok/s, first token p50 {got['ttft_ms']['p50']} ms, "
                    f"identical to solo: {got['identical_to_solo']}")
        hops: dict[str, list[float]] = {"web": [], "ray-1": []}
        for r in range(args.hop_rounds):
            for name in rotated(list(hops), r):
                got = bench(servers[name], 1, args.hop_prompt_tokens, args.hop_decode_tokens)
                hops[name].append(got["ttft_ms"]["p50"])
                log(f"hop round {r + 1} {name}: first token {got['ttft_ms']['p50']} ms")

    def median(values: list[float]) -> float:
        return round(statistics.median(values), 1)

    throughput = {name: {"aggregate_tok_s": median([g["aggregate_tok_s"] for g in got]),
                         "per_stream_tok_s": median([g["per_stream_tok_s"]["mean"] for g in got]),
                         "ttft_p50_ms": median([g["ttft_ms"]["p50"] for g in got]),
                         "health_p50_ms": median([g["health_ms"]["p50"] for g in got]),
                         "identical_to_solo": all(g["identical_to_solo"] for g in got),
                         "runs": [g["aggregate_tok_s"] for g in got]}
                  for name, got in runs.items()}
    first_token = {name: {"median_ms": median(values), "runs_ms": values} for name, values in hops.items()}
    print(json.dumps({
        "shape": args.shape, "machine_cpus": os.cpu_count(), "threads_per_server": 1,
        "throughput_command": f"nanochat-tui bench --serve {args.streams} --url URL --prompt-tokens "
                              f"{args.prompt_tokens} --decode-tokens {args.decode_tokens}",
        "hop_command": f"nanochat-tui bench --serve 1 --url URL --prompt-tokens {args.hop_prompt_tokens} "
                       f"--decode-tokens {args.hop_decode_tokens}",
        "throughput": throughput,
        "two_replicas_over_one": round(throughput["ray-2"]["aggregate_tok_s"] / throughput["ray-1"]["aggregate_tok_s"], 2),
        "first_token": first_token,
        "ray_hop_ms": round(first_token["ray-1"]["median_ms"] - first_token["web"]["median_ms"], 1),
        # the same from each round's pair (ray-1 minus web, run back to back): less exposed to load swings
        "ray_hop_paired_median_ms": median([r - w for r, w in zip(hops["ray-1"], hops["web"])]),
        "load_average_1min": {"before": round(load_before, 2), "after": round(os.getloadavg()[0], 2)},
    }))


if __name__ == "__main__":
    main()
