"""Reading a checkpoint's files without trusting them (nanochat-format.md §2-§4, §10).

A checkpoint is three files from wherever a user got them (a training box, a copy, the Hugging
Face Hub). Each is read under the rules in docs/security.md "Checkpoint files":
- only regular files, after links are resolved (a FIFO would block forever, `/dev/zero` never
  ends), each under a size cap checked before reading;
- the meta's numbers are bounded (META_BOUNDS) before they size anything;
- `torch.load(weights_only=True)` (no code runs), then every tensor must be floating point and
  backed by as many bytes as its shape needs (a stride-0 tensor would grow at `.to()`);
- the memory a load will take is computed from the shapes and compared with what the device
  has before any of it is taken.
Every refusal is a CheckpointError: one line naming the file and the reason.
"""

from __future__ import annotations

import json
import math
import os
import re
import stat
from dataclasses import replace
from pathlib import Path

from .errors import NanochatError

COMPILED_PREFIX = "_orig_mod."

# Size caps, checked with fstat before a byte is read. Real files are far smaller: a meta is a
# few KB, the 65536-token tokenizer pickle about 1 MB, a d32 model 7.5 GB in fp32.
META_MAX_BYTES = 16 * 2**20
TOKENIZER_MAX_BYTES = 256 * 2**20
MODEL_MAX_BYTES = 2**40

# Upper bounds of meta_<step>.json's model_config (docs/checkpoints.md "Meta bounds"). nanochat
# itself writes sequence_len 2048, vocab 65536 or 32768, n_layer <= 34, n_embd <= 2176 and
# n_head = n_kv_head = n_embd / 128; the bounds leave ample room while keeping every table that a
# meta sizes (rotary tables of 10 x sequence_len rows, the KV cache) finite and checkable.
META_BOUNDS = {
    "sequence_len": 131_072,
    "vocab_size": 2**20,
    "n_layer": 256,
    "n_head": 1024,
    "n_kv_head": 1024,
    "n_embd": 65_536,
}
WINDOW_PATTERN_MAX = 256  # characters; the pattern is tiled over at most n_layer layers
JSON_INT_MAX_DIGITS = 40  # any real meta integer fits in 64 bits (20 digits)

WEIGHT_DTYPES = ("float32", "bfloat16", "float16")  # what nanochat writes (and fp16 conversions)

ZIP_MAGIC = b"PK\x03\x04"  # torch.save writes a zip archive


class CheckpointError(NanochatError):
    """A user-facing problem with finding or loading a checkpoint. `str()` is one line."""


# ---------------------------------------------------------------------------------------------
# Regular files under a size cap


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"),
                       (stat.S_ISDIR, "a directory")):
        if test(mode):
            return name
    return "not a regular file"


def human_bytes(n: float) -> str:
    for unit in ("bytes", "KB", "MB", "GB", "TB"):
        if n < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"  # pragma: no cover


def open_regular(path: Path, cap: int, what: str) -> tuple[int, int]:
    """Open `path` (links followed) for reading and return (fd, size) if it is a regular file of
    at most `cap` bytes. O_NONBLOCK: opening a FIFO must not wait for a writer."""
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        raise CheckpointError(f"missing {what} {path}") from None
    except OSError as e:
        raise CheckpointError(f"cannot read {what} {path}: {e.strerror or e}") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise CheckpointError(f"{what} {path} is {_kind(st.st_mode)}, not a regular file: refused")
        if st.st_size > cap:
            raise CheckpointError(
                f"{what} {path} is {human_bytes(st.st_size)}, more than the {human_bytes(cap)} "
                f"a nanochat {what} can be: refused"
            )
    except BaseException:
        os.close(fd)
        raise
    return fd, st.st_size


def read_capped(path: Path, cap: int, what: str) -> bytes:
    """The whole content of a regular file of at most `cap` bytes (see open_regular)."""
    fd, size = open_regular(path, cap, what)
    try:
        with os.fdopen(fd, "rb", closefd=False) as f:
            data = f.read(cap + 1)  # never more than the cap, even if the file grows meanwhile
    except OSError as e:
        raise CheckpointError(f"cannot read {what} {path}: {e.strerror or e}") from None
    finally:
        os.close(fd)
    if len(data) > cap:
        raise CheckpointError(f"{what} {path} grew past {human_bytes(cap)} while being read: refused")
    return data


# ---------------------------------------------------------------------------------------------
# Meta


def _bounded_int(text: str) -> int:
    if len(text.lstrip("-")) > JSON_INT_MAX_DIGITS:
        raise ValueError(f"a number with {len(text)} digits (at most {JSON_INT_MAX_DIGITS} are accepted)")
    return int(text)


def read_meta(meta_path: Path) -> dict:
    """meta_<step>.json as a dict: a regular file under META_MAX_BYTES, UTF-8 JSON, integers of
    at most JSON_INT_MAX_DIGITS digits, nesting Python can parse."""
    data = read_capped(meta_path, META_MAX_BYTES, "metadata file")
    try:
        meta = json.loads(data.decode("utf-8"), parse_int=_bounded_int)
    except UnicodeDecodeError:
        raise CheckpointError(f"cannot read {meta_path}: it is not UTF-8 text") from None
    except json.JSONDecodeError as e:
        raise CheckpointError(f"cannot read {meta_path}: not JSON ({e.msg} at line {e.lineno})") from None
    except RecursionError:
        raise CheckpointError(f"cannot read {meta_path}: its JSON is nested too deeply") from None
    except ValueError as e:  # _bounded_int, or Python's own int-digits limit
        reason = str(e) if "digits" in str(e) and "accepted" in str(e) else "a number with too many digits"
        raise CheckpointError(f"cannot read {meta_path}: {reason}") from None
    if not isinstance(meta, dict):
        raise CheckpointError(f"{meta_path} is not a JSON object")
    return meta


def read_model_config(meta_path: Path):
    """meta_<step>.json -> ModelConfig, with every field checked against META_BOUNDS."""
    from .model import ModelConfig

    meta = read_meta(meta_path)
    cfg = meta.get("model_config")
    if not isinstance(cfg, dict):
        raise CheckpointError(f"{meta_path} has no model_config object")
    fields = {}
    for key, bound in META_BOUNDS.items():
        value = cfg.get(key)
        if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
            raise CheckpointError(f"{meta_path}: model_config.{key} must be a positive integer, got {_short(value)}")
        if value > bound:
            raise CheckpointError(
                f"{meta_path}: model_config.{key} is {value}, above the {bound} this program accepts "
                "(docs/checkpoints.md, meta bounds)"
            )
        fields[key] = value
    pattern = cfg.get("window_pattern")
    if pattern is not None and (
        not isinstance(pattern, str) or len(pattern) > WINDOW_PATTERN_MAX or not re.fullmatch(r"[SsLl]+", pattern)
    ):
        raise CheckpointError(
            f"{meta_path}: window_pattern must be a string of at most {WINDOW_PATTERN_MAX} S and L, got {_short(pattern)}"
        )
    config = ModelConfig(window_pattern=pattern, **fields)
    if config.n_embd % config.n_head or config.head_dim % 2:
        raise CheckpointError(f"{meta_path}: n_embd {config.n_embd} does not split into {config.n_head} heads of even size")
    if config.n_head % config.n_kv_head:
        raise CheckpointError(f"{meta_path}: n_head {config.n_head} is not a multiple of n_kv_head {config.n_kv_head}")
    return config


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:59] + "…"


# ---------------------------------------------------------------------------------------------
# Weights


def check_model_file(model_path: Path) -> int:
    """A regular file under MODEL_MAX_BYTES that starts like a zip archive; returns its size.
    Read once, here: a later torch failure is described from its message, not by re-reading."""
    fd, size = open_regular(model_path, MODEL_MAX_BYTES, "model file")
    try:
        head = os.pread(fd, len(ZIP_MAGIC), 0)
    except OSError as e:
        raise CheckpointError(f"cannot read model file {model_path}: {e.strerror or e}") from None
    finally:
        os.close(fd)
    if head != ZIP_MAGIC:
        what = "it is empty" if size == 0 else "it is not a zip archive, which torch.save writes"
        raise CheckpointError(f"cannot load {model_path}: not a PyTorch checkpoint ({what})")
    return size


def _load_failure(e: Exception) -> str:
    """torch.load's reason in one short line: the kind of damage, not torch's paragraph."""
    text = " ".join(str(e).split()) or type(e).__name__
    if "Weights only load failed" in text:
        return "it holds objects other than tensors, which are never unpickled here (weights_only=True)"
    # The file starts like a zip (check_model_file), so a zip-level failure ("failed finding
    # central directory", "Invalid argument", ...) means it was cut off or damaged.
    if any(s in text for s in ("central directory", "zip archive", "PytorchStreamReader", "Invalid argument")):
        return "the file is truncated or not a PyTorch checkpoint (its zip archive cannot be read)"
    first = text.split(". ")[0]
    return first if len(first) <= 200 else first[:199] + "…"


def read_state_dict(model_path: Path) -> dict:
    """torch.load with weights_only=True (no code runs), the tensors checked (check_tensors),
    then torch.compile's prefix stripped."""
    import torch

    check_model_file(model_path)
    try:
        state = torch.load(model_path, map_location="cpu", weights_only=True, mmap=True)
    except FileNotFoundError:
        raise CheckpointError(f"missing model file {model_path}") from None
    except Exception as e:
        raise CheckpointError(f"cannot load {model_path}: {_load_failure(e)}") from None
    if not isinstance(state, dict) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()
    ):
        raise CheckpointError(f"{model_path} is not a state dict of tensors")
    check_tensors(state, model_path)
    # A real prefix removal (nanochat once used lstrip, which strips a character set).
    return {k.removeprefix(COMPILED_PREFIX): v for k, v in state.items()}


def check_tensors(state: dict, path: Path) -> None:
    """Every tensor floating point, dense, and backed by the bytes its shape needs.

    A tensor whose storage is smaller than numel x element size (stride 0, overlapping strides)
    would pass every shape check and then allocate its full shape at `.to()`: refused."""
    import torch

    for name, t in state.items():
        dtype = str(t.dtype).removeprefix("torch.")
        if dtype not in WEIGHT_DTYPES:
            raise CheckpointError(
                f"{path}: tensor {_short(name)} has dtype {dtype}; nanochat weights are "
                f"{' or '.join(WEIGHT_DTYPES)}: refused"
            )
        if t.layout != torch.strided:
            raise CheckpointError(f"{path}: tensor {_short(name)} is not a dense tensor ({t.layout}): refused")
        needed = t.numel() * t.element_size()
        available = t.untyped_storage().nbytes() - t.storage_offset() * t.element_size()
        if needed > available:
            raise CheckpointError(
                f"{path}: tensor {_short(name)} of shape {list(t.shape)} needs {human_bytes(needed)} "
                f"but its storage holds {human_bytes(max(available, 0))} (repeated or overlapping strides): refused"
            )


def detect_generation(state: dict) -> str:
    """nanochat-format.md §9.3, applied in order."""
    if "smear_gate.weight" in state:
        return "gen5-smear-backout"
    gates = [v for k, v in state.items() if k.startswith("transformer.h.") and k.endswith(".attn.ve_gate.weight")]
    if gates:
        if gates[0].ndim == 2 and gates[0].shape[1] == 12:
            return "gen4-rope100k-qkscale"
        return "gen3-engram" if "bigram_embed.embed.weight" in state else "gen3-value-embeds"
    if "v0_lambdas" in state:
        if "value_embed_A.weight" in state:
            return "gen3-proto-lowrank-ve"
        if "value_embed.weight" in state:
            return "gen3-proto-single-ve"
        return "gen3-proto-perlayer-ve"
    if "resid_lambdas" in state:
        return "gen2-resid-x0-lambdas"
    return "gen1-original"


def _check_shapes(state: dict, config, path: Path) -> int:
    """Cross-check the meta against the tensors; return the embedding's row count."""
    wte = state.get("transformer.wte.weight")
    if wte is None or wte.ndim != 2:
        raise CheckpointError(f"{path} has no transformer.wte.weight matrix: not a nanochat checkpoint")
    layers = {int(m.group(1)) for k in state if (m := re.match(r"transformer\.h\.(\d+)\.", k))}
    if len(layers) != config.n_layer:
        raise CheckpointError(f"{path} has {len(layers)} layers but its meta says n_layer {config.n_layer}")
    rows, width = wte.shape
    if width != config.n_embd:
        raise CheckpointError(f"{path}: embedding width {width} but meta n_embd {config.n_embd}")
    if rows < config.vocab_size:
        raise CheckpointError(f"{path}: embedding has {rows} rows, fewer than vocab_size {config.vocab_size}")
    c_k = state.get("transformer.h.0.attn.c_k.weight")
    if c_k is not None and c_k.shape[0] != config.n_kv_head * config.head_dim:
        raise CheckpointError(
            f"{path}: key projection has {c_k.shape[0]} rows, expected n_kv_head {config.n_kv_head} x head_dim {config.head_dim}"
        )
    return rows


# ---------------------------------------------------------------------------------------------
# Memory


def memory_needed(state: dict, config, element_size: int) -> int:
    """Bytes a load takes on its device: the weights in the compute dtype, the rotary tables
    (10 x sequence_len rows, built in fp32 then converted) and a KV cache for one full training
    context (sequence_len positions). See docs/checkpoints.md "Memory check"."""
    weights = sum(t.numel() for t in state.values()) * element_size
    rotary = 10 * config.sequence_len * (config.head_dim // 2) * 2 * (4 + element_size)
    kv = 2 * config.n_layer * config.n_kv_head * config.head_dim * config.sequence_len * element_size
    return weights + rotary + kv


def available_memory(device) -> int | None:
    """Free memory on `device` in bytes, or None where it cannot be told."""
    if device.type == "cuda":
        import torch

        try:
            free, _total = torch.cuda.mem_get_info(device)
        except Exception:  # pragma: no cover - a driver that cannot say
            return None
        return int(free)
    return _host_available()


def _host_available() -> int | None:
    """MemAvailable from /proc/meminfo, lowered to a cgroup v2 limit if one applies."""
    found: list[int] = []
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    found.append(int(line.split()[1]) * 1024)
                    break
    except (OSError, ValueError):
        pass
    try:
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        if limit != "max":
            used = int(Path("/sys/fs/cgroup/memory.current").read_text().strip())
            # Page cache the kernel can drop is not in use (the "working set" rule of
            # container runtimes): without this a recently read checkpoint looks like a shortage.
            for line in Path("/sys/fs/cgroup/memory.stat").read_text().splitlines():
                if line.startswith("inactive_file "):
                    used -= int(line.split()[1])
                    break
            found.append(max(int(limit) - max(used, 0), 0))
    except (OSError, ValueError):
        pass
    if not found:
        try:
            found.append(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
        except (OSError, ValueError, AttributeError):
            return None
    return min(found)


def check_memory(state: dict, config, dtype, device, path: Path, available: int | None = None) -> int:
    """Refuse, before taking it, a load that needs more memory than `device` has free."""
    import torch

    need = memory_needed(state, config, torch.empty((), dtype=dtype).element_size())
    have = available_memory(device) if available is None else available
    if have is not None and need > have:
        where = "on the GPU" if device.type == "cuda" else "in memory"
        raise CheckpointError(
            f"this checkpoint needs {human_bytes(need)}; {human_bytes(have)} available {where} "
            f"({path.name}; try a smaller dtype or another device)"
        )
    return need


# ---------------------------------------------------------------------------------------------
# Building the model


def _state_dict_failure(e: Exception) -> str:
    """load_state_dict's multi-line, tab-indented report as one line with its reason."""
    lines = [" ".join(line.split()) for line in str(e).splitlines()]
    reasons = [line for line in lines if line and not line.startswith("Error(s) in loading state_dict")]
    text = "; ".join(reasons) or type(e).__name__
    return text if len(text) <= 300 else text[:299] + "…"


def build_model(state: dict, config, generation: str, softcap: float | None, path: Path):
    """Construct the detected generation's model and load the weights strictly."""
    import torch

    from .model import GENERATIONS, GPT

    arch = GENERATIONS[generation]
    if softcap is not None:
        if not (isinstance(softcap, (int, float)) and math.isfinite(softcap) and softcap > 0):
            raise CheckpointError(f"softcap must be a positive number, got {_short(softcap)}")
        arch = replace(arch, softcap=float(softcap))
    rows = _check_shapes(state, config, path)
    with torch.device("meta"):  # no wasted random init; real tensors come from the file
        model = GPT(config, arch, vocab_rows=rows)
    expected = set(model.state_dict().keys())
    missing, unexpected = sorted(expected - state.keys()), sorted(state.keys() - expected)
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"missing {', '.join(missing[:4])}{' …' if len(missing) > 4 else ''}")
        if unexpected:
            parts.append(f"unexpected {', '.join(map(_short, unexpected[:4]))}{' …' if len(unexpected) > 4 else ''}")
        raise CheckpointError(f"{path} does not match a {generation} model: {'; '.join(parts)}")
    try:
        model.load_state_dict(state, strict=True, assign=True)
    except RuntimeError as e:
        raise CheckpointError(f"{path}: {_state_dict_failure(e)}") from None
    model.refresh_rotary(torch.float32)  # the tables were built on the meta device
    return model
