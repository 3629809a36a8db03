"""Settings handed from the command line to each front-end.

Plain dataclasses with no torch / Textual / aiohttp import, so `--help` stays fast and each mode
imports only what it needs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from nanochat_core.chat import SamplingParams

if TYPE_CHECKING:  # pragma: no cover
    from nanochat_core.api import ChatModel
    from nanochat_core.remote_limits import ClientLimits


@dataclass(frozen=True)
class ModelSelection:
    """Which checkpoint to load and how (nanochat's rules; see nanochat_core.checkpoints)."""

    base_dir: str | None = None  # --model-dir (any layout), else NANOCHAT_BASE_DIR, else ~/.cache/nanochat
    source: str | None = None  # -i; None: sft, else the only stage present (docs/checkpoints.md)
    model_tag: str | None = None
    step: int | None = None
    device_type: str | None = None  # cuda | cpu | mps; None = autodetect
    dtype: str | None = None  # bfloat16 | float32; None = bfloat16 on CUDA, float32 elsewhere
    softcap: float | None = None  # override for the gen3 / gen3-softcap20 ambiguity
    quantize: str | None = None  # --quantize int8: int8 weights on CPU (nanochat_core/quantize.py)
    explicit: bool = False  # the user named a source/tag/step/dir: never fall back to the demo model
    hf: str | None = None  # --hf OWNER/REPO[@REVISION]: a checkpoint on the Hugging Face Hub
    # Client mode: an OpenAI-compatible server (vLLM, SGLang, another nanochat-tui --web ...)
    # instead of a local checkpoint. Then none of the fields above apply and torch is never imported.
    server: str | None = None  # --server URL, e.g. http://gpu-box:8000/v1
    server_api_key: str | None = None  # sent as "Authorization: Bearer ..." to the server
    server_model: str | None = None  # --model: which of the server's models (default: its first)
    server_limits: "ClientLimits | None" = None  # --server-timeout deadlines (None: the defaults)

    def load(self, progress: Callable[[str], None] | None = None, device: str | None = None,
             download_progress: Callable[[str, int, int | None], None] | None = None) -> "ChatModel":
        """Load the model (imports torch), or connect to `server` (no torch). Raises
        nanochat_core.CheckpointError (RemoteError for a server) with one line.
        `download_progress(file, done, total)` replaces the --hf download bar on stderr."""
        if self.server is not None:
            from nanochat_core.remote import RemoteChatModel

            if progress is not None:
                progress(f"Connecting to {self.server} ...")
            return RemoteChatModel(self.server, api_key=self.server_api_key, model=self.server_model,
                                   limits=self.server_limits)
        from nanochat_core.api import load_chat_model

        return load_chat_model(
            base_dir=self.base_dir,
            source=self.source,
            model_tag=self.model_tag,
            step=self.step,
            device=device or self.device_type,
            dtype=self.dtype,
            softcap=self.softcap,
            allow_demo=not self.explicit,
            progress=progress,
            hf=self.hf,
            download_progress=download_progress,
            quantize=self.quantize,
        )

    def as_stats(self) -> dict:
        if self.server is not None:
            return {"server": self.server, "model": self.server_model or "(the server's first)",
                    "api_key": "set" if self.server_api_key else "none"}
        return {
            **({"hf": self.hf} if self.hf else {"model_dir": self.base_dir}),
            "source": self.source or "auto (sft)",
            "model_tag": self.model_tag,
            "step": self.step,
            "device_type": self.device_type or "auto",
            "dtype": self.dtype or "auto",
            "softcap": self.softcap,
            **({"quantize": self.quantize} if self.quantize else {}),
        }


@dataclass(frozen=True)
class HistorySettings:
    """Saved conversations: --history-db / --no-history / -c / --resume (see chat_session.py)."""

    enabled: bool = True
    path: str | None = None  # None: paths.history_path() ($NANOCHAT_TUI_HOME or the user data dir)
    resume: str | None = None  # None: a new conversation; "latest"; or an id / uid prefix

    @property
    def db_path(self) -> Path:
        from .paths import history_path

        return Path(self.path).expanduser() if self.path else history_path()


@dataclass(frozen=True)
class ChatConfig:
    """Everything a chat front-end (TUI, line chat, one-shot) needs."""

    model: ModelSelection = field(default_factory=ModelSelection)
    sampling: SamplingParams = field(default_factory=lambda: SamplingParams(max_tokens=256))
    system: str | None = None
    debug: bool = False
    history: HistorySettings = field(default_factory=HistorySettings)
    theme: str | None = None  # the settings file's theme (the full-screen app)
    model_dirs: tuple[str, ...] = ()  # the settings file's extra checkpoint folders (model list)


@dataclass(frozen=True)
class WebConfig:
    """`nanochat-tui --web` settings (defaults are nanochat's chat_web.py defaults)."""

    model: ModelSelection = field(default_factory=ModelSelection)
    sampling: SamplingParams = field(
        default_factory=lambda: SamplingParams(temperature=0.8, top_k=50, max_tokens=512, seed=None)
    )
    system: str | None = None
    host: str = "0.0.0.0"
    port: int = 8000
    num_gpus: int = 1
    queue_size: int = 64  # requests allowed to wait for a worker; beyond that: 503 + Retry-After
    max_body_bytes: int = 1_000_000  # request bodies above this: 413
    log_conversations: bool = False
    cors_origin: str | None = None
    api_key: str | None = None  # clients of THIS server must send it (not the --server's key)
    max_batch: int = 8  # streams per worker: shared decode steps locally, parallel requests with --server
    # Tokens one conversation may take (prompt + reply): None = the model's sequence_len (what it
    # was trained on), 0 = the model's full positions (10x that). Over it: 400 before any work.
    max_context: int | None = None
    debug: bool = False
    # Host names the server answers to besides localhost, IP addresses, the bind address and this
    # machine's names (--allowed-host; ".example.com" = it and its subdomains; "*" = any).
    allowed_hosts: tuple[str, ...] = ()
    header_timeout: float = 15.0  # seconds for a request's headers to arrive (also idle keep-alive)
    body_timeout: float = 30.0  # seconds for a whole request body to arrive
    # Tell clients how many prompt tokens came from the KV cache. Off: that number shows whether
    # ANOTHER client's prompt started the same way (docs/security.md). The in-process serving
    # benchmark, whose only client is itself, turns it on.
    report_cached_tokens: bool = False
    # --ray ADDRESS: the replicas are a Ray Serve application; this server is a stateless front
    # door that streams from them (nanochat_tui/ray_serve). None: local workers or --server.
    ray: "RayTarget | None" = None


@dataclass(frozen=True)
class RayTarget:
    """Where `--web --ray` finds its replicas: a Ray cluster and a Serve application on it that
    `nanochat-tui serve --ray` deployed (docs/scaling.md "Ray Serve")."""

    address: str  # "auto" (the cluster this machine belongs to) or the head's HOST:PORT
    app: str = "nanochat"  # the Serve application's name (--ray-app)


@dataclass(frozen=True)
class ServeConfig:
    """`nanochat-tui serve --ray`: the model as a Ray Serve application (docs/scaling.md).

    Every replica loads `model` itself (a path every node can read, or --hf: each node downloads
    into its own Hugging Face cache), so no weights travel through Ray's object store."""

    model: ModelSelection = field(default_factory=ModelSelection)
    address: str | None = None  # None: start a Ray instance here that lives as long as the command
    app: str = "nanochat"
    replicas: int = 1  # fixed number of replicas (ignored with autoscale)
    autoscale: tuple[int, int] | None = None  # (min, max) replicas, scaled on ongoing streams
    gpus_per_replica: float | None = None  # None: 1 when the cluster has GPUs, else 0; fractions share a GPU
    cpus_per_replica: float = 1.0
    batch_size: int = 8  # streams one replica decodes together (continuous batching)
    max_context: int | None = None  # tokens per conversation, as WebConfig.max_context (None: sequence_len)
    detach: bool = False  # return once the replicas are ready, leaving them running
    stop: bool = False  # delete the application (one left running with detach) and return
