"""`nanochat-tui export --format hf OUTDIR`: write a checkpoint as a Hugging Face model.

Wiring (cli.py): `if argv[:1] == ["export"]: return run_export(build_export_parser().parse_args(argv[1:]))`.
Everything heavy (torch, the export module) is imported inside run_export, so `--help` stays fast.
"""

from __future__ import annotations

import argparse
import sys

from .console import error_line, say

PROG = "nanochat-tui export"

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


def build_export_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=PROG, description="Export a nanochat checkpoint as a Hugging Face transformers model.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("outdir", metavar="OUTDIR", help="directory to create (must not exist or be empty)")
    p.add_argument("--format", choices=["hf"], default="hf",
                   help="output format: hf = Hugging Face transformers NanoChat (the only one; default)")
    p.add_argument("--force", action="store_true",
                   help="replace a non-empty OUTDIR (its old contents stay until the new export is complete)")
    p.add_argument("--verify", action="store_true",
                   help="before finishing, load the export with transformers and compare its logits with "
                        "nanochat-tui's (needs the transformers package)")
    p.add_argument("--debug", action="store_true", help="show tracebacks instead of one-line errors")
    g = p.add_argument_group("model selection (nanochat's rules)")
    g.add_argument("-i", "--source", choices=["base", "sft", "rl"], default="sft",
                   help="which training stage to export: base|sft|rl (default: sft)")
    g.add_argument("-g", "--model-tag", default=None,
                   help="model tag directory, e.g. d20 (default: largest dNN, else newest)")
    g.add_argument("-s", "--step", type=int, default=None, help="checkpoint step (default: largest)")
    g.add_argument("--model-dir", default=None, metavar="DIR",
                   help="nanochat base dir (default: $NANOCHAT_BASE_DIR, else ~/.cache/nanochat)")
    g.add_argument("--device-type", choices=["cuda", "cpu", "mps"], default="cpu",
                   help="where --verify runs the transformers model (default: cpu); the weights are "
                        "always read and written on the CPU")
    g.add_argument("-d", "--dtype", choices=["float32", "bfloat16"], default="float32",
                   help="dtype of the written weights: float32 = exactly nanochat's numbers (default); "
                        "bfloat16 = half the size, what GPUs compute in anyway")
    g.add_argument("--softcap", type=float, default=None,
                   help="logit softcap to write into the config (default: the checkpoint's, 15 for "
                        "generation 1)")
    return p


def run_export(args: argparse.Namespace) -> int:
    """Run the export; one line on stderr and exit 2 for any user-facing problem."""

    def fail(message: str) -> int:
        print(error_line(message), file=sys.stderr)
        return 2

    def say(line: str) -> None:
        say(line, sys.stderr)

    if args.softcap is not None and not args.softcap > 0:
        return fail("--softcap must be a positive number")
    try:
        from nanochat_core.export_hf import prepare_outdir
    except ImportError as e:  # pragma: no cover - a broken install
        return fail(f"cannot load the exporter: {e}")
    from pathlib import Path

    try:
        # Refuse a non-empty OUTDIR before spending time on loading.
        prepare_outdir(Path(args.outdir).expanduser(), args.force)
        from nanochat_core.api import load_chat_model
        from nanochat_core.export_hf import export_hf

        model = load_chat_model(
            base_dir=args.model_dir, source=args.source, model_tag=args.model_tag, step=args.step,
            device="cpu", dtype="float32", softcap=args.softcap, allow_demo=False, progress=say,
        )
        result = export_hf(model, args.outdir, dtype=args.dtype, force=args.force, verify=args.verify,
                           verify_device=args.device_type, progress=say)
    except ValueError as e:  # CheckpointError, ExportError: one line for the user
        if args.debug:
            raise
        return fail(str(e))
    except Exception as e:
        if args.debug:
            raise
        return fail(f"{type(e).__name__}: {e} (run with --debug for the traceback)")
    print(result.outdir)
    return 0


def main(argv: list[str] | None = None) -> int:
    """Standalone entry (tests; `python -m nanochat_tui.export_cli`)."""
    return run_export(build_export_parser().parse_args(argv))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
