"""nanochat's tokenizer: a tiktoken Encoding loaded WITHOUT running pickle code.

nanochat saves `tokenizer/tokenizer.pkl` with plain `pickle.dump` of a tiktoken Encoding, which
pickles as its constructor arguments (nanochat-format.md §4). A plain `pickle.load` would run any
code a hostile file asks for, so we read it with an unpickler that admits exactly one global,
`tiktoken.core.Encoding`, replaced by an inert stand-in that only records its state. We then
validate that state and build the Encoding ourselves.
"""

from __future__ import annotations

import codecs
import functools
import hashlib
import io
import pickle
from pathlib import Path
from typing import Iterable

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


MAX_VOCAB = 2**20  # the meta's vocab_size bound (checkpoint_files.META_BOUNDS)


class TokenizerError(ValueError):
    """The tokenizer file is missing, hostile or not a nanochat tokenizer. One line."""


class _InertEncoding:
    """Stands in for tiktoken.core.Encoding during unpickling: accepts no constructor arguments
    (a REDUCE with arguments is refused) and only records the state given by BUILD."""

    def __init__(self, *args, **kwargs):
        if args or kwargs:
            raise pickle.UnpicklingError("unexpected constructor arguments")
        self.state = None

    def __setstate__(self, state):
        self.state = state


class _RestrictedUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        if (module, name) == ("tiktoken.core", "Encoding"):
            return _InertEncoding
        raise pickle.UnpicklingError(f"refusing to load global {module}.{name}")

    def persistent_load(self, pid):
        raise pickle.UnpicklingError("persistent ids are not allowed")


def _validated_state(state) -> dict:
    if isinstance(state, str):
        raise TokenizerError(
            f"the tokenizer pickle names tiktoken's registered encoding {state!r}, "
            "not a nanochat-trained tokenizer"
        )
    if not isinstance(state, dict) or set(state) != {"name", "pat_str", "mergeable_ranks", "special_tokens"}:
        raise TokenizerError("the tokenizer pickle does not hold a tiktoken Encoding's state")
    name, pat_str, ranks, specials = (state[k] for k in ("name", "pat_str", "mergeable_ranks", "special_tokens"))
    if not isinstance(name, str) or not isinstance(pat_str, str):
        raise TokenizerError("the tokenizer's name and pattern must be strings")
    if not isinstance(ranks, dict) or not all(
        isinstance(k, bytes) and isinstance(v, int) and not isinstance(v, bool) for k, v in ranks.items()
    ):
        raise TokenizerError("the tokenizer's mergeable_ranks must map bytes to int")
    n = len(ranks)
    if n + len(specials if isinstance(specials, dict) else ()) > MAX_VOCAB:
        raise TokenizerError(f"the tokenizer has more than {MAX_VOCAB} tokens")
    if sorted(ranks.values()) != list(range(n)):
        raise TokenizerError("the tokenizer's ranks must be exactly 0..n-1")
    if not isinstance(specials, dict) or not all(
        isinstance(k, str) and isinstance(v, int) and not isinstance(v, bool) for k, v in specials.items()
    ):
        raise TokenizerError("the tokenizer's special_tokens must map str to int")
    if sorted(specials.values()) != list(range(n, n + len(specials))):
        raise TokenizerError("the tokenizer's special token ids must follow the merges")
    missing = [s for s in SPECIAL_TOKENS if s not in specials]
    if missing:
        raise TokenizerError(f"the tokenizer lacks nanochat's special tokens: {', '.join(missing)}")
    return {"name": name, "pat_str": pat_str, "mergeable_ranks": ranks, "special_tokens": specials}


def load_encoding(path: str | Path):
    """Read tokenizer.pkl safely and return a tiktoken.Encoding."""
    import tiktoken

    from .checkpoint_files import TOKENIZER_MAX_BYTES, CheckpointError, read_capped

    path = Path(path)
    try:  # a regular file under the cap, read once (docs/security.md "Checkpoint files")
        data = read_capped(path, TOKENIZER_MAX_BYTES, "tokenizer")
    except CheckpointError as e:
        raise TokenizerError(str(e)) from None
    try:
        obj = _RestrictedUnpickler(io.BytesIO(data)).load()
    except Exception as e:  # any malformed/hostile pickle: one line, no code run
        raise TokenizerError(f"{path} is not a safe nanochat tokenizer pickle ({e})") from None
    if not isinstance(obj, _InertEncoding):
        raise TokenizerError(f"{path} does not contain a tiktoken Encoding")
    state = _validated_state(obj.state)
    try:
        return tiktoken.Encoding(**state)
    except Exception as e:
        raise TokenizerError(f"{path}: tiktoken rejected the tokenizer ({e})") from None


class Tokenizer:
    """The subset of nanochat's RustBPETokenizer that inference needs."""

    def __init__(self, encoding):
        self.enc = encoding
        self.vocab_size: int = encoding.n_vocab
        self._special = dict(encoding._special_tokens)
        self.special_ids = frozenset(self._special.values())
        self.bos_id = self._special["<|bos|>"]

    @classmethod
    def from_file(cls, path: str | Path) -> "Tokenizer":
        return cls(load_encoding(path))

    def special(self, name: str) -> int:
        return self._special[name]

    def encode(self, text: str) -> list[int]:
        # Ordinary encoding: "<|bos|>" typed by a user stays plain text, never a special id.
        return self.enc.encode_ordinary(text)

    def decode(self, ids: Iterable[int]) -> str:
        return self.enc.decode(list(ids))

    def token_bytes(self, token_id: int) -> bytes:
        return self.enc.decode_single_token_bytes(token_id)

    @functools.cached_property
    def fingerprint(self) -> str:
        """A short hash of what decides token ids (the split pattern, every merge and special
        id): two tokenizers with the same fingerprint give the same ids for the same text."""
        digest = hashlib.sha256(self.enc._pat_str.encode("utf-8"))
        for token, rank in sorted(self.enc._mergeable_ranks.items(), key=lambda item: item[1]):
            digest.update(rank.to_bytes(4, "little") + len(token).to_bytes(2, "little") + token)
        for name, token_id in sorted(self._special.items()):
            digest.update(name.encode("utf-8") + token_id.to_bytes(4, "little"))
        return digest.hexdigest()[:16]


class StreamDecoder:
    """Turns token ids into text at UTF-8 boundaries.

    A character split over several tokens (an emoji, CJK) is held back until complete; invalid
    bytes become U+FFFD exactly as a one-shot decode would, so the concatenated output always
    equals `tokenizer.decode(all_ids)`.
    """

    def __init__(self, tokenizer: Tokenizer):
        self._tok = tokenizer
        self._utf8 = codecs.getincrementaldecoder("utf-8")(errors="replace")

    def feed(self, token_id: int) -> str:
        return self._utf8.decode(self._tok.token_bytes(token_id))

    def flush(self) -> str:
        return self._utf8.decode(b"", final=True)
