"""Export a nanochat checkpoint as a Hugging Face `transformers` NanoChat model (for vLLM & co).

    from nanochat_core import load_chat_model
    from nanochat_core.export_hf import export_hf
    m = load_chat_model(base_dir="~/.cache/nanochat", device="cpu", dtype="float32")
    export_hf(m, "nanochat-d20-hf")

What gets written (nanochat-format.md §11, "Transformers"):
- `config.json`: `NanoChatForCausalLM` (model_type "nanochat"), relu² MLP of width 4C, rope_theta
  10000, `final_logit_softcapping` = the model's softcap (15, or a --softcap override: it is a
  plain config field, so any value is expressible), untied head, `rms_norm_eps` = 2⁻²³ (float32's
  machine epsilon, which nanochat's weightless `F.rms_norm` uses; HF's default 1e-6 is not it).
- `model.safetensors`: the weights under HF's names (float32 by default: every tensor exactly as
  nanochat computes with; bfloat16 on request). Embedding and head rows are cut to vocab_size:
  nanochat pads them to a multiple of 64 and crops its logits to vocab_size, so the padded rows
  are never read or sampled; dropping them makes HF's logits equal nanochat's cropped logits and
  keeps servers from sampling ids that have no token. (Real tokenizers are multiples of 64.)
- `tokenizer.json` (a byte-level BPE for the `tokenizers` library built from tiktoken's ranks and
  split pattern), `tokenizer_config.json`, `special_tokens_map.json`, `generation_config.json`.
- The chat template (in tokenizer_config.json and chat_template.jinja, identical), rendering
  nanochat's format: <|bos|>, <|user_start|>…<|user_end|>, <|assistant_start|>…<|assistant_end|>,
  a first system message folded into the first user message after a blank line, and
  <|assistant_start|> as the generation prompt.
- `README.md`: a model card saying what this is and where it differs from nanochat.

Only generation 1 is exportable: transformers' NanoChat implements nanochat as of late 2025 and
nothing added since (lambdas, value embeddings, windows, …). Every other generation is refused
with one line naming what transformers lacks, before anything is written. Files are written to a
temporary directory next to OUTDIR and moved into place only when complete (and verified, when
asked), so a failed export never leaves a half-right model behind.

This module needs torch (it reads a loaded model) but not transformers, safetensors or tokenizers:
the files are plain JSON and the documented safetensors layout. `verify=True` needs transformers.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import struct
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from .errors import NanochatError

if TYPE_CHECKING:  # pragma: no cover
    from .api import ChatModel

RMS_NORM_EPS = 2.0**-23  # torch.finfo(torch.float32).eps: what F.rms_norm(eps=None) uses in fp32
EXPORTABLE = "gen1-original"
TRANSFORMERS_VERIFIED = "5.23.0"  # the version this layout was checked against (tests/test_export_hf.py)
EXPORT_DTYPES = ("float32", "bfloat16")
FILES = (
    "config.json", "generation_config.json", "model.safetensors", "tokenizer.json",
    "tokenizer_config.json", "special_tokens_map.json", "chat_template.jinja", "README.md",
)

Progress = Callable[[str], None]


class ExportError(NanochatError):
    """An export that cannot be done (unsupported generation, OUTDIR in the way, …). One line."""


# ---------------------------------------------------------------------------------------------
# What transformers' NanoChatForCausalLM can express


def missing_features(generation: str, config, softcap: float | None = None) -> list[str]:
    """What `generation` does that transformers' NanoChatForCausalLM (5.23) cannot express.

    Empty for gen1. Rope base and softcap are config fields in HF (rope_theta,
    final_logit_softcapping), so a different base or softcap alone would be expressible; but
    every generation after gen1 also has parts HF has no place for.
    """
    from .model import GENERATIONS, window_sizes

    arch = GENERATIONS.get(generation)
    if arch is None:
        return [f"unknown generation {generation!r}"]
    missing = []
    if arch.lambdas:
        missing.append("per-layer resid/x0 lambdas")
    if arch.value_embeds == "gated":
        missing.append(f"gated value embeddings (gate width {arch.ve_gate_channels})")
    elif arch.value_embeds:
        missing.append(f"{arch.value_embeds} value embeddings with v0 lambdas")
    if arch.bigram:
        missing.append("the engram bigram table")
    windows = window_sizes(arch, config)
    if any(w is not None for w in windows):
        missing.append("sliding-window attention (windows " + ", ".join(map(str, windows)) + ")")
    if arch.qk_scale != 1.0:
        missing.append(f"q/k scale {arch.qk_scale:g} after the q/k norm")
    if arch.smear:
        missing.append("the smear gate")
    if arch.backout:
        missing.append("backout")
    return missing


def check_exportable(generation: str, config, softcap: float | None = None) -> None:
    """Raise ExportError (one line) unless transformers can run this generation exactly."""
    missing = missing_features(generation, config, softcap)
    if generation != EXPORTABLE or missing:
        what = "; ".join(missing) if missing else "its architecture"
        raise ExportError(
            f"cannot export a {generation} checkpoint to Hugging Face format: transformers' "
            f"NanoChatForCausalLM implements only nanochat's first generation ({EXPORTABLE}) "
            f"and lacks {what}"
        )


# ---------------------------------------------------------------------------------------------
# config.json, generation_config.json


def hf_config(info, config, dtype: str) -> dict:
    """config.json for transformers' NanoChatConfig (5.x names; rope_theta also for 4.x readers)."""
    return {
        "architectures": ["NanoChatForCausalLM"],
        "model_type": "nanochat",
        "vocab_size": config.vocab_size,
        "hidden_size": config.n_embd,
        "intermediate_size": 4 * config.n_embd,
        "num_hidden_layers": config.n_layer,
        "num_attention_heads": config.n_head,
        "num_key_value_heads": config.n_kv_head,
        # nanochat precomputes rotary tables for 10 x sequence_len positions and refuses longer
        # contexts; it was trained at sequence_len (see README.md).
        "max_position_embeddings": 10 * config.sequence_len,
        "hidden_act": "relu2",
        "rms_norm_eps": RMS_NORM_EPS,
        "rope_parameters": {"rope_type": "default", "rope_theta": 10000.0},
        "rope_theta": 10000.0,
        "final_logit_softcapping": float(info.softcap),
        "attention_bias": False,
        "attention_dropout": 0.0,
        "initializer_range": 0.02,
        "tie_word_embeddings": False,
        "use_cache": True,
        "bos_token_id": None,  # filled in by export_hf from the tokenizer
        "eos_token_id": None,
        "pad_token_id": None,
        "dtype": dtype,
        "transformers_version": TRANSFORMERS_VERIFIED,
    }


# ---------------------------------------------------------------------------------------------
# Tokenizer: tiktoken ranks -> a byte-level BPE tokenizer.json


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2's reversible byte -> printable character map used by byte-level BPE."""
    keep = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAC + 1)) + list(range(0xAE, 0xFF + 1))
    mapping, extra = {}, 0
    for b in range(256):
        if b in keep:
            mapping[b] = chr(b)
        else:
            mapping[b] = chr(256 + extra)
            extra += 1
    return mapping


def bpe_vocab_and_merges(ranks: dict[bytes, int]) -> tuple[dict[str, int], list[str]]:
    """HF BPE vocab and merge list equivalent to tiktoken's rank-driven merging.

    tiktoken repeatedly merges the adjacent pair whose concatenation has the lowest rank; HF's
    BPE merges the pair listed earliest. Listing every split (left, right) of every token in
    the token's rank order (ties by the parts' ranks) makes the two agree; whole pre-tokens that
    are themselves tokens are taken directly in both (ignore_merges)."""
    byte_char = _bytes_to_unicode()

    def text(token: bytes) -> str:
        return "".join(byte_char[b] for b in token)

    vocab = {text(token): rank for token, rank in ranks.items()}
    merges = []
    for token, rank in ranks.items():
        if len(token) < 2:
            continue
        splits = [
            (ranks[token[:i]], ranks[token[i:]], token[:i], token[i:])
            for i in range(1, len(token))
            if token[:i] in ranks and token[i:] in ranks
        ]
        for left_rank, right_rank, left, right in sorted(splits):
            merges.append((rank, left_rank, right_rank, f"{text(left)} {text(right)}"))
    merges.sort()
    return vocab, [m[3] for m in merges]


def tokenizer_json(encoding) -> dict:
    """tokenizer.json for the `tokenizers` library: tiktoken's split regex, byte-level BPE, and
    nanochat's nine special tokens at their ids."""
    vocab, merges = bpe_vocab_and_merges(encoding._mergeable_ranks)
    specials = sorted(encoding._special_tokens.items(), key=lambda kv: kv[1])
    return {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": [
            {"id": token_id, "content": content, "single_word": False, "lstrip": False,
             "rstrip": False, "normalized": False, "special": True}
            for content, token_id in specials
        ],
        "normalizer": None,
        "pre_tokenizer": {
            "type": "Sequence",
            "pretokenizers": [
                {"type": "Split", "pattern": {"Regex": encoding._pat_str}, "behavior": "Isolated", "invert": False},
                {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": False},
            ],
        },
        "post_processor": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": False, "use_regex": True},
        "decoder": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True},
        "model": {
            "type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": None,
            "end_of_word_suffix": None, "fuse_unk": False, "byte_fallback": False, "ignore_merges": True,
            "vocab": vocab, "merges": merges,
        },
    }


# The chat template: nanochat's render_conversation + <|assistant_start|> (chat.render_messages).
# Content may be a string, OpenAI-style parts ({"type": "text", "text": …}, as vLLM passes them),
# or nanochat's assistant parts (text / python / python_output), which render with their tool
# tokens exactly as nanochat trains on them.
CHAT_TEMPLATE = """\
{#- nanochat's chat format (written by nanochat-tui export). -#}
{%- macro text_of(content) -%}
{%- if content is string -%}{{ content }}{%- else -%}
{%- for part in content -%}{%- if part['type'] == 'text' -%}{{ part['text'] }}{%- endif -%}{%- endfor -%}
{%- endif -%}
{%- endmacro -%}
{{- '<|bos|>' -}}
{%- set ns = namespace(system='') -%}
{%- for message in messages -%}
{%- if message['role'] == 'system' -%}
{%- if not loop.first -%}{{- raise_exception('a system message is only allowed as the first message') -}}{%- endif -%}
{%- set ns.system = text_of(message['content']) -%}
{%- elif message['role'] == 'user' -%}
{{- '<|user_start|>' -}}
{%- if ns.system -%}{{- ns.system + '\\n\\n' -}}{%- set ns.system = '' -%}{%- endif -%}
{{- text_of(message['content']) -}}
{{- '<|user_end|>' -}}
{%- elif message['role'] == 'assistant' -%}
{{- '<|assistant_start|>' -}}
{%- if message['content'] is string -%}{{- message['content'] -}}{%- else -%}
{%- for part in message['content'] -%}
{%- if part['type'] == 'text' -%}{{- part['text'] -}}
{%- elif part['type'] == 'python' -%}{{- '<|python_start|>' + part['text'] + '<|python_end|>' -}}
{%- elif part['type'] == 'python_output' -%}{{- '<|output_start|>' + part['text'] + '<|output_end|>' -}}
{%- endif -%}
{%- endfor -%}
{%- endif -%}
{{- '<|assistant_end|>' -}}
{%- else -%}
{{- raise_exception('nanochat knows the roles system, user and assistant, not ' + message['role']) -}}
{%- endif -%}
{%- endfor -%}
{%- if add_generation_prompt -%}{{- '<|assistant_start|>' -}}{%- endif -%}
"""


def tokenizer_config(encoding, max_length: int) -> dict:
    specials = sorted(encoding._special_tokens.items(), key=lambda kv: kv[1])
    return {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "bos_token": "<|bos|>",
        "eos_token": "<|assistant_end|>",
        "pad_token": "<|assistant_end|>",
        "add_bos_token": False,
        "add_eos_token": False,
        "clean_up_tokenization_spaces": False,
        "model_max_length": max_length,
        "added_tokens_decoder": {
            str(token_id): {"content": content, "lstrip": False, "normalized": False, "rstrip": False,
                            "single_word": False, "special": True}
            for content, token_id in specials
        },
        "chat_template": CHAT_TEMPLATE,
    }


def special_tokens_map() -> dict:
    return {"bos_token": "<|bos|>", "eos_token": "<|assistant_end|>", "pad_token": "<|assistant_end|>"}


# ---------------------------------------------------------------------------------------------
# Weights


def hf_state_dict(model, vocab_size: int) -> dict:
    """nanochat names -> HF NanoChat names (spec §11), embedding/head rows cut to vocab_size."""
    sd = model.state_dict()
    out = {
        "model.embed_tokens.weight": sd["transformer.wte.weight"][:vocab_size],
        "lm_head.weight": sd["lm_head.weight"][:vocab_size],
    }
    names = {"attn.c_q": "self_attn.q_proj", "attn.c_k": "self_attn.k_proj", "attn.c_v": "self_attn.v_proj",
             "attn.c_proj": "self_attn.o_proj", "mlp.c_fc": "mlp.fc1", "mlp.c_proj": "mlp.fc2"}
    for i in range(model.config.n_layer):
        for ours, theirs in names.items():
            out[f"model.layers.{i}.{theirs}.weight"] = sd[f"transformer.h.{i}.{ours}.weight"]
    expected = 2 + 6 * model.config.n_layer
    if len(sd) != expected:  # a gen1 model has exactly these tensors; anything else is a bug
        extra = sorted(set(sd) - {"transformer.wte.weight", "lm_head.weight"}
                       - {f"transformer.h.{i}.{k}.weight" for i in range(model.config.n_layer) for k in names})
        raise ExportError(f"the model has tensors with no Hugging Face equivalent: {', '.join(extra[:4])}")
    return out


_SAFETENSORS_DTYPES = {"float32": "F32", "bfloat16": "BF16"}


def write_safetensors(path: Path, tensors: dict, dtype: str) -> None:
    """The safetensors layout: u64 little-endian header size, JSON header (offsets into the
    data block, padded with spaces to 8 bytes), then each tensor's little-endian bytes.
    Streams one tensor at a time, so a large model is never duplicated in memory."""
    import torch

    torch_dtype = {"float32": torch.float32, "bfloat16": torch.bfloat16}[dtype]
    header: dict[str, Any] = {"__metadata__": {"format": "pt"}}
    offset = 0
    itemsize = torch.tensor([], dtype=torch_dtype).element_size()
    for name, t in tensors.items():
        nbytes = t.numel() * itemsize
        header[name] = {"dtype": _SAFETENSORS_DTYPES[dtype], "shape": list(t.shape),
                        "data_offsets": [offset, offset + nbytes]}
        offset += nbytes
    blob = json.dumps(header, separators=(",", ":")).encode("utf-8")
    blob += b" " * (-len(blob) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(blob)))
        f.write(blob)
        for t in tensors.values():
            data = t.detach().to(device="cpu", dtype=torch_dtype).contiguous()
            f.write(data.view(torch.uint8).numpy().tobytes())


# ---------------------------------------------------------------------------------------------
# The model card


def model_card(info, config, dtype: str, verification: str | None) -> str:
    source = f"{info.source} checkpoint {info.model_tag}, step {info.step}"
    softcap_note = "" if info.softcap == 15 else (
        f" (nanochat's default is 15; this export was made with a --softcap {info.softcap:g} override)")
    checked = verification or ("Not verified at export time (run `nanochat-tui export --verify` to "
                               "load the files with transformers and compare logits with nanochat-tui's).")
    return f"""\
# nanochat {info.model_tag} ({info.generation}) in Hugging Face format

A [nanochat](https://github.com/karpathy/nanochat) model ({source}) converted by
`nanochat-tui export --format hf` for `transformers`' `NanoChatForCausalLM` and the serving
engines that load it (vLLM through its Transformers backend, …).

| | |
|---|---|
| architecture | nanochat generation 1: {config.n_layer} layers, width {config.n_embd}, {config.n_head} heads ({config.n_kv_head} key/value), head size {config.head_dim}, relu² MLP of width {4 * config.n_embd} |
| vocabulary | {config.vocab_size} tokens (nanochat's tiktoken BPE, rebuilt as a `tokenizers` byte-level BPE) |
| context | trained at {config.sequence_len} tokens; `max_position_embeddings` is {10 * config.sequence_len}, the 10x limit of nanochat's rotary tables |
| weights | {dtype}, `model.safetensors` |
| logit softcap | {info.softcap:g}{softcap_note} |

## Chat format
`tokenizer.apply_chat_template(messages, add_generation_prompt=True)` renders nanochat's format:
`<|bos|>`, each user turn as `<|user_start|>…<|user_end|>`, each assistant turn as
`<|assistant_start|>…<|assistant_end|>`, a first `system` message folded into the first user
message followed by a blank line (nanochat has no system role), and `<|assistant_start|>` as the
generation prompt. Generation stops at `<|assistant_end|>` or `<|bos|>` (generation_config.json).
The same template is in tokenizer_config.json and chat_template.jinja.

## Where it differs from nanochat (read before comparing outputs)
- **Rotary precision.** nanochat's generation-1 code rounded its rotary cos/sin tables to
  bfloat16 even when it computed in float32; transformers computes them in float32 and casts
  them to the activation dtype. In float32 the logits therefore differ from nanochat's by about
  1e-2 (0.014 on nanochat-tui's test fixture, with the same argmax at every position); against
  nanochat's math with float32 tables they agree to float rounding (test: `tests/test_export_hf.py`).
- **Normalization epsilon.** nanochat's RMSNorm has no weights and uses the dtype's machine
  epsilon; `rms_norm_eps` is set to 2^-23, float32's, which makes the float32 math identical.
- **Vocabulary rows.** nanochat pads its embedding and output rows to a multiple of 64 and crops
  the logits back to the vocabulary; the export keeps only the {config.vocab_size} real rows, so
  the logits are nanochat's cropped logits and no padding id can be sampled.
- **Special tokens in text.** nanochat encodes user text with tiktoken's ordinary encoding, so a
  user typing `<|assistant_end|>` sends plain characters; a Hugging Face tokenizer (and servers
  built on it) turns those strings into the special tokens.
- **Calculator tool.** nanochat's engine runs the calculator: when the model writes
  `<|python_start|>expr<|python_end|>` it forces `<|output_start|>result<|output_end|>` into the
  sequence. Generic servers do not, so the model writes the result itself (often wrongly), and
  servers that skip special tokens show the expression inline.

## Verification
{checked}

Written by nanochat-tui for transformers {TRANSFORMERS_VERIFIED} (`model_type` "nanochat").
"""


# ---------------------------------------------------------------------------------------------
# Verification (optional; needs transformers)

VERIFY_CONVERSATION = [
    {"role": "system", "content": "You are a helpful assistant."},
    {"role": "user", "content": "Why is the sky blue? Answer in two sentences, 2 + 2 = 4 ✓."},
]


def verify_export(chat_model, export_dir: Path, device: str = "cpu") -> tuple[str, float, float, bool]:
    """Load the export with transformers and compare with nanochat-tui's own model.

    Checks (float32 export): the chat template gives nanochat's prompt ids; the logits equal
    ours computed with float32 rotary tables within 1e-3; against ours with nanochat's own
    (bf16-rounded, gen1) tables the argmax agrees. A bfloat16 export is compared the same way
    but only reported, since its rounded weights move logits by more than any fixed tolerance.
    Returns (one line describing the result, max difference vs float32 tables, argmax agreement,
    whether the export is float32); raises ExportError when the chat template disagrees.
    """
    import torch

    try:
        import transformers
        from transformers import AutoModelForCausalLM, AutoTokenizer
    except ImportError:
        raise ExportError("--verify needs the transformers package (pip install transformers)") from None
    tok = AutoTokenizer.from_pretrained(export_dir)
    hf = AutoModelForCausalLM.from_pretrained(export_dir, dtype=torch.float32).to(device).eval()
    ours_ids = chat_model.render(VERIFY_CONVERSATION)
    hf_ids = tok.apply_chat_template(VERIFY_CONVERSATION, add_generation_prompt=True, tokenize=True,
                                     return_dict=False)
    if hasattr(hf_ids, "keys"):  # some versions return a BatchEncoding
        hf_ids = hf_ids["input_ids"]
    if list(hf_ids) != ours_ids:
        raise ExportError("verification failed: the exported chat template does not render nanochat's prompt ids")
    with torch.inference_mode():
        theirs = hf(torch.tensor([ours_ids], device=device)).logits[0].float().cpu()
    ours_bf16_tables = chat_model.logits(ours_ids)
    model = chat_model.model
    arch = model.arch
    try:
        model.arch = replace(arch, bf16_rotary=False)
        model.refresh_rotary(model.lm_head.weight.dtype)
        ours_exact = chat_model.logits(ours_ids)
    finally:
        model.arch = arch
        model.refresh_rotary(model.lm_head.weight.dtype)
    exact_diff = (theirs - ours_exact).abs().max().item()
    table_diff = (theirs - ours_bf16_tables).abs().max().item()
    agree = (theirs.argmax(-1) == ours_bf16_tables.argmax(-1)).float().mean().item()
    exact = hf.dtype == torch.float32 and next(hf.parameters()).dtype == torch.float32
    line = (f"transformers {transformers.__version__} on {device}, {len(ours_ids)}-token prompt: chat template ids "
            f"identical; max logit difference {exact_diff:.2e} vs nanochat-tui with float32 rotary tables, "
            f"{table_diff:.2e} vs nanochat's bf16 tables; argmax agreement {agree:.0%}")
    return line, exact_diff, agree, exact


# ---------------------------------------------------------------------------------------------
# The export


@dataclass(frozen=True)
class ExportResult:
    outdir: Path
    files: tuple[str, ...]
    verification: str | None


# Written into every export: --force replaces only a folder that holds one (docs/security.md).
MARKER = ".nanochat-tui-export"
MARKER_MAX_BYTES = 64 * 1024


def _marker_files(outdir: Path) -> set[str] | None:
    """The file names a previous export wrote into `outdir` (from its marker), or None when
    `outdir` holds no valid marker. The marker must be a small regular file (no link)."""
    path = outdir / MARKER
    try:
        st = path.lstat()
        if not stat.S_ISREG(st.st_mode) or st.st_size > MARKER_MAX_BYTES:
            return None
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError, RecursionError):
        return None
    files = data.get("files") if isinstance(data, dict) and data.get("nanochat_tui_export") == 1 else None
    if not isinstance(files, list) or not all(isinstance(f, str) for f in files):
        return None
    return {*files, MARKER}


def prepare_outdir(outdir: Path, force: bool) -> None:
    """Refuse an OUTDIR that would lose data: not a directory; non-empty without force; with
    force, anything but a previous export (its marker file, and no file it did not write)."""
    if outdir.exists() or outdir.is_symlink():
        if outdir.is_symlink() or not outdir.is_dir():
            raise ExportError(f"{outdir} exists and is not a directory")
        present = sorted(p.name for p in outdir.iterdir())
        if not present:
            return
        if not force:
            raise ExportError(f"{outdir} exists and is not empty (use --force to replace a previous export)")
        written = _marker_files(outdir)
        if written is None:
            raise ExportError(f"{outdir} is not a previous export (no {MARKER} marker): --force replaces only "
                              "an export; choose another OUTDIR or empty this one yourself")
        extra = [name for name in present if name not in written or (outdir / name).is_dir()]
        if extra:
            shown = ", ".join(extra[:3]) + (" …" if len(extra) > 3 else "")
            raise ExportError(f"{outdir} holds files the export did not write ({shown}): move them out, "
                              "then run again with --force")


def export_hf(chat_model: "ChatModel", outdir: str | os.PathLike, *, dtype: str = "float32",
              force: bool = False, verify: bool = False, verify_device: str = "cpu",
              progress: Progress | None = None) -> ExportResult:
    """Write `chat_model` (a loaded gen1 ChatModel) as a Hugging Face NanoChat model in `outdir`.

    Raises ExportError (one line) for other generations, a non-empty outdir without `force`, a
    failed verification, or any write error; nothing is left at `outdir` in those cases (with
    `force`, the old contents stay until the new export is complete).
    """
    say = progress or (lambda _line: None)
    if dtype not in EXPORT_DTYPES:
        raise ExportError(f"unknown export dtype {dtype!r}: choose float32 or bfloat16")
    info, model = chat_model.info, chat_model.model
    config = model.config
    check_exportable(info.generation, config, info.softcap)
    outdir = Path(outdir).expanduser()
    prepare_outdir(outdir, force)
    source = Path(info.checkpoint_dir).resolve()
    if outdir.exists() and (source == outdir.resolve() or outdir.resolve() in source.parents):
        raise ExportError(f"{outdir} contains the checkpoint being exported; choose another directory")

    weights_dtype = str(model.lm_head.weight.dtype).removeprefix("torch.")
    if weights_dtype != "float32" and dtype == "float32":
        say(f"note: the model was loaded in {weights_dtype}; load it on the CPU in float32 for an exact export")

    parent = outdir.resolve().parent
    parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{outdir.name}.export-", dir=parent))
    verification = None
    try:
        encoding = chat_model.tokenizer.enc
        specials = encoding._special_tokens
        cfg = hf_config(info, config, dtype)
        cfg["bos_token_id"] = specials["<|bos|>"]
        cfg["eos_token_id"] = [specials["<|assistant_end|>"], specials["<|bos|>"]]
        cfg["pad_token_id"] = specials["<|assistant_end|>"]
        say(f"Writing {outdir}/config.json ({info.generation}, {config.n_layer} layers, softcap {info.softcap:g})")
        _write_json(tmp / "config.json", cfg)
        _write_json(tmp / "generation_config.json", {
            "bos_token_id": cfg["bos_token_id"], "eos_token_id": cfg["eos_token_id"],
            "pad_token_id": cfg["pad_token_id"],
            # nanochat's chat_cli defaults; servers use them when a request sets nothing
            "do_sample": True, "temperature": 0.6, "top_k": 50,
            "transformers_version": TRANSFORMERS_VERIFIED,
        })
        say(f"Writing {outdir}/model.safetensors ({dtype})")
        write_safetensors(tmp / "model.safetensors", hf_state_dict(model, config.vocab_size), dtype)
        say(f"Writing {outdir}/tokenizer.json ({encoding.n_vocab} tokens) and the chat template")
        _write_json(tmp / "tokenizer.json", tokenizer_json(encoding), indent=None)
        _write_json(tmp / "tokenizer_config.json", tokenizer_config(encoding, 10 * config.sequence_len))
        _write_json(tmp / "special_tokens_map.json", special_tokens_map())
        (tmp / "chat_template.jinja").write_text(CHAT_TEMPLATE, encoding="utf-8")
        if verify:
            say("Verifying: loading the export with transformers and comparing logits")
            verification, exact_diff, agree, exact = verify_export(chat_model, tmp, verify_device)
            say(verification)
            if exact and exact_diff > 1e-3:
                raise ExportError(f"verification failed: {verification}")
            if agree < 0.9:
                raise ExportError(f"verification failed: {verification}")
        (tmp / "README.md").write_text(model_card(info, config, dtype, verification), encoding="utf-8")
        _write_json(tmp / MARKER, {"nanochat_tui_export": 1, "format": "hf", "files": sorted(FILES),
                                   "generation": info.generation, "source": info.origin})
        # mkdtemp made it 0700; the export is an ordinary folder (the umask's permissions).
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o777 & ~umask)
        _move_into_place(tmp, outdir)
    except BaseException as e:
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(e, OSError):
            raise ExportError(f"cannot write {outdir}: {e.strerror or e}") from None
        raise
    say(f"Exported to {outdir}")
    return ExportResult(outdir, tuple(sorted(FILES)), verification)


def export_checkpoint_hf(outdir: str | os.PathLike, base_dir=None, source: str = "sft",
                         model_tag: str | None = None, step: int | None = None,
                         softcap: float | None = None, **kwargs) -> ExportResult:
    """Find a checkpoint with nanochat's rules (no demo fallback), load it on the CPU in float32
    and export it. Raises CheckpointError / ExportError with one line."""
    from .api import load_chat_model

    m = load_chat_model(base_dir=base_dir, source=source, model_tag=model_tag, step=step, device="cpu",
                        dtype="float32", softcap=softcap, allow_demo=False, progress=kwargs.get("progress"))
    return export_hf(m, outdir, **kwargs)


def _write_json(path: Path, obj: Any, indent: int | None = 2) -> None:
    path.write_text(json.dumps(obj, indent=indent, ensure_ascii=False) + "\n", encoding="utf-8")


def _move_into_place(tmp: Path, outdir: Path) -> None:
    """Rename the finished temp dir to outdir; an existing outdir (empty, or forced) is moved
    aside first and deleted only after the rename succeeded."""
    if not (outdir.exists() or outdir.is_symlink()):
        os.replace(tmp, outdir)
        return
    aside = Path(tempfile.mkdtemp(prefix=f".{outdir.name}.old-", dir=tmp.parent))
    os.rmdir(aside)
    os.replace(outdir, aside)
    try:
        os.replace(tmp, outdir)
    except BaseException:
        os.replace(aside, outdir)
        raise
    shutil.rmtree(aside, ignore_errors=True)
