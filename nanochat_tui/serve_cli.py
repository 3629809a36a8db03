"""`nanochat-tui serve --ray [ADDRESS]`: the model as Ray Serve replicas across a cluster.

A subcommand of cli.py (SUBCOMMANDS): `build_parser()` and `run(args)`, which raises its errors
for cli.main to print. Ray is imported only inside run(), once the flags are good, and only when
installed (the optional extra); `--help` imports neither Ray nor torch. What it does:
nanochat_tui/ray_serve/deploy.py; the user's view: docs/scaling.md "Ray Serve".
"""

from __future__ import annotations

import argparse
import dataclasses
import math
from pathlib import Path

from .cli_options import PROG, Parser, UsageError, add_model_flags, selection_from
from .config import ServeConfig

EPILOG = """\
Each replica runs nanochat-tui's own engine (every checkpoint generation) with continuous batching,
on the GPUs Ray gives it. Every replica loads the model itself: --model-dir must be a path every
node can read (a shared filesystem), or use --hf and each node downloads it into its own cache.
Browsers and API clients talk to front doors: nanochat-tui --web --ray ADDRESS (any number, on
nodes of the cluster, behind a load balancer). Needs the extra: pip install 'nanochat-tui[ray]'.

examples:
  ray start --head --port 6379                        # on the head node, then join the others:
  ray start --address HEAD:6379                       # on every other node
  nanochat-tui serve --ray HEAD:6379 --hf OWNER/REPO --replicas 4
  nanochat-tui serve --ray auto --autoscale 1:8 --gpus-per-replica 0.5 --detach
  nanochat-tui --web --ray auto                       # a front door on any node
  nanochat-tui serve --ray                            # try it on one machine (Ray starts here)
"""


def build_parser() -> argparse.ArgumentParser:
    p = Parser(
        prog=f"{PROG} serve", description="Serve the model as Ray Serve replicas across a cluster.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--ray", nargs="?", const="", default=None, metavar="ADDRESS",
                   help="the Ray cluster: HOST:PORT of its head (GCS port, 6379 by default) or auto (the "
                        "cluster this machine belongs to); without ADDRESS, Ray starts in this process and "
                        "stops with it")
    p.add_argument("--ray-app", default="nanochat", metavar="NAME",
                   help="the Serve application's name, which front doors give too (default: nanochat)")
    g = p.add_argument_group("replicas")
    g.add_argument("--replicas", type=int, default=None, metavar="N", help="a fixed number of replicas (default: 1)")
    g.add_argument("--autoscale", default=None, metavar="MIN:MAX",
                   help="let Ray Serve run MIN to MAX replicas, adding one when streams wait for a slot")
    g.add_argument("--gpus-per-replica", type=float, default=None, metavar="G",
                   help="GPUs reserved per replica; fractions share a GPU, e.g. 0.5 (default: 1 when the "
                        "cluster has GPUs, else 0)")
    g.add_argument("--cpus-per-replica", type=float, default=1.0, metavar="C",
                   help="CPUs reserved per replica, fractions allowed (default: 1)")
    g.add_argument("--batch-size", type=int, default=8, metavar="B",
                   help="streams each replica decodes together (continuous batching); Ray sends a "
                        "replica no more than this at once (default: 8)")
    g.add_argument("--max-context", type=int, default=None, metavar="N",
                   help="tokens one conversation may take, prompt and reply (default: the model's "
                        "sequence_len; 0 = all of the model's positions); longer ones get a 400")
    g = p.add_argument_group("lifetime")
    g.add_argument("--detach", action="store_true",
                   help="return once the replicas are ready and leave them running (needs ADDRESS)")
    g.add_argument("--stop", action="store_true", help="delete the application from the cluster, then exit")
    p.add_argument("--debug", action="store_true", help="show tracebacks instead of one-line errors")
    add_model_flags(p, device_help="device inside each replica (default: cuda when Ray gave the replica a GPU, else cpu)")
    return p


def config_from(args: argparse.Namespace) -> ServeConfig:
    """The flags as a ServeConfig, or UsageError (one line)."""
    if args.ray is None:
        raise UsageError("serve needs --ray [ADDRESS]: the Ray cluster to deploy on (see nanochat-tui serve --help)")
    address = args.ray.strip() or None
    if args.ray and address is None:
        raise UsageError("--ray ADDRESS is empty: give HOST:PORT of the head, auto, or no value to start Ray here")
    if not args.ray_app.strip() or any(c.isspace() or c in "/#" for c in args.ray_app):
        raise UsageError("--ray-app needs a name without spaces, '/' or '#', e.g. nanochat")
    if args.detach and address is None:
        raise UsageError("--detach needs a cluster ADDRESS: the Ray instance this command starts would stop with it")
    if args.stop and address is None:
        raise UsageError("--stop needs the cluster ADDRESS that runs the application")
    if args.stop and args.detach:
        raise UsageError("--stop and --detach contradict each other")
    if args.replicas is not None and args.autoscale is not None:
        raise UsageError("--replicas and --autoscale both set the number of replicas: give one")
    if args.replicas is not None and args.replicas < 1:
        raise UsageError("--replicas must be at least 1")
    autoscale = parse_autoscale(args.autoscale) if args.autoscale is not None else None
    gpus = args.gpus_per_replica
    if gpus is not None and (not math.isfinite(gpus) or gpus < 0 or (gpus > 1 and gpus != int(gpus))):
        raise UsageError("--gpus-per-replica must be 0, a fraction of one GPU (e.g. 0.5), or a whole number")
    if not math.isfinite(args.cpus_per_replica) or args.cpus_per_replica <= 0:
        raise UsageError("--cpus-per-replica must be more than 0 (fractions allowed, e.g. 0.5)")
    if not (1 <= args.batch_size <= 256):
        raise UsageError("--batch-size must be between 1 and 256")
    if args.max_context is not None and args.max_context < 0:
        raise UsageError("--max-context must be 0 (no budget) or a number of tokens")
    if args.device_type == "cuda" and gpus == 0:
        raise UsageError("--device-type cuda needs GPUs: give --gpus-per-replica more than 0")
    if args.softcap is not None and not args.softcap > 0:
        raise UsageError("--softcap must be a positive number")
    selection = selection_from(args)
    if selection.base_dir is not None:
        # Replicas run in other working directories (and on other machines): pass a full path.
        selection = dataclasses.replace(selection, base_dir=str(Path(selection.base_dir).expanduser().absolute()))
    return ServeConfig(
        model=selection, address=address, app=args.ray_app.strip(), replicas=args.replicas or 1,
        autoscale=autoscale, gpus_per_replica=gpus, cpus_per_replica=args.cpus_per_replica,
        batch_size=args.batch_size, max_context=args.max_context, detach=args.detach, stop=args.stop,
    )


def parse_autoscale(value: str) -> tuple[int, int]:
    low, sep, high = value.partition(":")
    try:
        if not sep:
            raise ValueError
        bounds = int(low), int(high)
    except ValueError:
        raise UsageError(f"--autoscale {value!r}: expected MIN:MAX replicas, e.g. 1:4") from None
    if bounds[0] < 0 or bounds[1] < 1 or bounds[0] > bounds[1]:
        raise UsageError(f"--autoscale {value!r}: need 0 <= MIN <= MAX and MAX >= 1")
    return bounds


def run(args: argparse.Namespace) -> int:
    config = config_from(args)
    from .ray_serve import require_ray

    require_ray("serve --ray")
    from .ray_serve.deploy import run_serve

    return run_serve(config)
