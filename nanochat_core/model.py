"""One GPT for every nanochat checkpoint generation.

nanochat rewrote its model many times (docs: nanochat-format.md §9). Instead of one class per era,
this module has one readable model whose optional parts are switched on by an `Architecture`
(what the detected generation's own code did). The math follows each generation's code exactly,
including the details that move logits: rotary base and table precision, per-layer sliding
windows, q/k scaling, value embeddings and their gates, the engram bigram table, smear and backout.

Shapes: B batch, T tokens in this call, C width, H query heads, Hkv key/value heads, D head size.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

# ---------------------------------------------------------------------------------------------
# Configuration


@dataclass(frozen=True)
class ModelConfig:
    """nanochat's GPTConfig fields, as read from meta_<step>.json's model_config."""

    sequence_len: int
    vocab_size: int
    n_layer: int
    n_head: int
    n_kv_head: int
    n_embd: int
    window_pattern: str | None = None  # absent in older metas (see window_sizes)

    @property
    def head_dim(self) -> int:
        return self.n_embd // self.n_head


@dataclass(frozen=True)
class Architecture:
    """What one nanochat generation's forward pass does (nanochat-format.md §9.1-9.2)."""

    name: str
    lambdas: bool = False  # resid_lambdas / x0_lambdas mix before every block
    value_embeds: str | None = None  # None | "gated" | "lowrank" | "single" | "perlayer"
    ve_gate_channels: int = 32  # gated value embeddings: gate reads h[..., :channels]
    ve_gate_factor: float = 2.0  # ... and is factor * sigmoid(...)
    bigram: bool = False  # engram bigram hash table
    qk_scale: float = 1.0  # q, k multiplied after the q/k norm
    rope_base: float = 10000.0
    bf16_rotary: bool = True  # nanochat rounded cos/sin to bf16 until 2026-03-04
    softcap: float = 15.0
    windows: str = "none"  # "none" | "if_pattern" (gen2: only if meta has one) | "always"
    short_window: str = "half"  # rule for S from sequence_len: "half" | "third128" | "quarter128"
    smear: bool = False
    backout: bool = False


GENERATIONS: dict[str, Architecture] = {
    a.name: a
    for a in [
        Architecture("gen1-original"),
        Architecture("gen2-resid-x0-lambdas", lambdas=True, windows="if_pattern"),
        Architecture("gen3-proto-lowrank-ve", lambdas=True, value_embeds="lowrank", windows="always"),
        Architecture("gen3-proto-single-ve", lambdas=True, value_embeds="single", windows="always"),
        Architecture("gen3-proto-perlayer-ve", lambdas=True, value_embeds="perlayer", windows="always"),
        Architecture("gen3-value-embeds", lambdas=True, value_embeds="gated", windows="always"),
        Architecture("gen3-engram", lambdas=True, value_embeds="gated", bigram=True, windows="always"),
        Architecture("gen3-softcap20", lambdas=True, value_embeds="gated", windows="always", softcap=20.0),
        Architecture(
            "gen4-rope100k-qkscale", lambdas=True, value_embeds="gated", ve_gate_channels=12,
            ve_gate_factor=3.0, qk_scale=1.15, rope_base=100000.0, bf16_rotary=False,
            windows="always", short_window="third128",
        ),
        Architecture(
            "gen5-smear-backout", lambdas=True, value_embeds="gated", ve_gate_channels=12,
            ve_gate_factor=3.0, qk_scale=1.2, rope_base=100000.0, bf16_rotary=False,
            windows="always", short_window="quarter128", smear=True, backout=True,
        ),
    ]
}

SMEAR_CHANNELS = 24  # smear_gate reads x[..., :24]
LOWRANK_VE_DIM = 32  # value_embed_A rank in the low-rank prototype
BIGRAM_MULT_CUR, BIGRAM_MULT_PREV = 36313, 27191  # engram hash multipliers


def padded_vocab(vocab_size: int, multiple: int = 64) -> int:
    return ((vocab_size + multiple - 1) // multiple) * multiple


def window_sizes(arch: Architecture, config: ModelConfig) -> list[int | None]:
    """Per-layer sliding window w (query i sees keys j with i - w <= j <= i); None = unlimited.

    The rule reproduces each checkpoint's own code (nanochat-format.md §9.3): gen1 never windows;
    gen2 windows only when its meta has a window_pattern; later generations always do, reading a
    missing pattern as "L" (which is still a window of sequence_len).
    """
    n, L = config.n_layer, config.sequence_len
    if arch.windows == "none":
        return [None] * n
    pattern = config.window_pattern
    if not pattern:
        if arch.windows == "if_pattern":
            return [None] * n
        pattern = "L"
    pattern = pattern.upper()
    short = {
        "half": L // 2,
        "third128": 128 * math.ceil(math.ceil(L / 3) / 128),
        "quarter128": 128 * math.ceil(math.ceil(L / 4) / 128),
    }[arch.short_window]
    sizes: list[int | None] = [short if pattern[i % len(pattern)] == "S" else L for i in range(n)]
    sizes[-1] = L  # the last layer always sees the full context
    return sizes


def value_embed_layers(arch: Architecture, n_layer: int) -> list[int]:
    """Layers whose value vectors get a value-embedding term."""
    if arch.value_embeds == "gated":  # every other layer, always including the last
        return [i for i in range(n_layer) if i % 2 == (n_layer - 1) % 2]
    if arch.value_embeds in ("lowrank", "single"):  # the last quarter of the layers
        return list(range(n_layer - n_layer // 4, n_layer))
    if arch.value_embeds == "perlayer":
        return list(range(n_layer))
    return []


def norm(x: torch.Tensor) -> torch.Tensor:
    """RMSNorm without weights; eps is the dtype's machine epsilon, as F.rms_norm defaults."""
    return F.rms_norm(x, (x.size(-1),))


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate the two halves of each head (not interleaved): with x = [x1, x2],
    [x1*cos + x2*sin, x2*cos - x1*sin]. x: (B, T, heads, D). The tables are full width
    (GPT._rotary_tables: [c, c] and [s, -s]) and already broadcast to x: (1, T, 1, D) shared by
    the batch, or (B, T, 1, D) when every row sits at its own position. Written as
    x*cos + roll(x)*sin: nanochat's products and sums, bit for bit, in four kernels, not ten."""
    return x * cos + torch.roll(x, x.shape[-1] // 2, -1) * sin


# ---------------------------------------------------------------------------------------------
# KV cache


class KVCache:
    """Preallocated keys/values for all layers: (n_layer, B, Hkv, capacity, D) each.

    `pos` is how many positions are filled. The engine may lower `pos` to reuse a common prefix
    (later positions are simply overwritten) and resizes the capacity to what requests need.
    """

    def __init__(self, n_layer: int, batch: int, n_kv_head: int, head_dim: int, capacity: int,
                 dtype: torch.dtype, device: torch.device | str):
        # Zeros, not empty: batched decode reads (masked) slots that were never written, and
        # a masked weight of 0 times uninitialised NaN memory would still be NaN.
        shape = (n_layer, batch, n_kv_head, capacity, head_dim)
        self._set(torch.zeros(shape, dtype=dtype, device=device), torch.zeros(shape, dtype=dtype, device=device))
        self.pos = 0

    def _set(self, k: torch.Tensor, v: torch.Tensor) -> None:
        self.k, self.v = k, v
        # Per-layer views, made once: a decode step then slices a view instead of indexing
        # the 5-d tensor again in every layer (each index is several kernel dispatches).
        self.k_layers, self.v_layers = k.unbind(0), v.unbind(0)

    @property
    def capacity(self) -> int:
        return self.k.shape[3]

    @property
    def batch(self) -> int:
        return self.k.shape[1]

    @property
    def nbytes(self) -> int:
        """Bytes the keys and values occupy (what the memory tests and `bench` report)."""
        return self.k.nbytes + self.v.nbytes

    def resize(self, capacity: int, keep: int, batch: int | None = None) -> None:
        """Reallocate to `capacity` positions and `batch` rows (default: as now), bigger or
        smaller, keeping the first `keep` positions of the rows that remain. Memory above the
        new size goes back to the allocator (large blocks go back to the system at once)."""
        n, b, h, _, d = self.k.shape
        batch = b if batch is None else batch
        if (capacity, batch) == (self.capacity, b):
            return
        keep, rows = min(keep, capacity, self.capacity), min(b, batch)
        blocks = []
        for name in ("k", "v"):
            old = getattr(self, name)
            new = torch.zeros((n, batch, h, capacity, d), dtype=old.dtype, device=old.device)
            new[:, :rows, :, :keep] = old[:, :rows, :, :keep]
            blocks.append(new)
            setattr(self, name, None)  # k's old block is freed before v's new one is allocated
            del old
        self._set(*blocks)
        self.pos = min(self.pos, capacity)

    def row(self, index: int) -> "KVCache":
        """A batch-1 view of one row (writes go to this cache); its pos starts at 0."""
        view = KVCache.__new__(KVCache)
        view._set(self.k[:, index : index + 1], self.v[:, index : index + 1])
        view.pos = 0
        return view

    def start(self) -> int:
        return self.pos

    def attend(self, layer: int, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
               window: int | None) -> torch.Tensor:
        """Store this chunk's keys/values at pos.. and attend over what its queries can see.
        q: (B, H, T, D); k, v: (B, Hkv, T, D)."""
        start, T = self.pos, q.shape[2]
        keys, values = self.k_layers[layer], self.v_layers[layer]
        keys.narrow(2, start, T).copy_(k)
        values.narrow(2, start, T).copy_(v)
        first = 0 if window is None else max(0, start - window)  # the window reaches back this far
        span = start + T - first
        return _attend(q, keys.narrow(2, first, span), values.narrow(2, first, span), start, first, window)

    def advance(self, n: int) -> None:
        self.pos += n


class RowDecode:
    """One decode step for rows 0..B-1 of a batched KVCache, each row at its own position
    (continuous batching: requests of different lengths share a step). Keys past a row's
    position (other rows are longer) and outside its window are masked out."""

    def __init__(self, cache: KVCache, positions: torch.Tensor, static: bool = False):
        self.cache, self.positions = cache, positions  # positions: (B,) long, on the device
        self.rows = torch.arange(positions.shape[0], device=positions.device)
        # static: attend over the whole capacity (masked), so shapes never depend on positions
        # and nothing is read back to the host: what a CUDA graph needs.
        self.span = cache.capacity if static else int(positions.max()) + 1
        self._masks: dict[int | None, torch.Tensor] = {}

    def _mask(self, window: int | None) -> torch.Tensor:
        if window not in self._masks:
            keys = torch.arange(self.span, device=self.positions.device)[None, :]
            pos = self.positions[:, None]
            mask = keys <= pos
            if window is not None:
                mask = mask & (pos - keys <= window)
            self._masks[window] = mask[:, None, None, :]  # (B, 1, 1, span)
        return self._masks[window]

    def attend(self, layer, q, k, v, window):
        B = q.shape[0]
        self.cache.k[layer, self.rows, :, self.positions] = k[:, :, 0]
        self.cache.v[layer, self.rows, :, self.positions] = v[:, :, 0]
        keys = self.cache.k[layer, :B, :, : self.span]
        values = self.cache.v[layer, :B, :, : self.span]
        return F.scaled_dot_product_attention(q, keys, values, attn_mask=self._mask(window),
                                              enable_gqa=q.shape[1] != keys.shape[1])


# ---------------------------------------------------------------------------------------------
# Modules (attribute names follow nanochat's state-dict keys exactly)


class FusedLinear:
    """x @ weight.T for a weight owned elsewhere. A plain object, not a module: it adds nothing
    to the state dict (whose names stay nanochat's)."""

    def __init__(self, weight: torch.Tensor):
        self.weight = weight

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight)


class CausalSelfAttention(nn.Module):
    def __init__(self, config: ModelConfig, arch: Architecture, layer_idx: int, has_ve_gate: bool):
        super().__init__()
        self.layer_idx = layer_idx
        self.n_head, self.n_kv_head, self.head_dim = config.n_head, config.n_kv_head, config.head_dim
        self.qk_scale = arch.qk_scale
        self.ve_gate_factor = arch.ve_gate_factor
        self.ve_gate_channels = arch.ve_gate_channels
        C, D = config.n_embd, config.head_dim
        self.c_q = nn.Linear(C, config.n_head * D, bias=False)
        self.c_k = nn.Linear(C, config.n_kv_head * D, bias=False)
        self.c_v = nn.Linear(C, config.n_kv_head * D, bias=False)
        self.c_proj = nn.Linear(config.n_head * D, C, bias=False)
        self.ve_gate = nn.Linear(arch.ve_gate_channels, config.n_kv_head, bias=False) if has_ve_gate else None
        self.qkv = None  # q, k, v in one product once fused (GPT.prepare_inference)

    def fuse_qkv(self) -> None:
        """Stack c_q, c_k, c_v into one (H + 2Hkv) * D x C matrix. The three modules keep their
        names (state dict, export) as views into it, so no memory is added."""
        fused = torch.cat([self.c_q.weight, self.c_k.weight, self.c_v.weight]).detach()
        rows = [self.c_q.weight.shape[0], self.c_k.weight.shape[0], self.c_v.weight.shape[0]]
        for module, part in zip((self.c_q, self.c_k, self.c_v), fused.split(rows)):
            module.weight = nn.Parameter(part, requires_grad=False)
        self.qkv = FusedLinear(fused)

    def forward(
        self,
        h: torch.Tensor,  # (B, T, C), already normed
        cos: torch.Tensor,
        sin: torch.Tensor,
        window: int | None,
        cache: "KVCache | RowDecode | None",
        ve: torch.Tensor | None,  # gated: raw table rows (B, T, Hkv*D); prototypes: already scaled
    ) -> torch.Tensor:
        B, T, _ = h.shape
        H, Hkv, D = self.n_head, self.n_kv_head, self.head_dim
        if self.qkv is not None:  # one matrix product for q, k, v (GPT.prepare_inference)
            qkv = self.qkv(h).view(B, T, H + 2 * Hkv, D)
            qk, v = qkv[:, :, : H + Hkv], qkv[:, :, H + Hkv :]
        else:  # training: the three modules nanochat's state dict names
            qk = torch.cat([self.c_q(h).view(B, T, H, D), self.c_k(h).view(B, T, Hkv, D)], dim=2)
            v = self.c_v(h).view(B, T, Hkv, D)
        if ve is not None:
            ve = ve.view(B, T, Hkv, D)
            if self.ve_gate is not None:  # one gate per kv head, read from the attention input
                gate = self.ve_gate_factor * torch.sigmoid(self.ve_gate(h[..., : self.ve_gate_channels]))
                ve = gate.unsqueeze(-1) * ve
            v = v + ve
        # Rotary, q/k norm and scale act per head, so q and k go through them together.
        qk = norm(apply_rotary(qk, cos, sin))
        if self.qk_scale != 1.0:
            qk = qk * self.qk_scale
        q, k, v = qk[:, :, :H].transpose(1, 2), qk[:, :, H:].transpose(1, 2), v.transpose(1, 2)
        if cache is None:
            y = _attend(q, k, v, 0, 0, window)
        else:  # the cache stores k, v and knows which keys each query may see
            y = cache.attend(self.layer_idx, q, k, v, window)
        y = y.transpose(1, 2).contiguous().view(B, T, -1)
        return self.c_proj(y)


def _attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, start: int, first: int,
            window: int | None) -> torch.Tensor:
    """Causal (optionally sliding-window) attention. q covers absolute positions start..start+Tq-1,
    k/v cover first..start+Tq-1. Query i sees key j iff j <= i and i - j <= window."""
    Tq, Tk = q.shape[2], k.shape[2]
    gqa = q.shape[1] != k.shape[1]
    if Tq == 1:
        # Decode: the slice already holds exactly the visible keys.
        return F.scaled_dot_product_attention(q, k, v, enable_gqa=gqa)
    if first == start and (window is None or window >= Tq - 1):
        # A fresh chunk whose window never cuts inside it: plain causal attention.
        return F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=gqa)
    qpos = torch.arange(start, start + Tq, device=q.device)[:, None]
    kpos = torch.arange(first, first + Tk, device=q.device)[None, :]
    mask = kpos <= qpos
    if window is not None:
        mask = mask & (qpos - kpos <= window)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, enable_gqa=gqa)


class MLP(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        self.c_fc = nn.Linear(config.n_embd, 4 * config.n_embd, bias=False)
        self.c_proj = nn.Linear(4 * config.n_embd, config.n_embd, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.c_proj(F.relu(self.c_fc(x)).square())


class Block(nn.Module):
    def __init__(self, config: ModelConfig, arch: Architecture, layer_idx: int, has_ve_gate: bool):
        super().__init__()
        self.attn = CausalSelfAttention(config, arch, layer_idx, has_ve_gate)
        self.mlp = MLP(config)

    def forward(self, x, cos, sin, window, cache, ve):
        x = x + self.attn(norm(x), cos, sin, window, cache, ve)
        return x + self.mlp(norm(x))


class GPT(nn.Module):
    def __init__(self, config: ModelConfig, arch: Architecture, vocab_rows: int | None = None):
        super().__init__()
        self.config, self.arch = config, arch
        C, n = config.n_embd, config.n_layer
        kv_dim = config.n_kv_head * config.head_dim
        # Rows are padded to a multiple of 64 since 2025-12-09; older files have exactly vocab_size.
        vocab_rows = vocab_rows or padded_vocab(config.vocab_size)
        self.ve_layers = value_embed_layers(arch, n)
        self.windows = window_sizes(arch, config)

        self.transformer = nn.ModuleDict({
            "wte": nn.Embedding(vocab_rows, C),
            "h": nn.ModuleList([
                Block(config, arch, i, has_ve_gate=arch.value_embeds == "gated" and i in self.ve_layers)
                for i in range(n)
            ]),
        })
        self.lm_head = nn.Linear(C, vocab_rows, bias=False)
        if arch.lambdas:
            self.resid_lambdas = nn.Parameter(torch.ones(n))
            self.x0_lambdas = nn.Parameter(torch.zeros(n))
        if arch.value_embeds in ("gated", "perlayer"):
            self.value_embeds = nn.ModuleDict({str(i): nn.Embedding(vocab_rows, kv_dim) for i in self.ve_layers})
        elif arch.value_embeds == "single":
            self.value_embed = nn.Embedding(vocab_rows, kv_dim)
        elif arch.value_embeds == "lowrank":
            self.value_embed_A = nn.Embedding(vocab_rows, LOWRANK_VE_DIM)
            self.value_embed_B = nn.Linear(LOWRANK_VE_DIM, kv_dim, bias=False)
        if arch.value_embeds in ("lowrank", "single", "perlayer"):
            self.v0_lambdas = nn.Parameter(torch.zeros(n))
        if arch.bigram:
            self.bigram_embed = nn.Module()
            self.bigram_embed.embed = nn.Embedding(5 * config.vocab_size, C)
            self.bigram_lambdas = nn.Parameter(torch.zeros(n))
        if arch.smear:
            self.smear_gate = nn.Linear(SMEAR_CHANNELS, 1, bias=False)
            self.smear_lambda = nn.Parameter(torch.zeros(1))
        if arch.backout:
            self.backout_lambda = nn.Parameter(torch.zeros(1))
        self.backout_layer = n // 2

        self._layer_scalars: list[tuple[float, float]] | None = None  # prepare_inference
        self.quantized: str | None = None  # "int8" after quantize.quantize_int8
        # Rotary tables are not in checkpoints: recompute them, 10x sequence_len like nanochat.
        self.rotary_len = 10 * config.sequence_len
        cos, sin = self._rotary_tables(self.rotary_len)
        self.register_buffer("cos", cos, persistent=False)
        self.register_buffer("sin", sin, persistent=False)

    def _rotary_tables(self, length: int, device=None) -> tuple[torch.Tensor, torch.Tensor]:
        D = self.config.head_dim
        channels = torch.arange(0, D, 2, dtype=torch.float32, device=device)
        inv_freq = 1.0 / (self.arch.rope_base ** (channels / D))
        freqs = torch.outer(torch.arange(length, dtype=torch.float32, device=device), inv_freq)
        cos, sin = freqs.cos(), freqs.sin()
        if self.arch.bf16_rotary:
            # Older generations multiplied fp32 activations by bf16-rounded tables (§8).
            cos, sin = cos.bfloat16().float(), sin.bfloat16().float()
        # Full head width, as apply_rotary wants them: [c, c] and [s, -s].
        return torch.cat([cos, cos], dim=-1), torch.cat([sin, -sin], dim=-1)

    def refresh_rotary(self, dtype: torch.dtype) -> None:
        """Rebuild the tables on the model's device in the compute dtype (after .to())."""
        cos, sin = self._rotary_tables(self.rotary_len, device=self.transformer.wte.weight.device)
        self.cos, self.sin = cos.to(dtype), sin.to(dtype)

    def prepare_inference(self) -> None:
        """Once the weights are final (loaded, in the compute dtype, on their device): one matrix
        product for q/k/v per layer, and the per-layer scalars read once instead of every step.
        Same numbers; fewer kernel launches per decode step (docs/benchmarks.md)."""
        for block in self.transformer.h:
            if block.attn.qkv is None:
                block.attn.fuse_qkv()
        if self.arch.lambdas:
            self._layer_scalars = list(zip(self.resid_lambdas.tolist(), self.x0_lambdas.tolist()))

    # -- pieces of the forward pass --

    def _embed(self, idx: torch.Tensor, prev_token: torch.Tensor | None) -> torch.Tensor:
        x = norm(self.transformer.wte(idx))
        if self.arch.smear:
            # x_t += lambda * sigmoid(gate . x_t[:24]) * x_{t-1}, with un-smeared x_{t-1}.
            if prev_token is not None:  # continuing a cache: the token before this chunk
                before = norm(self.transformer.wte(prev_token))[:, None, :]
                prev, cur = torch.cat([before, x[:, :-1]], dim=1), x
                gate = torch.sigmoid(self.smear_gate(cur[..., :SMEAR_CHANNELS]))
                x = cur + self.smear_lambda * gate * prev
            elif x.shape[1] > 1:
                cur, prev = x[:, 1:], x[:, :-1]
                gate = torch.sigmoid(self.smear_gate(cur[..., :SMEAR_CHANNELS]))
                x = torch.cat([x[:, :1], cur + self.smear_lambda * gate * prev], dim=1)
        return x

    def _bigram(self, idx: torch.Tensor, prev_token: torch.Tensor | None) -> torch.Tensor:
        """Engram rows: 5V-1 at absolute position 0, else hash(tok_t, tok_{t-1}) mod (5V-1)."""
        rows = 5 * self.config.vocab_size - 1
        if prev_token is None:
            prev = torch.cat([torch.zeros_like(idx[:, :1]), idx[:, :-1]], dim=1)
        else:
            prev = torch.cat([prev_token[:, None], idx[:, :-1]], dim=1)
        index = torch.bitwise_xor(BIGRAM_MULT_CUR * idx, BIGRAM_MULT_PREV * prev) % rows
        if prev_token is None:
            index[:, 0] = rows
        return self.bigram_embed.embed(index)

    def _value_embed(self, layer: int, idx: torch.Tensor) -> torch.Tensor | None:
        kind = self.arch.value_embeds
        if kind is None or layer not in self.ve_layers:
            return None
        if kind == "gated":
            return self.value_embeds[str(layer)](idx)
        if kind == "perlayer":
            table = self.value_embeds[str(layer)](idx)
        elif kind == "single":
            table = self.value_embed(idx)
        else:  # lowrank
            table = self.value_embed_B(self.value_embed_A(idx))
        return self.v0_lambdas[layer] * table

    def forward(
        self,
        idx: torch.Tensor,
        cache: KVCache | None = None,
        prev_token: torch.Tensor | None = None,
        last_only: bool = False,
    ) -> torch.Tensor:
        """Softcapped float32 logits (B, T, vocab_size), or (B, vocab_size) with last_only.

        With a cache, idx continues the cached sequence at position cache.pos; `prev_token` (B,)
        is the token just before idx when cache.pos > 0 (smear and the bigram hash read it).
        """
        B, T = idx.shape
        start = cache.pos if cache is not None else 0
        if start + T > self.rotary_len:
            raise ValueError(
                f"context of {start + T} tokens exceeds this model's limit of {self.rotary_len}"
            )
        if start > 0 and prev_token is None and (self.arch.smear or self.arch.bigram):
            raise ValueError("continuing a cache needs the previous token")
        if start == 0:
            prev_token = None
        cos, sin = self.cos[None, start : start + T, None], self.sin[None, start : start + T, None]
        x = self._trunk(idx, prev_token, cos, sin, cache)
        if cache is not None:
            cache.advance(T)
        if last_only:
            x = x[:, -1]
        return self._logits(x)

    def decode_rows(self, tokens: torch.Tensor, positions: torch.Tensor, prev_tokens: torch.Tensor,
                    cache: KVCache, static: bool = False) -> torch.Tensor:
        """One decode step for rows 0..B-1 of a batched cache, row r feeding tokens[r] at
        positions[r] (after prev_tokens[r]). Returns logits (B, vocab_size).
        static=True: fixed shapes and no host sync (for CUDA graph capture); the caller
        guarantees positions < cache.capacity <= rotary_len."""
        if not static and int(positions.max()) >= self.rotary_len:
            raise ValueError(f"context exceeds this model's limit of {self.rotary_len}")
        cos, sin = self.cos[positions][:, None, None], self.sin[positions][:, None, None]
        x = self._trunk(tokens[:, None], prev_tokens, cos, sin, RowDecode(cache, positions, static))
        return self._logits(x[:, -1])

    def _trunk(self, idx, prev_token, cos, sin, cache) -> torch.Tensor:
        """Embedding and blocks: the residual stream before the final norm."""
        x = self._embed(idx, prev_token)
        x0 = x
        bigram = self._bigram(idx, prev_token) if self.arch.bigram else None
        backout = None
        scalars = self._layer_scalars
        for i, block in enumerate(self.transformer.h):
            if self.arch.lambdas:
                a, b = scalars[i] if scalars is not None else (self.resid_lambdas[i], self.x0_lambdas[i])
                x = a * x + b * x0
                if bigram is not None:
                    x = x + self.bigram_lambdas[i] * bigram
            x = block(x, cos, sin, self.windows[i], cache, self._value_embed(i, idx))
            if self.arch.backout and i == self.backout_layer:
                backout = x
        if backout is not None:
            x = x - self.backout_lambda * backout
        return x

    def _logits(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.lm_head(norm(x))[..., : self.config.vocab_size].float()
        cap = self.arch.softcap
        return cap * torch.tanh(logits / cap)

    @property
    def device(self) -> torch.device:
        return self.transformer.wte.weight.device

    @property
    def compute_dtype(self) -> torch.dtype:
        """Activations' dtype (the token table's: it is never quantized)."""
        return self.transformer.wte.weight.dtype

    def new_cache(self, batch: int, capacity: int) -> KVCache:
        return KVCache(self.config.n_layer, batch, self.config.n_kv_head, self.config.head_dim,
                       capacity, self.compute_dtype, self.device)

    # -- training support (the demo model is trained with this same code) --

    @torch.no_grad()
    def init_weights(self, seed: int = 0) -> None:
        """A sensible from-scratch init in nanochat's spirit: zero output projections, small
        lm_head, unit embeddings, neutral scalars."""
        g = torch.Generator().manual_seed(seed)
        C = self.config.n_embd
        for name, p in self.named_parameters():
            if p.ndim == 2:  # token embedding ~ N(0, 1); every other matrix ~ N(0, 1/C)
                std = 1.0 if name.startswith("transformer.wte") else C ** -0.5
                p.copy_(torch.randn(p.shape, generator=g) * std)
        for block in self.transformer.h:
            block.attn.c_proj.weight.zero_()
            block.mlp.c_proj.weight.zero_()
            if block.attn.ve_gate is not None:
                block.attn.ve_gate.weight.zero_()
        self.lm_head.weight.normal_(0.0, 0.001, generator=g)
        if self.arch.lambdas:
            self.resid_lambdas.fill_(1.0)
            self.x0_lambdas.fill_(0.1)
        if self.arch.smear:
            self.smear_gate.weight.zero_()
            self.smear_lambda.zero_()
        if self.arch.backout:
            self.backout_lambda.fill_(0.2)
        if self.arch.bigram:
            self.bigram_lambdas.zero_()
        if hasattr(self, "v0_lambdas"):
            self.v0_lambdas.zero_()

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())
