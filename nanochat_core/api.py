"""The public API: load a checkpoint (or the demo model) and chat with it.

    from nanochat_core import load_chat_model
    m = load_chat_model()                       # ~/.cache/nanochat, else the bundled demo model
    ids = m.render([{"role": "user", "content": "Hello"}])
    for event in m.chat([{"role": "user", "content": "Hello"}]): ...
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator, Sequence

import torch

from .chat import Message, SamplingParams, render_messages, reply_key
from .checkpoint_files import check_memory
from .checkpoints import (
    CheckpointError,
    CheckpointLocation,
    build_model,
    default_base_dir,
    detect_generation,
    locate,
    no_tokenizer,
    read_model_config,
    read_state_dict,
)
from .conversation import Conversation
from .engine import Engine
from .events import Done, Event
from .model_info import ModelInfo
from .resources import demo_model_dir
from .tokenizer import Tokenizer, TokenizerError

if TYPE_CHECKING:  # pragma: no cover
    from .hub import DownloadProgress, HubOrigin

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}
REMEMBERED_REPLIES = 512  # generated replies whose exact ids we keep (see chat.render_messages)


def autodetect_device() -> str:
    if torch.cuda.is_available():
        return "cuda"
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return "mps"
    return "cpu"


def resolve_device_and_dtype(device: str | None, dtype: str | None) -> tuple[torch.device, torch.dtype]:
    """bfloat16 on CUDA (nanochat's default there), float32 elsewhere: CPUs and MPS run bf16
    matrix products slowly or not at all, and the fixtures' reference logits are fp32."""
    device = device or autodetect_device()
    if device not in ("cuda", "cpu", "mps") and not device.startswith("cuda:"):
        raise CheckpointError(f"unknown device type {device!r}: choose cuda, cpu or mps")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise CheckpointError("--device-type cuda was requested but CUDA is not available here")
    if device == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise CheckpointError("--device-type mps was requested but MPS is not available here")
    if dtype is None:
        dtype = "bfloat16" if device.startswith("cuda") else "float32"
    if dtype not in DTYPES:
        raise CheckpointError(f"unknown dtype {dtype!r}: choose bfloat16 or float32")
    return torch.device(device), DTYPES[dtype]


class ChatModel:
    """A loaded model + tokenizer + engine. Runs one generation at a time (it owns a KV cache)."""

    def __init__(self, model, tokenizer: Tokenizer, info: ModelInfo, notices: Sequence[str] = ()):
        self.model = model
        self.tokenizer = tokenizer
        self.info = info
        self.notices = list(notices)
        self.engine = Engine(model, tokenizer)
        self._replies: OrderedDict = OrderedDict()  # reply_key(content) -> generated ids
        self._replies_lock = threading.Lock()

    def render(self, messages: Sequence[dict | Message]) -> list[int]:
        """nanochat's rendering of a conversation, ending with <|assistant_start|>.
        Accepts dicts with string or parts content (a first system message is folded in)."""
        clean = [m if isinstance(m, Message) else Message(m["role"], m["content"] if isinstance(m["content"], str) else tuple(m["content"])) for m in messages]
        return render_messages(self.tokenizer, clean)

    @property
    def tokenizer_id(self) -> str:
        """Which tokenizer this model's ids belong to (a Conversation re-renders replies recorded
        with another one, e.g. after switching models)."""
        return self.tokenizer.fingerprint

    @torch.inference_mode()
    def logits(self, ids: Sequence[int]) -> torch.Tensor:
        """Full-sequence forward: float32 logits [len(ids), vocab_size] (softcapped)."""
        idx = torch.tensor([list(ids)], dtype=torch.long, device=self.engine.device)
        return self.model(idx)[0].float().cpu()

    def generate_ids(self, ids: Sequence[int], temperature: float = 0.0, top_k: int | None = None,
                     max_tokens: int = 256, seed: int | None = 42,
                     cancel: threading.Event | None = None) -> Iterator[int]:
        """Every token appended to the sequence (forced tool tokens and the stop token included)."""
        for step in self.engine.generate(list(ids), temperature, top_k, max_tokens, seed, cancel):
            yield step.token

    def stream(self, ids: Sequence[int], sampling: SamplingParams | None = None,
               cancel: threading.Event | None = None) -> Iterator[Event]:
        return self.engine.stream(list(ids), sampling or SamplingParams(), cancel)

    def chat(self, request: "Conversation | Sequence[Any]", sampling: SamplingParams | None = None,
             cancel: threading.Event | None = None) -> Iterator[Event]:
        """Validate (raises ValidationError before any work), render and stream the next reply
        of `request`: a Conversation (its exact token history), or role/content messages.

        Replies this model generated earlier and that come back as messages (as text or as
        parts) are rendered with the ids the model wrote, so the next turn extends the KV cache."""
        return self._remembering(self.stream(self.render_chat(request), sampling, cancel))

    def render_chat(self, request: "Conversation | Sequence[Any]") -> list[int]:
        """Validate and render for a reply (nanochat_core.conversation has the token rules)."""
        conversation = request if isinstance(request, Conversation) else Conversation.from_messages(request)
        conversation.validate()
        with self._replies_lock:
            return conversation.prompt_ids(self.tokenizer, tokenizer_id=self.tokenizer_id,
                                           known=self._replies)

    def remember(self, done: Done) -> None:
        """Keep a finished reply's ids so that the client sending it back maps to them."""
        if done.reason == "cancelled" or not done.parts:
            return
        with self._replies_lock:
            for key in {reply_key(done.text), reply_key(done.parts)}:
                self._replies[key] = done.token_ids
                self._replies.move_to_end(key)
            while len(self._replies) > REMEMBERED_REPLIES:
                self._replies.popitem(last=False)

    def _remembering(self, events: Iterator[Event]) -> Iterator[Event]:
        for event in events:
            if isinstance(event, Done):
                self.remember(event)
            yield event

    def batched(self, max_batch: int = 8) -> "BatchedChatModel":
        """A thread-safe view of this model whose concurrent requests share decode steps."""
        return BatchedChatModel(self, max_batch)

    def reply(self, messages: Sequence[Any], sampling: SamplingParams | None = None) -> str:
        """The whole reply text (tool calls left out), for scripts and notebooks."""
        from .events import Done, ErrorEvent

        for event in self.chat(messages, sampling):
            if isinstance(event, ErrorEvent):
                raise RuntimeError(event.message)
            if isinstance(event, Done):
                return event.text
        return ""


class BatchedChatModel:
    """The ChatModel interface for servers: any number of threads may call chat()/stream() at
    once; their requests are decoded together (continuous batching, see batching.py)."""

    def __init__(self, base: ChatModel, max_batch: int = 8):
        from .batching import BatchEngine

        self.base = base
        self.info, self.notices, self.tokenizer = base.info, base.notices, base.tokenizer
        self.engine = BatchEngine(base.model, base.tokenizer, max_batch=max_batch)

    def stream(self, ids: Sequence[int], sampling: SamplingParams | None = None,
               cancel: threading.Event | None = None) -> Iterator[Event]:
        return self.engine.stream(list(ids), sampling or SamplingParams(), cancel)

    @property
    def tokenizer_id(self) -> str:
        return self.base.tokenizer_id

    def chat(self, request: "Conversation | Sequence[Any]", sampling: SamplingParams | None = None,
             cancel: threading.Event | None = None) -> Iterator[Event]:
        """Validate (raises ValidationError), render and stream; blocking, thread-safe."""
        return self.base._remembering(self.stream(self.base.render_chat(request), sampling, cancel))

    def submit(self, request: "Conversation | Sequence[Any]", sampling: SamplingParams,
               emit: Callable[[Event], None], cancel: threading.Event | None = None) -> threading.Event:
        """Non-blocking: validate and render now (may raise ValidationError), then `emit` is
        called from the scheduler thread with each event. Returns the cancel event."""
        ids = self.base.render_chat(request)

        def emit_and_remember(event: Event) -> None:
            if isinstance(event, Done):
                self.base.remember(event)
            emit(event)

        return self.engine.submit(ids, sampling, emit_and_remember, cancel)

    def close(self) -> None:
        self.engine.close()


def _load_location(loc: CheckpointLocation, device: torch.device, dtype: torch.dtype,
                   softcap: float | None, is_demo: bool, progress: Callable[[str], None],
                   hub: "HubOrigin | None" = None) -> ChatModel:
    """Read the three files of `loc` (checkpoint_files.py's rules) and build the model on
    `device` in `dtype`, after checking that it fits there."""
    progress(f"Reading {loc.meta_path}")
    config = read_model_config(loc.meta_path)
    if loc.tokenizer_path is None:
        raise no_tokenizer(loc)
    progress(f"Loading tokenizer {loc.tokenizer_path}")
    try:
        tokenizer = Tokenizer.from_file(loc.tokenizer_path)
    except TokenizerError as e:
        raise CheckpointError(str(e)) from None
    if tokenizer.vocab_size != config.vocab_size:
        raise CheckpointError(
            f"vocab mismatch: {loc.tokenizer_path} has {tokenizer.vocab_size} tokens but "
            f"{loc.meta_path.name} says vocab_size {config.vocab_size}"
        )
    progress(f"Loading weights {loc.model_path}")
    state = read_state_dict(loc.model_path)
    generation = detect_generation(state)
    # Before anything is allocated: the weights in the compute dtype, the rotary tables and a
    # KV cache must fit on the device (docs/checkpoints.md "Memory check").
    check_memory(state, config, dtype, device, loc.model_path)
    model = build_model(state, config, generation, softcap, loc.model_path)
    del state
    progress(f"Detected {generation}; converting to {str(dtype).removeprefix('torch.')} on {device}")
    # Weights are converted ONCE here to the compute dtype (bf16 tables in the file included).
    model = model.to(device=device, dtype=dtype).eval()
    model.refresh_rotary(dtype)
    model.requires_grad_(False)
    info = ModelInfo(
        generation=generation,
        source="demo" if is_demo else loc.source,
        model_tag=loc.model_tag,
        step=loc.step,
        checkpoint_dir=str(loc.tag_dir),
        is_demo=is_demo,
        n_layer=config.n_layer,
        n_embd=config.n_embd,
        n_head=config.n_head,
        n_kv_head=config.n_kv_head,
        vocab_size=config.vocab_size,
        sequence_len=config.sequence_len,
        window_pattern=config.window_pattern,
        softcap=model.arch.softcap,
        params=model.num_params(),
        device=str(device),
        dtype=str(dtype).removeprefix("torch."),
        model_path=str(loc.model_path),
        layout=loc.layout,
        hf_repo=hub.repo if hub else None,
        hf_revision=hub.revision if hub else None,
        hf_commit=hub.commit if hub else None,
    )
    return ChatModel(model, tokenizer, info)


def load_location(loc: CheckpointLocation, *, device: str | None = None, dtype: str | None = None,
                  softcap: float | None = None, is_demo: bool = False,
                  progress: Callable[[str], None] | None = None, hub: "HubOrigin | None" = None) -> ChatModel:
    """Load one checkpoint already found (checkpoints.locate, a catalog entry) under the same
    rules as load_chat_model."""
    torch_device, torch_dtype = resolve_device_and_dtype(device, dtype)
    return _load_location(loc, torch_device, torch_dtype, softcap, is_demo, progress or (lambda _l: None), hub)


def load_chat_model(
    base_dir: str | Path | None = None,
    source: str | None = None,
    model_tag: str | None = None,
    step: int | None = None,
    device: str | None = None,
    dtype: str | None = None,
    softcap: float | None = None,
    allow_demo: bool = True,
    progress: Callable[[str], None] | None = None,
    hf: str | None = None,
    download_progress: "DownloadProgress | None" = None,
) -> ChatModel:
    """Find and load a nanochat checkpoint (docs/checkpoints.md).

    `base_dir` is any folder holding checkpoints: nanochat's base dir, a stage or tag folder, or
    a flat folder (checkpoints.py's rules); default $NANOCHAT_BASE_DIR, else ~/.cache/nanochat.
    `hf` is `OWNER/REPO[@REVISION]` on the Hugging Face Hub instead: only the chosen
    checkpoint's files are downloaded (hub.py), then loaded under the same rules.
    `source` (base|mid|sft|rl; default sft, else the only stage present), `model_tag` and
    `step` choose within either. `download_progress(file, done, total)` replaces the
    library's progress bar on stderr (a TUI passes one).

    With nothing found and nothing explicitly requested (no base_dir, tag, step or hf, and
    allow_demo), the bundled demo model is loaded and a notice says so. Any problem raises
    CheckpointError (hub problems too) with a one-line message.
    """
    say = progress or (lambda _line: None)
    torch_device, torch_dtype = resolve_device_and_dtype(device, dtype)
    if hf is not None:
        if base_dir is not None:
            raise CheckpointError("--hf and --model-dir both name a checkpoint: give one of them")
        from .hub import fetch_checkpoint

        loc, origin = fetch_checkpoint(hf, source, model_tag, step, progress=say, download_progress=download_progress)
        return _load_location(loc, torch_device, torch_dtype, softcap, False, say, hub=origin)
    explicit = base_dir is not None or model_tag is not None or step is not None
    root = Path(base_dir).expanduser() if base_dir is not None else default_base_dir()
    say(f"Looking for {source or 'sft'} checkpoints in {root}")
    try:
        loc = locate(root, source, model_tag, step, progress=say)
    except CheckpointError as e:
        if explicit or not allow_demo:
            raise
        demo = demo_model_dir()
        notice = f"no checkpoints in {root}; using the bundled demo model ({demo})"
        say(notice)
        try:
            loc = locate(demo, "sft")
        except CheckpointError:
            raise CheckpointError(f"{e}; and the bundled demo model is missing from {demo}") from None
        m = _load_location(loc, torch_device, torch_dtype, softcap, True, say)
        m.notices.append(notice)
        return m
    return _load_location(loc, torch_device, torch_dtype, softcap, False, say)
