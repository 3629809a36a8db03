"""bf16 and int8 drift against float32 for every golden fixture generation (docs/benchmarks.md).

    .venv/bin/python scripts/drift.py [--steps 64] [--fixtures tests/fixtures/nanochat-generations]

Prints a Markdown table, then one JSON object as the last line. Each fixture is loaded three
times through the normal loader (float32, -d bfloat16, --quantize int8) and compared on its
golden prompt (nanochat_core/drift.py says what each number means).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

from nanochat_core import load_chat_model
from nanochat_core.drift import measure_drift
from nanochat_core.quantize import cpu_has_native_bf16

ROOT = Path(__file__).resolve().parent.parent


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=64)
    p.add_argument("--fixtures", default=str(ROOT / "tests/fixtures/nanochat-generations"))
    args = p.parse_args()
    if not cpu_has_native_bf16():
        print("note: this CPU has no native bf16, so -d bfloat16 loads as float32 here", file=sys.stderr)
    rows = {}
    cases = [(d.name, d / "base_dir", torch.load(d / "reference.pt", weights_only=True)["prompt_ids"].tolist())
             for d in sorted(Path(args.fixtures).iterdir()) if (d / "reference.pt").exists()]
    demo = ROOT / "assets" / "demo"  # the bundled demo model (1.6M params, trained): a chat prompt
    demo_model = load_chat_model(base_dir=demo, device="cpu")
    cases.append(("demo model", demo, demo_model.render([{"role": "user", "content": "What is a KV cache for?"}])))
    for name, base_dir, ids in cases:
        softcap = 20.0 if name == "gen3-softcap20" else None
        load = lambda **kw: load_chat_model(base_dir=base_dir, device="cpu", softcap=softcap, **kw).model
        fp32 = load()
        rows[name] = {"prompt_tokens": len(ids),
                              "bfloat16": measure_drift(fp32, load(dtype="bfloat16"), ids, args.steps),
                              "int8": measure_drift(fp32, load(quantize="int8"), ids, args.steps)}
    print("| generation | bf16 max abs dlogit | bf16 greedy same before divergence | bf16 teacher-forced "
          "| int8 max abs dlogit | int8 greedy same before divergence | int8 teacher-forced |")
    print("|---|---|---|---|---|---|---|")
    for gen, r in rows.items():
        b, q = r["bfloat16"], r["int8"]
        print(f"| {gen} | {b['max_abs_dlogit']} | {b['greedy_same_before_divergence']}/{b['steps']} | "
              f"{b['teacher_forced_agreement']:.0%} | {q['max_abs_dlogit']} | "
              f"{q['greedy_same_before_divergence']}/{q['steps']} | {q['teacher_forced_agreement']:.0%} |")
    print(json.dumps({"steps": args.steps, "torch": torch.__version__, "generations": rows}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
