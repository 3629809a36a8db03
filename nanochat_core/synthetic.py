"""Random-weight models in nanochat's format, for benchmarks at real model shapes.

A benchmark of nanochat's d20 shape needs no trained weights, only the right sizes; but the chat
path (multi-turn, serving) also needs a tokenizer. `synthetic_tokenizer` builds a byte-level BPE
of any vocabulary size (merges of common letter pairs, deterministic), and `write_random_checkpoint`
saves model + meta + tokenizer exactly as nanochat lays them out, so the normal loader reads them.
"""

from __future__ import annotations

import json
import pickle
import random
from pathlib import Path

import torch

from .model import GENERATIONS, GPT, ModelConfig
from .tokenizer import SPECIAL_TOKENS, Tokenizer

# nanochat's split pattern: GPT-4's, with digit runs split in groups of 1-2.
SPLIT_PATTERN = (
    r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}+|\p{N}{1,2}| ?[^\s\p{L}\p{N}]++[\r\n]*|\s*[\r\n]|\s+(?!\S)|\s+"""
)


def parse_shape(spec: str) -> ModelConfig:
    """'dDEPTH[:WIDTH[:VOCAB]]' -> a gen5 config shaped like nanochat's base_train (d20 = 1280 wide,
    10 heads, vocab 32768, sequence_len 2048, pattern SSSL)."""
    parts = spec.lower().lstrip("d").split(":")
    try:
        depth = int(parts[0])
        width = int(parts[1]) if len(parts) > 1 else -(-depth * 64 // 128) * 128
        vocab = int(parts[2]) if len(parts) > 2 else 32768
    except ValueError:
        raise ValueError(f"bad model shape {spec!r}: expected dDEPTH[:WIDTH[:VOCAB]], e.g. d20 or d8:512:8192") from None
    if depth < 1 or width < 64 or width % 64 or vocab < 300:
        raise ValueError(f"bad model shape {spec!r}: depth >= 1, width a multiple of 64, vocab >= 300")
    n_head = max(1, width // 128)
    return ModelConfig(sequence_len=2048, vocab_size=vocab, n_layer=depth, n_head=n_head,
                       n_kv_head=n_head, n_embd=width, window_pattern="SSSL")


def synthetic_encoding(vocab_size: int, seed: int = 0):
    """A tiktoken Encoding with nanochat's layout: 256 bytes, merges, then the 9 specials."""
    import tiktoken

    rng = random.Random(seed)
    ranks: dict[bytes, int] = {bytes([b]): b for b in range(256)}
    letters = [bytes([c]) for c in b"etaoinshrdlucmfwypvbgkjqxz"]
    pool = list(letters) + [b" " + x for x in letters]
    while len(ranks) < vocab_size - len(SPECIAL_TOKENS):
        token = rng.choice(pool) + rng.choice(letters)
        if token not in ranks:
            ranks[token] = len(ranks)
            pool.append(token)
    specials = {name: len(ranks) + i for i, name in enumerate(SPECIAL_TOKENS)}
    return tiktoken.Encoding(name="rustbpe", pat_str=SPLIT_PATTERN, mergeable_ranks=ranks,
                             special_tokens=specials)


def random_gpt(config: ModelConfig, seed: int = 0) -> GPT:
    model = GPT(config, GENERATIONS["gen5-smear-backout"])
    model.init_weights(seed=seed)
    g = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():  # give the zero-initialised projections some signal
        for p in model.parameters():
            if p.ndim == 2 and p.abs().sum() == 0:
                p.copy_(torch.randn(p.shape, generator=g) * 0.02)
    return model


def write_random_checkpoint(base_dir: str | Path, spec: str | ModelConfig, step: int = 1, seed: int = 0,
                            source_dir: str = "chatsft_checkpoints") -> Path:
    """Save a random gen5 model (shape 'dDEPTH[:WIDTH[:VOCAB]]' or a ModelConfig) as
    <base_dir>/<source_dir>/d<N>/ plus the tokenizer, with bf16 embedding tables as a CUDA run
    stores them. Returns the tag dir."""
    config = parse_shape(spec) if isinstance(spec, str) else spec
    base = Path(base_dir)
    model = random_gpt(config, seed)
    state = {
        k: (v.bfloat16() if k.startswith(("transformer.wte", "value_embeds")) else v.float())
        for k, v in model.state_dict().items()
    }
    tag_dir = base / source_dir / f"d{config.n_layer}"
    tag_dir.mkdir(parents=True, exist_ok=True)
    torch.save(state, tag_dir / f"model_{step:06d}.pt")
    meta = {"step": step, "model_config": {
        "sequence_len": config.sequence_len, "vocab_size": config.vocab_size, "n_layer": config.n_layer,
        "n_head": config.n_head, "n_kv_head": config.n_kv_head, "n_embd": config.n_embd,
        "window_pattern": config.window_pattern,
    }, "user_config": {"note": f"random weights from nanochat-tui ({spec}, seed {seed})"}}
    (tag_dir / f"meta_{step:06d}.json").write_text(json.dumps(meta, indent=2))
    tok_dir = base / "tokenizer"
    tok_dir.mkdir(parents=True, exist_ok=True)
    enc = synthetic_encoding(config.vocab_size, seed)
    with open(tok_dir / "tokenizer.pkl", "wb") as f:
        pickle.dump(enc, f)
    tok = Tokenizer(enc)
    lengths = [0 if i in tok.special_ids else len(tok.token_bytes(i)) for i in range(tok.vocab_size)]
    torch.save(torch.tensor(lengths, dtype=torch.int32), tok_dir / "token_bytes.pt")
    return tag_dir
