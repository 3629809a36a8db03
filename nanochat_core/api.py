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
from .context import check_prompt
from .quantize import QuantizeError, can_pack_bf16, check_quantize, cpu_has_native_bf16, pack_bf16, quantize_int8
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
    """(device, dtype) as resolve_compute decides them, without its notices."""
    compute = resolve_compute(device, dtype)
    return compute.device, compute.dtype


class Compute:
    """Where and how a model computes, and why (notices a front-end shows once at load)."""

    def __init__(self, device: torch.device, dtype: torch.dtype, quantize: str | None, notices: list[str]):
        self.device, self.dtype, self.quantize, self.notices = device, dtype, quantize, notices

    @property
    def label(self) -> str:
        """What ModelInfo.dtype shows (header, /stats): 'float32', 'bfloat16, int8 weights'."""
        name = str(self.dtype).removeprefix("torch.")
        return f"{name}, {self.quantize} weights" if self.quantize else name


def resolve_compute(device: str | None, dtype: str | None, quantize: str | None = None) -> Compute:
    """bfloat16 on CUDA (nanochat's default there), float32 elsewhere (the fixtures' reference
    logits are fp32). `-d bfloat16` on a CPU is honoured where the CPU has native bf16
    (AVX512-BF16, AMX, Arm BF16: about 2-3x faster decode there, docs/benchmarks.md); on other
    CPUs bf16 is emulated and slower than float32, so float32 is kept and a notice says why.
    `quantize="int8"` (CPU only) computes in bfloat16, the dtype its kernel wants."""
    device = device or autodetect_device()
    if device not in ("cuda", "cpu", "mps") and not device.startswith("cuda:"):
        raise CheckpointError(f"unknown device type {device!r}: choose cuda, cpu or mps")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise CheckpointError("--device-type cuda was requested but CUDA is not available here")
    if device == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise CheckpointError("--device-type mps was requested but MPS is not available here")
    if dtype is not None and dtype not in DTYPES:
        raise CheckpointError(f"unknown dtype {dtype!r}: choose bfloat16 or float32")
    torch_device, notices = torch.device(device), []
    check_quantize(quantize, torch_device)
    if quantize is not None:
        if dtype == "float32":
            raise QuantizeError("--quantize int8 computes in bfloat16 (its kernel is many times slower "
                                "with float32 activations): leave out --dtype float32")
        dtype = "bfloat16"
        if not cpu_has_native_bf16():
            notices.append("this CPU has no native bfloat16: int8 weights still cut the bytes each token "
                           "reads by 4x, but the bf16 arithmetic is emulated")
    elif dtype is None:
        dtype = "bfloat16" if device.startswith("cuda") else "float32"
    elif dtype == "bfloat16" and device == "cpu" and not cpu_has_native_bf16():
        notices.append("-d bfloat16: this CPU has no native bfloat16 (AVX512-BF16, AMX or Arm BF16), "
                       "where bf16 is emulated and slower; computing in float32")
        dtype = "float32"
    return Compute(torch_device, DTYPES[dtype], quantize, notices)


class ChatModel:
    """A loaded model + tokenizer + engine. Runs one generation at a time (it owns a KV cache).

    `max_context` caps the positions of every request (context.py); None = the model's own
    limit. A conversation over it is refused by chat()/stream() with ContextTooLong (a
    ValidationError) before any work."""

    def __init__(self, model, tokenizer: Tokenizer, info: ModelInfo, notices: Sequence[str] = (),
                 max_context: int | None = None):
        self.model = model
        self.tokenizer = tokenizer
        self.info = info
        self.notices = list(notices)
        self.engine = Engine(model, tokenizer, max_context=max_context)
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

    @property
    def context_limit(self) -> int:
        """Tokens a conversation may hold when the model reads it (prompt plus reply but its last
        token): max_context, or the model's positions."""
        return self.engine.context_limit

    def check_context(self, request: "Conversation | Sequence[Any]") -> list[int]:
        """Validate and render `request` as chat() would; raise ContextTooLong (one line, a
        ValidationError) when it does not fit. Returns the ids. The web server calls this to
        answer 400 before it queues a request."""
        ids = self.render_chat(request)
        check_prompt(len(ids), self.context_limit)
        return ids

    def stream(self, ids: Sequence[int], sampling: SamplingParams | None = None,
               cancel: threading.Event | None = None) -> Iterator[Event]:
        """Raises ContextTooLong at once when `ids` do not fit; otherwise streams events."""
        ids = list(ids)
        check_prompt(len(ids), self.context_limit)
        return self.engine.stream(ids, sampling or SamplingParams(), cancel)

    def chat(self, request: "Conversation | Sequence[Any]", sampling: SamplingParams | None = None,
             cancel: threading.Event | None = None) -> Iterator[Event]:
        """Validate (raises ValidationError, or ContextTooLong, before any work), render and
        stream the next reply of `request`: a Conversation (its exact token history), or
        role/content messages.

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

    def batched(self, max_batch: int = 8, max_context: int | None = None) -> "BatchedChatModel":
        """A thread-safe view of this model whose concurrent requests share decode steps.
        `max_context`: the per-request budget (default: this model's own max_context)."""
        return BatchedChatModel(self, max_batch, max_context)

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

    def __init__(self, base: ChatModel, max_batch: int = 8, max_context: int | None = None):
        from .batching import BatchEngine

        self.base = base
        self.info, self.notices, self.tokenizer = base.info, base.notices, base.tokenizer
        if max_context is None and base.context_limit < base.model.rotary_len:
            max_context = base.context_limit  # the base model's budget carries over
        self.engine = BatchEngine(base.model, base.tokenizer, max_batch=max_batch, max_context=max_context)

    @property
    def context_limit(self) -> int:
        """See ChatModel.context_limit (this view's max_context)."""
        return self.engine.context_limit

    def check_context(self, request: "Conversation | Sequence[Any]") -> list[int]:
        """See ChatModel.check_context: validate, render, raise ContextTooLong if over budget."""
        ids = self.base.render_chat(request)
        check_prompt(len(ids), self.context_limit)
        return ids

    def stream(self, ids: Sequence[int], sampling: SamplingParams | None = None,
               cancel: threading.Event | None = None) -> Iterator[Event]:
        """Raises ContextTooLong at once when `ids` do not fit; otherwise streams events."""
        ids = list(ids)
        check_prompt(len(ids), self.context_limit)
        return self.engine.stream(ids, sampling or SamplingParams(), cancel)

    @property
    def tokenizer_id(self) -> str:
        return self.base.tokenizer_id

    def chat(self, request: "Conversation | Sequence[Any]", sampling: SamplingParams | None = None,
             cancel: threading.Event | None = None) -> Iterator[Event]:
        """Validate (raises ValidationError, or ContextTooLong, before any work), render and
        stream; blocking, thread-safe."""
        return self.base._remembering(self.stream(self.check_context(request), sampling, cancel))

    def submit(self, request: "Conversation | Sequence[Any]", sampling: SamplingParams,
               emit: Callable[[Event], None], cancel: threading.Event | None = None) -> threading.Event:
        """Non-blocking: validate and render now (may raise ValidationError), then `emit` is
        called from the scheduler thread with each event. Returns the cancel event.
        A conversation over the budget raises ContextTooLong here, before it is queued."""
        ids = self.check_context(request)

        def emit_and_remember(event: Event) -> None:
            if isinstance(event, Done):
                self.base.remember(event)
            emit(event)

        return self.engine.submit(ids, sampling, emit_and_remember, cancel)

    def close(self) -> None:
        self.engine.close()


def ready_model(model, compute: Compute):
    """Convert a loaded model ONCE to the compute device/dtype (bf16 tables in the file included),
    fuse what inference can fuse, and quantize if asked. Returns (model, parameter count)."""
    model = model.to(device=compute.device, dtype=compute.dtype).eval()
    model.refresh_rotary(compute.dtype)
    model.requires_grad_(False)
    model.prepare_inference()
    params = model.param_count = model.num_params()  # before quantization turns matrices into buffers
    if compute.quantize == "int8":
        quantize_int8(model)
    elif compute.device.type == "cpu" and compute.dtype == torch.bfloat16 and can_pack_bf16():
        pack_bf16(model)  # bf16 on CPU is only fast with the weights packed once (quantize.py)
    return model, params


def _load_location(loc: CheckpointLocation, compute: Compute, softcap: float | None, is_demo: bool,
                   progress: Callable[[str], None], hub: "HubOrigin | None" = None,
                   max_context: int | None = None) -> ChatModel:
    """Read the three files of `loc` (checkpoint_files.py's rules) and build the model on the
    compute device in its dtype, after checking that it fits there."""
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
    check_memory(state, config, compute.dtype, compute.device, loc.model_path)
    model = build_model(state, config, generation, softcap, loc.model_path)
    del state
    progress(f"Detected {generation}; converting to {compute.label} on {compute.device}")
    model, params = ready_model(model, compute)
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
        params=params,
        device=str(compute.device),
        dtype=compute.label,
        quantize=compute.quantize,
        model_path=str(loc.model_path),
        layout=loc.layout,
        hf_repo=hub.repo if hub else None,
        hf_revision=hub.revision if hub else None,
        hf_commit=hub.commit if hub else None,
    )
    return ChatModel(model, tokenizer, info, notices=compute.notices, max_context=max_context)


def load_location(loc: CheckpointLocation, *, device: str | None = None, dtype: str | None = None,
                  softcap: float | None = None, is_demo: bool = False,
                  progress: Callable[[str], None] | None = None, hub: "HubOrigin | None" = None,
                  quantize: str | None = None, max_context: int | None = None) -> ChatModel:
    """Load one checkpoint already found (checkpoints.locate, a catalog entry) under the same
    rules as load_chat_model."""
    say = progress or (lambda _l: None)
    compute = resolve_compute(device, dtype, quantize)
    for notice in compute.notices:
        say(notice)
    return _load_location(loc, compute, softcap, is_demo, say, hub, max_context)


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
    quantize: str | None = None,
    max_context: int | None = None,
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
    CheckpointError (hub problems too; QuantizeError for --quantize) with a one-line message.
    `quantize="int8"`: int8 weights on CPU (quantize.py); `max_context`: a per-request token
    budget (context.py).
    """
    say = progress or (lambda _line: None)
    compute = resolve_compute(device, dtype, quantize)
    for notice in compute.notices:
        say(notice)
    if hf is not None:
        if base_dir is not None:
            raise CheckpointError("--hf and --model-dir both name a checkpoint: give one of them")
        from .hub import fetch_checkpoint

        loc, origin = fetch_checkpoint(hf, source, model_tag, step, progress=say, download_progress=download_progress)
        return _load_location(loc, compute, softcap, False, say, hub=origin, max_context=max_context)
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
        m = _load_location(loc, compute, softcap, True, say, max_context=max_context)
        m.notices.append(notice)
        return m
    return _load_location(loc, compute, softcap, False, say, max_context=max_context)
