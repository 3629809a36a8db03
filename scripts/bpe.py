"""A small byte-level BPE trainer producing a tokenizer in nanochat's own format.

nanochat trains its tokenizer with rustbpe and saves a pickled `tiktoken.Encoding(name="rustbpe",
pat_str=SPLIT_PATTERN, mergeable_ranks=..., special_tokens=...)` (docs: nanochat-format.md §4).
This module does the same in pure Python for the demo model's tiny corpus:

1. Split text into chunks with nanochat's pre-tokenisation pattern (GPT-4's cl100k pattern with
   digit runs split into groups of 1-2), using the `regex` package, which is what tiktoken
   itself depends on (so it is always installed alongside tiktoken).
2. Count the chunks; start from their UTF-8 bytes (ranks 0..255 = the byte values).
3. Repeatedly merge the most frequent adjacent pair (ties: the pair whose merged bytes sort first),
   updating pair counts incrementally. The new token's rank is the next free id.

tiktoken's encoder applies merges by lowest rank, which reproduces this training order, so the
resulting Encoding tokenises like the trainer did. Deterministic: same texts -> same ranks.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from typing import Iterable

import regex

# nanochat's SPLIT_PATTERN (nanochat/tokenizer.py): cl100k with \p{N}{1,2} instead of \p{N}{1,3}.
SPLIT_PATTERN = (
    r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}+|\p{N}{1,2}| ?[^\s\p{L}\p{N}]++[\r\n]*|\s*[\r\n]|\s+(?!\S)|\s+"""
)

SPECIAL_TOKENS = (
    "<|bos|>",
    "<|user_start|>",
    "<|user_end|>",
    "<|assistant_start|>",
    "<|assistant_end|>",
    "<|python_start|>",
    "<|python_end|>",
    "<|output_start|>",
    "<|output_end|>",
)


def train_bpe(texts: Iterable[str], vocab_size: int, pattern: str = SPLIT_PATTERN) -> dict[bytes, int]:
    """mergeable_ranks with at most `vocab_size - len(SPECIAL_TOKENS)` entries (fewer if the corpus
    runs out of pairs that occur at least twice)."""
    n_ranks = vocab_size - len(SPECIAL_TOKENS)
    assert n_ranks >= 256, "vocab_size must leave room for the 256 byte tokens"
    compiled = regex.compile(pattern)
    chunk_counts: Counter[str] = Counter()
    for text in texts:
        chunk_counts.update(compiled.findall(text))

    # Words as lists of token ids, with their frequency.
    chunks = sorted(chunk_counts)  # deterministic order
    words: list[list[int]] = [list(c.encode("utf-8")) for c in chunks]
    freqs: list[int] = [chunk_counts[c] for c in chunks]
    token_bytes: list[bytes] = [bytes([i]) for i in range(256)]
    ranks: dict[bytes, int] = {b: i for i, b in enumerate(token_bytes)}

    pair_counts: defaultdict[tuple[int, int], int] = defaultdict(int)
    where: defaultdict[tuple[int, int], set[int]] = defaultdict(set)
    for wi, w in enumerate(words):
        for pair in zip(w, w[1:]):
            pair_counts[pair] += freqs[wi]
            where[pair].add(wi)

    while len(token_bytes) < n_ranks and pair_counts:
        count = max(pair_counts.values())
        # Ties: the pair whose merged bytes sort first (deterministic, independent of dict order).
        a, b = min((p for p, c in pair_counts.items() if c == count),
                   key=lambda p: (token_bytes[p[0]] + token_bytes[p[1]], p))
        if count < 2:
            break
        merged = token_bytes[a] + token_bytes[b]
        if merged in ranks:  # the same bytes reached through another split: reuse that id
            new_id = ranks[merged]
        else:
            new_id = len(token_bytes)
            token_bytes.append(merged)
            ranks[merged] = new_id
        for wi in sorted(where.pop((a, b), ())):
            w, f = words[wi], freqs[wi]
            for pair in zip(w, w[1:]):  # remove this word's old pairs
                pair_counts[pair] -= f
                if pair_counts[pair] <= 0:
                    del pair_counts[pair]
                if pair != (a, b):
                    where[pair].discard(wi)
            out, i = [], 0
            while i < len(w):
                if i + 1 < len(w) and w[i] == a and w[i + 1] == b:
                    out.append(new_id)
                    i += 2
                else:
                    out.append(w[i])
                    i += 1
            words[wi] = out
            for pair in zip(out, out[1:]):
                pair_counts[pair] += f
                where[pair].add(wi)
        pair_counts.pop((a, b), None)
    return ranks


def build_encoding(mergeable_ranks: dict[bytes, int], pattern: str = SPLIT_PATTERN):
    """The tiktoken Encoding exactly as nanochat constructs (and pickles) it."""
    import tiktoken

    n = len(mergeable_ranks)
    specials = {name: n + i for i, name in enumerate(SPECIAL_TOKENS)}
    return tiktoken.Encoding(name="rustbpe", pat_str=pattern, mergeable_ranks=mergeable_ranks,
                             special_tokens=specials)


def token_byte_lengths(enc) -> list[int]:
    """nanochat's token_bytes.pt content: UTF-8 byte length per token (raw bytes), 0 for specials."""
    specials = set(enc._special_tokens.values())
    return [0 if i in specials else len(enc.decode_single_token_bytes(i)) for i in range(enc.n_vocab)]
