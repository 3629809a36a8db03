"""What was loaded, described for people (status lines, /stats, web console). No torch import."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class ModelInfo:
    generation: str  # e.g. "gen5-smear-backout" (spec §9.1 names)
    source: str  # base | mid | sft | rl | demo, or "" when no folder name told the stage
    model_tag: str  # e.g. "d20"
    step: int
    checkpoint_dir: str  # the folder the files came from (in the HF cache for --hf)
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
    # Where exactly the weights came from (docs/core-api.md "Model identity").
    model_path: str = ""  # the model_<step>.pt file read
    layout: str = ""  # how the folder was read: "base dir" | "checkpoint folder" | "folder"
    hf_repo: str | None = None  # OWNER/NAME when loaded with --hf
    hf_revision: str | None = None  # the revision asked for (branch, tag or commit; "main" by default)
    hf_commit: str | None = None  # the commit that revision resolved to

    @property
    def stage(self) -> str | None:
        """The training stage (base, mid, sft, rl); None when unknown (a flat folder)."""
        if self.is_demo:
            return "sft"
        return self.source or None

    @property
    def origin(self) -> str:
        """`hf:OWNER/NAME@REVISION (commit 0123abcd)` or the checkpoint folder's path."""
        if self.hf_repo:
            commit = f" (commit {self.hf_commit[:12]})" if self.hf_commit and self.hf_commit != self.hf_revision else ""
            return f"hf:{self.hf_repo}@{self.hf_revision or 'main'}{commit}"
        return self.checkpoint_dir

    def identity(self) -> dict:
        """What identifies this model precisely, as JSON (for /v1/models and `models --json`)."""
        return {
            "stage": self.stage,
            "tag": self.model_tag,
            "step": self.step,
            "generation": self.generation,
            "demo": self.is_demo,
            "path": self.model_path or self.checkpoint_dir,
            "hf": ({"repo": self.hf_repo, "revision": self.hf_revision or "main", "commit": self.hf_commit}
                   if self.hf_repo else None),
        }

    @property
    def is_remote(self) -> bool:
        """True for a model behind an OpenAI-compatible server (nanochat_core.remote)."""
        return False

    @property
    def short_name(self) -> str:
        """Header text: `demo model` or `d20 · sft step 700 · gen5`."""
        if self.is_demo:
            return f"demo model ({self.model_tag}, {self.generation})"
        stage = f"{self.source} " if self.source else ""
        return f"{self.model_tag} · {stage}step {self.step} · {self.generation}"

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
