"""`nanochat-tui export --format hf OUTDIR`: write a checkpoint as a Hugging Face model.

A subcommand of cli.py (SUBCOMMANDS): `build_parser()` and `run(args)`, which raises its errors
for cli.main to print. Everything heavy (torch, the export module) is imported inside run(), so
`--help` stays fast.
"""

from __future__ import annotations

import argparse
import sys

from .cli_options import PROG, Parser, UsageError, add_model_flags, selection_from
from .console import say

EPILOG = """\
Writes config.json, model.safetensors, tokenizer.json, tokenizer_config.json (with nanochat's chat
template), generation_config.json and a README.md model card: a transformers NanoChatForCausalLM
model that vLLM and other engines can serve (see docs/scaling.md). Only nanochat's first
architecture generation is exportable; newer checkpoints are refused with what transformers lacks.
Nothing is written unless the whole export succeeds.

example:
  nanochat-tui export --format hf ./nanochat-d20-hf -g d20 --verify
  vllm serve ./nanochat-d20-hf --model-impl transformers --dtype bfloat16
  nanochat-tui --server http://localhost:8000/v1
"""


def build_parser() -> argparse.ArgumentParser:
    p = Parser(
        prog=f"{PROG} export", description="Export a nanochat checkpoint as a Hugging Face transformers model.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("outdir", metavar="OUTDIR", help="directory to create (must not exist or be empty)")
    p.add_argument("--format", choices=["hf"], default="hf",
                   help="output format: hf = Hugging Face transformers NanoChat (the only one; default)")
    p.add_argument("--force", action="store_true",
                   help="replace a previous export in OUTDIR (it holds a .nanochat-tui-export marker; any "
                        "other non-empty folder is refused); the old export stays until the new one is complete")
    p.add_argument("--verify", action="store_true",
                   help="before finishing, load the export with transformers and compare its logits with "
                        "nanochat-tui's (needs the transformers package)")
    p.add_argument("--debug", action="store_true", help="show tracebacks instead of one-line errors")
    add_model_flags(
        p,
        device_help="where --verify runs the transformers model (default: cpu); the weights are "
                    "always read and written on the CPU",
        dtype_help="dtype of the written weights: float32 = exactly nanochat's numbers (default); "
                   "bfloat16 = half the size, what GPUs compute in anyway",
    )
    return p


def run(args: argparse.Namespace) -> int:
    """Run the export. Problems raise (NanochatError: one line from cli.main, exit 2)."""
    if args.softcap is not None and not args.softcap > 0:
        raise UsageError("--softcap must be a positive number")
    selection = selection_from(args, allow_demo=False)  # export what was asked for, never the demo

    def progress(line: str) -> None:
        say(line, sys.stderr)

    from pathlib import Path

    from nanochat_core.api import load_chat_model
    from nanochat_core.export_hf import export_hf, prepare_outdir

    # Refuse a non-empty OUTDIR before spending time on loading.
    prepare_outdir(Path(args.outdir).expanduser(), args.force)
    model = load_chat_model(
        base_dir=selection.base_dir, source=selection.source, model_tag=selection.model_tag,
        step=selection.step, device="cpu", dtype="float32", softcap=selection.softcap,
        allow_demo=False, progress=progress, hf=selection.hf,
    )
    result = export_hf(model, args.outdir, dtype=args.dtype or "float32", force=args.force,
                       verify=args.verify, verify_device=args.device_type or "cpu", progress=progress)
    print(result.outdir)
    return 0


def main(argv: list[str] | None = None) -> int:
    """Standalone entry (tests; `python -m nanochat_tui.export_cli`): the CLI's own error handling."""
    from .cli import main as cli_main

    return cli_main(["export", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
