"""The floor under a CPU decode step: the weight matrix products alone, per kernel.

A decode step at batch 1 multiplies one row by every weight matrix once; nothing else in it can
be faster than reading those matrices. This times exactly that, for a model shape, with each
kernel the engine can use (float32 `F.linear`, bf16 packed for oneDNN as `-d bfloat16` uses it,
int8 `_weight_int8pack_mm` as `--quantize int8` uses it), two ways:

- cold: DEPTH distinct layers, as a real step reads them (the matrices do not fit in the caches);
- hot: one layer's matrices DEPTH times (they stay in the last-level cache). Figures measured
  this way look several times faster than any real step can be, so they are no target.

It also runs a memory copy test (the bandwidth `bench` compares decode against). Prints one
JSON object. `--rows N` multiplies N rows at once instead (a prefill chunk); the kinds
`bfloat16-plain` (torch's bf16 `F.linear`, weight not packed) and `bfloat16-as-float32` (the
bf16 weight converted to float32 on each call, then MKL) are there to compare prefill routes.
Examples (d20 shapes, 2 threads):

    .venv/bin/python scripts/matmul_floor.py --depth 20 --width 1280 --threads 2
    .venv/bin/python scripts/matmul_floor.py --depth 20 --width 1280 --threads 2 --rows 256 \
        --kinds float32,bfloat16-packed,bfloat16-plain,bfloat16-as-float32,int8
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch
import torch.nn.functional as F

from nanochat_core.bench import copy_bandwidth


def layer_shapes(width: int) -> list[tuple[int, int]]:
    """(out, in) of one layer's matrices with q/k/v fused (as the engine runs them)."""
    return [(3 * width, width), (width, width), (4 * width, width), (width, 4 * width)]


def make_kernels(kind: str, weights: list[torch.Tensor], rows: int = 1):
    """One callable per matrix, its input (`rows` rows) ready."""
    calls = []
    for w in weights:
        if kind == "float32":
            x = torch.randn(rows, w.shape[1])
            calls.append(lambda x=x, w=w: F.linear(x, w))
        elif kind == "bfloat16-packed":
            x = torch.randn(rows, w.shape[1], dtype=torch.bfloat16)
            packed = torch.ops.mkldnn._reorder_linear_weight(w.to(torch.bfloat16), None)
            calls.append(lambda x=x, p=packed: torch.ops.mkldnn._linear_pointwise(x, p, None, "none", [], ""))
        elif kind == "bfloat16-plain":
            x = torch.randn(rows, w.shape[1], dtype=torch.bfloat16)
            calls.append(lambda x=x, w=w.to(torch.bfloat16): F.linear(x, w))
        elif kind == "bfloat16-as-float32":
            x = torch.randn(rows, w.shape[1], dtype=torch.bfloat16)
            calls.append(lambda x=x, w=w.to(torch.bfloat16): F.linear(x.float(), w.float()).to(torch.bfloat16))
        elif kind == "int8":
            x = torch.randn(rows, w.shape[1], dtype=torch.bfloat16)
            scales = w.abs().amax(dim=1) / 127
            q = torch.round(w / scales[:, None]).clamp(-127, 127).to(torch.int8).contiguous()
            calls.append(lambda x=x, q=q, s=scales.to(torch.bfloat16): torch._weight_int8pack_mm(x, q, s))
        else:
            raise ValueError(kind)
    return calls


def time_step(calls, repeats: int) -> list[float]:
    """Wall milliseconds of one pass over all calls, `repeats` times (after one warm pass)."""
    for f in calls:
        f()
    out = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for f in calls:
            f()
        out.append((time.perf_counter() - t0) * 1e3)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--depth", type=int, default=20)
    ap.add_argument("--width", type=int, default=1280)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--rows", type=int, default=1, help="rows multiplied at once (1: decode)")
    ap.add_argument("--kinds", default="float32,bfloat16-packed,int8")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    shapes = layer_shapes(args.width)
    result = {"depth": args.depth, "width": args.width, "threads": args.threads, "rows": args.rows,
              "copy_bandwidth_gb_s": round(copy_bandwidth(torch.device("cpu")) / 1e9, 2), "kernels": {}}
    with torch.inference_mode():
        for kind in args.kinds.split(","):
            cold_weights = [torch.randn(*s) for _ in range(args.depth) for s in shapes]
            cold = make_kernels(kind, cold_weights, args.rows)
            del cold_weights
            hot = make_kernels(kind, [torch.randn(*s) for s in shapes], args.rows) * args.depth
            c, h = time_step(cold, args.repeats), time_step(hot, args.repeats)
            result["kernels"][kind] = {
                "cold_step_ms_median": round(statistics.median(c), 2), "cold_step_ms_best": round(min(c), 2),
                "hot_step_ms_median": round(statistics.median(h), 2), "hot_step_ms_best": round(min(h), 2),
            }
            del cold, hot
    print(json.dumps(result))


if __name__ == "__main__":
    main()
