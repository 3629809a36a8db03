"""What was loaded, described for people (status lines, /stats, web console). No torch import."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class ModelInfo:
    generation: str  # e.g. "gen5-smear-backout" (spec §9.1 names)
    source: str  # base | sft | rl | demo
    model_tag: str  # e.g. "d20"
    step: int
    checkpoint_dir: str  # the tag directory the files came from
    is_demo: bool
    n_layer: int
    n_embd: int
    n_head: int
    n_kv_head: int
    vocab_size: int
    sequence_len: int
    window_pattern: str | None
    softcap: float
    params: int
    device: str = "cpu"
    dtype: str = "float32"  # what it computes in, as shown: "float32", "bfloat16, int8 weights"
    quantize: str | None = None  # "int8" when the matrices are int8 (--quantize), else None
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def is_remote(self) -> bool:
        """True for a model behind an OpenAI-compatible server (nanochat_core.remote)."""
        return False

    @property
    def short_name(self) -> str:
        """Header text: `demo model` or `d20 · sft step 700 · gen5`."""
        if self.is_demo:
            return f"demo model ({self.model_tag}, {self.generation})"
        return f"{self.model_tag} · {self.source} step {self.step} · {self.generation}"

    def describe(self) -> str:
        """One line for stderr / the status bar when a model has loaded."""
        params = f"{self.params / 1e6:.1f}M" if self.params >= 1e5 else f"{self.params / 1e3:.0f}K"
        kv = f" (kv {self.n_kv_head})" if self.n_kv_head != self.n_head else ""
        windows = f", windows {self.window_pattern}" if self.window_pattern else ""
        return (
            f"{self.short_name}: {self.generation}, {self.n_layer} layers, width {self.n_embd}, "
            f"{self.n_head} heads{kv}, vocab {self.vocab_size}, context {self.sequence_len}{windows}, "
            f"softcap {self.softcap:g}, {params} params on {self.device} ({self.dtype})"
        )
