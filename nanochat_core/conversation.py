"""The ONE conversation object: messages, branches, and nanochat's exact token history.

Every front-end (the terminal app, `--plain`, `--prompt`, the web server, the OpenAI API) keeps a
chat as a `Conversation`, so what is sent to the model, what is shown and what is saved are the
same thing.

Token history (nanochat-format.md §5 "How nanochat's own front-ends built prompts"). nanochat's
`scripts/chat_cli.py` keeps one list of ids: `<|bos|>`, then per turn `<|user_start|>` + the line
+ `<|user_end|>` + `<|assistant_start|>`, then every token the engine yielded (forced calculator
tokens and the stop token included, even when that stop token is `<|bos|>`), then
`<|assistant_end|>` unless the reply already ended with it. A reply's ids are kept exactly as
generated: re-encoding its text could split it into other tokens than the model wrote, and the
next turn would then differ from what nanochat sends (and could not reuse the KV cache). An
empty reply (`[<|assistant_end|>]`) and a reply cut inside a python block stay in the history
as they are, as chat_cli keeps them.

Branches. A conversation is a tree of messages; `head` is the last message of the branch on
screen. Regenerating adds a new reply beside the old one; editing an earlier message adds a new
message beside it. Nothing is deleted unless asked (`discard`).

The system message is folded into the first user message when rendering, as nanochat's
renderer does (`system + "\\n\\n" + user`).

No torch import: a conversation is plain data; only `prompt_ids` needs a tokenizer.
"""

from __future__ import annotations

import re
import secrets
import time
import uuid
from dataclasses import dataclass, field, replace
from typing import Any, Iterable, Mapping, Protocol, Sequence

from .chat import Message, SamplingParams, ValidationError, reply_key, validate_messages
from .events import Done

# Reply states. `done` replies ended by themselves; `length` hit max tokens; `stopped` by the
# user; `partial` is still streaming (or was, when the process died: shown as interrupted);
# `error` failed (kept, marked, and left out of what the model sees); `lost` the connection to
# a server broke mid-reply.
REPLY_STATES = ("done", "length", "stopped", "partial", "error", "lost")
IN_CONTEXT = frozenset({"done", "length", "stopped", "partial", "lost"})
_DONE_STATE = {"stop": "done", "length": "length", "cancelled": "stopped"}


class Encoder(Protocol):
    """What rendering needs from a tokenizer (nanochat_core.tokenizer.Tokenizer has it)."""

    bos_id: int

    def encode(self, text: str) -> list[int]: ...
    def special(self, name: str) -> int: ...


@dataclass
class Node:
    """One message. `content` is a string, or nanochat's parts for an assistant reply that used
    the calculator. `token_ids` (assistant only) are the exact ids this reply put into the
    history, closing `<|assistant_end|>` included; None means "render from content"."""

    id: int
    parent: int | None
    role: str  # "user" | "assistant"
    content: str | tuple[dict, ...]
    token_ids: tuple[int, ...] | None = None
    tokenizer: str | None = None  # which tokenizer `token_ids` belong to
    state: str = "done"  # for replies: one of REPLY_STATES
    error: str | None = None
    stats: dict | None = None
    seed: int | None = None
    created: float = field(default_factory=time.time)

    @property
    def text(self) -> str:
        if isinstance(self.content, str):
            return self.content
        return "".join(p["text"] for p in self.content if p["type"] == "text")

    @property
    def message(self) -> Message:
        return Message(self.role, self.content)


class ConversationObserver(Protocol):
    """Told about every change, as it happens (the SQLite store saves turn by turn)."""

    def node_added(self, conversation: "Conversation", node: Node) -> None: ...
    def node_changed(self, conversation: "Conversation", node: Node) -> None: ...
    def conversation_changed(self, conversation: "Conversation") -> None: ...
    # optional: `nodes_removed(conversation, node_ids)` after `discard` (the store deletes them)


class Conversation:
    """A chat: a tree of messages with one branch on screen, the system message, sampling and
    the model it is held with. See the module docstring for the token-history rules."""

    def __init__(self, *, system: str | None = None, sampling: SamplingParams | None = None,
                 model: Mapping[str, Any] | None = None, title: str | None = None,
                 uid: str | None = None, created: float | None = None) -> None:
        self.uid = uid or uuid.uuid4().hex
        self.id: int | None = None  # the store's id once saved
        self.system = system
        self.sampling = sampling or SamplingParams()
        self.model: dict[str, Any] = dict(model or {})
        self.title = title
        self.created = created or time.time()
        self.updated = self.created
        self.nodes: dict[int, Node] = {}
        self.children: dict[int | None, list[int]] = {None: []}
        self.head: int | None = None
        self.shown: dict[int | None, int] = {}  # parent -> the version of its child last on screen
        self.observers: list[ConversationObserver] = []

    # ---- reading ----

    def path(self) -> list[Node]:
        """The messages of the branch on screen, in order."""
        return self.path_to(self.head)

    def path_to(self, node_id: int | None) -> list[Node]:
        """The messages from the first one down to `node_id`, in order."""
        out: list[Node] = []
        while node_id is not None:
            node = self.nodes[node_id]
            out.append(node)
            node_id = node.parent
        return out[::-1]

    @property
    def messages(self) -> list[Node]:
        return self.path()

    def __len__(self) -> int:
        return len(self.path())

    @property
    def last(self) -> Node | None:
        return self.nodes[self.head] if self.head is not None else None

    def context_path(self) -> list[Node]:
        """The path as the model sees it: a failed exchange (an error reply and the message it
        answered) is left out."""
        path = self.path()
        return [node for i, node in enumerate(path)
                if node.state != "error"
                and not (node.role == "user" and i + 1 < len(path) and path[i + 1].state == "error")]

    def request_messages(self, extra_user: str | None = None) -> list[Message]:
        """The context as role/content messages (system first), for validation and for servers
        that take messages. Empty replies are sent as empty strings."""
        out = [Message("system", self.system)] if self.system else []
        out += [node.message for node in self.context_path()]
        if extra_user is not None:
            out.append(Message("user", extra_user))
        return out

    def validate(self, extra_user: str | None = None) -> None:
        """The rulebook (nanochat_core.chat) on what would be sent; raises ValidationError.
        Replies this conversation recorded may be empty (nanochat keeps empty replies): they
        are checked as if they held one character."""
        messages = [m if m.role != "assistant" or m.text else Message("assistant", " ")
                    for m in self.request_messages(extra_user)]
        try:
            validate_messages(messages)
        except ValidationError as e:
            raise ValidationError(_say_which(str(e), messages)) from None

    def prompt_ids(self, tokenizer: Encoder, *, tokenizer_id: str | None = None,
                   known: Mapping[Any, Sequence[int]] | None = None) -> list[int]:
        """nanochat's token history for the context, ending with <|assistant_start|> (the path
        must end with a user message). Reply ids recorded with this tokenizer are used as they
        are; other replies are rendered from their content (each part on its own), or taken
        from `known` (reply_key -> generated ids, a model's memory of replies it wrote)."""
        path = self.context_path()
        if not path or path[-1].role != "user":
            raise ValidationError("The last message must be from the user")
        return self.token_history(tokenizer, tokenizer_id=tokenizer_id, known=known)

    def token_history(self, tokenizer: Encoder, *, tokenizer_id: str | None = None,
                      known: Mapping[Any, Sequence[int]] | None = None) -> list[int]:
        """The whole context as nanochat's chat_cli holds it (`conversation_tokens`): after a
        reply, it ends with that reply's ids; after a user message, with <|assistant_start|>."""
        sp = tokenizer.special
        user_start, user_end = sp("<|user_start|>"), sp("<|user_end|>")
        assistant_start, assistant_end = sp("<|assistant_start|>"), sp("<|assistant_end|>")
        ids = [tokenizer.bos_id]
        first_user = True
        for node in self.context_path():
            if node.role == "user":
                text = node.text
                if first_user and self.system:
                    text = self.system + "\n\n" + text
                first_user = False
                ids += [user_start, *tokenizer.encode(text), user_end, assistant_start]
                continue
            if node.token_ids is not None and (tokenizer_id is None or node.tokenizer in (None, tokenizer_id)):
                ids += node.token_ids
                continue
            generated = known.get(reply_key(node.content)) if known else None
            if generated is not None:
                ids += generated
            elif isinstance(node.content, str):
                ids += tokenizer.encode(node.content)
            else:
                for part in node.content:
                    if part["type"] == "text":
                        ids += tokenizer.encode(part["text"])
                    elif part["type"] == "python":
                        ids += [sp("<|python_start|>"), *tokenizer.encode(part["text"]), sp("<|python_end|>")]
                    else:
                        ids += [sp("<|output_start|>"), *tokenizer.encode(part["text"]), sp("<|output_end|>")]
            if ids[-1] != assistant_end:
                ids.append(assistant_end)
        return ids

    def siblings(self, node_id: int) -> list[int]:
        """The versions of this message (itself included), oldest first."""
        return list(self.children[self.nodes[node_id].parent])

    def latest_leaf(self, node_id: int) -> int:
        """Where switching to `node_id` lands: down the versions last shown below it (the newest
        where none was shown), to the end of that branch."""
        while self.children.get(node_id):
            kids = self.children[node_id]
            shown = self.shown.get(node_id)
            node_id = shown if shown in kids else kids[-1]
        return node_id

    def _remember_shown(self) -> None:
        for node in self.path():
            self.shown[node.parent] = node.id

    # ---- changing ----

    def _new_id(self) -> int:
        # Random 52-bit ids (exact in JavaScript too): two instances adding to the same saved
        # conversation add branches instead of clashing on ids.
        while True:
            node_id = secrets.randbits(52) or 1
            if node_id not in self.nodes:
                return node_id

    def _add(self, parent: int | None, role: str, content: str | tuple[dict, ...], **fields: Any) -> Node:
        node = Node(self._new_id(), parent, role, content, **fields)
        self.nodes[node.id] = node
        self.children.setdefault(parent, []).append(node.id)
        self.children[node.id] = []
        self.head = node.id
        self.shown[parent] = node.id
        self._touch()
        for observer in list(self.observers):
            observer.node_added(self, node)
        self._changed()
        return node

    def _touch(self) -> None:
        self.updated = time.time()

    def _changed(self) -> None:
        for observer in list(self.observers):
            observer.conversation_changed(self)

    def _node_changed(self, node: Node) -> None:
        self._touch()
        for observer in list(self.observers):
            observer.node_changed(self, node)

    def add_user(self, text: str) -> Node:
        """A new message at the end of the branch on screen. The text is kept as given (front-ends
        strip typed lines, as nanochat's chat_cli does)."""
        if self.title is None and text.strip():
            self.title = text.strip().splitlines()[0][:80]
        return self._add(self.head, "user", text)

    def add_assistant(self, content: str | Sequence[Mapping], token_ids: Sequence[int] | None = None,
                      state: str = "done") -> Node:
        """A reply that is already known (a client sent it back, a history was imported)."""
        if not isinstance(content, str):
            content = tuple({"type": p["type"], "text": p["text"]} for p in content)
        return self._add(self.head, "assistant", content,
                         token_ids=None if token_ids is None else tuple(token_ids), state=state)

    def start_reply(self, seed: int | None = None) -> Node:
        """An empty reply being streamed (saved as `partial` until it finishes)."""
        if self.last is None or self.last.role != "user":
            raise ValidationError("The last message must be from the user")
        return self._add(self.head, "assistant", "", state="partial", seed=seed)

    def update_reply(self, node: Node, parts: Iterable[Mapping], token_ids: Sequence[int] | None = None) -> None:
        """What a streaming reply holds so far (saved, so a killed process keeps it)."""
        node.content = _content(parts)
        if token_ids is not None:
            node.token_ids = tuple(token_ids)
        self._node_changed(node)

    def finish_reply(self, node: Node, done: Done, *, tokenizer: Encoder | None = None,
                     tokenizer_id: str | None = None) -> None:
        """Record a finished reply: its text/parts, how it ended, and with a tokenizer the exact
        ids chat_cli would append (every yielded token, then <|assistant_end|> unless it ended
        with it). Empty and tool-only replies are kept, as nanochat keeps them."""
        node.content = _content(done.parts)
        node.state = _DONE_STATE.get(done.reason, "done")
        node.error = None
        node.stats = {
            "prompt_tokens": done.stats.prompt_tokens, "generated_tokens": done.stats.generated_tokens,
            "cached_tokens": done.stats.cached_tokens, "ttft_s": round(done.stats.ttft_s, 4),
            "total_s": round(done.stats.total_s, 4), "summary": done.stats.summary(),
        }
        if tokenizer is not None:
            end = tokenizer.special("<|assistant_end|>")
            ids = list(done.generated_ids)
            if not ids or ids[-1] != end:
                ids.append(end)
            node.token_ids, node.tokenizer = tuple(ids), tokenizer_id
        self._node_changed(node)

    def fail_reply(self, node: Node, message: str, *, lost: bool = False) -> None:
        """A reply that failed (kept, marked with why; left out of the context), or whose
        connection was lost mid-way (`lost`: kept in the context, marked)."""
        node.state = "lost" if lost else "error"
        node.error = message
        self._node_changed(node)

    def regenerate_from(self) -> Node:
        """Go back to the message the last reply answered, so the next `start_reply` adds a new
        version beside the old one (which stays, as a branch). Returns that user message."""
        path = self.path()
        while path and path[-1].role == "assistant":
            path.pop()
        if not path:
            raise ValidationError("Nothing to regenerate yet")
        self.head = path[-1].id
        self._changed()
        return path[-1]

    def edit(self, node_id: int, text: str) -> Node:
        """A new version of an earlier user message (a new branch from there; the old one stays
        until discarded). Returns the new message, now the end of the branch on screen."""
        node = self.nodes[node_id]
        if node.role != "user":
            raise ValidationError("Only your own messages can be edited")
        self.head = node.parent
        return self._add(node.parent, "user", text)

    def switch(self, node_id: int, step: int) -> int:
        """Show another version of message `node_id` (step -1 / +1); returns the new head."""
        versions = self.siblings(node_id)
        index = versions.index(node_id) + step
        if not 0 <= index < len(versions):
            return self.head  # type: ignore[return-value]
        self._remember_shown()
        self.head = self.latest_leaf(versions[index])
        self._remember_shown()
        self._changed()
        return self.head

    def rewind(self, node_id: int | None) -> None:
        """Show the branch only up to `node_id` (None: before the first message). Nothing is
        deleted: later messages stay reachable as a branch until discarded."""
        self.head = node_id
        self._changed()

    def discard(self, node_id: int) -> None:
        """Delete a message and everything below it."""
        doomed = [node_id]
        for nid in doomed:
            doomed += self.children.get(nid, [])
        parent = self.nodes[node_id].parent
        if self.head in doomed:
            self.head = parent
        self.children[parent].remove(node_id)
        for nid in doomed:
            self.nodes.pop(nid, None)
            self.children.pop(nid, None)
        for observer in list(self.observers):
            removed = getattr(observer, "nodes_removed", None)
            if removed is not None:
                removed(self, doomed)
        self._changed()

    def set_system(self, system: str | None) -> None:
        self.system = system
        self._changed()

    def set_sampling(self, sampling: SamplingParams) -> None:
        self.sampling = sampling
        self._changed()

    def set_title(self, title: str) -> None:
        self.title = title
        self._changed()

    # ---- building from outside ----

    @classmethod
    def from_messages(cls, messages: Sequence[Any], *, default_system: str | None = None,
                      **kwargs: Any) -> "Conversation":
        """A conversation from role/content messages (a web or OpenAI client's request), checked
        by the rulebook first (ValidationError). A first `system` message becomes the system
        message; without one, `default_system` (the server's --system) applies."""
        clean = validate_messages(messages)
        system = default_system
        if clean and clean[0].role == "system":
            system, clean = clean[0].text, clean[1:]
        elif default_system:
            # the server's system message counts toward the limits too (the rulebook's words)
            validate_messages([Message("system", default_system), *clean])
        conv = cls(system=system, **kwargs)
        for message in clean:
            conv._add(conv.head, message.role, message.content)
        if conv.title is None:
            first = next((m for m in clean if m.role == "user"), None)
            conv.title = first.text.strip().splitlines()[0][:80] if first and first.text.strip() else None
        return conv

    def copy(self) -> "Conversation":
        """An independent copy (no observers)."""
        other = Conversation(system=self.system, sampling=self.sampling, model=self.model,
                             title=self.title, uid=self.uid, created=self.created)
        other.id, other.updated, other.head = self.id, self.updated, self.head
        other.nodes = {k: replace(v) for k, v in self.nodes.items()}
        other.children = {k: list(v) for k, v in self.children.items()}
        other.shown = dict(self.shown)
        return other


def _content(parts: Iterable[Mapping]) -> str | tuple[dict, ...]:
    """A reply's parts as content: plain text when it is only text (as clients send it)."""
    parts = [{"type": p["type"], "text": p["text"]} for p in parts]
    if all(p["type"] == "text" for p in parts):
        return "".join(p["text"] for p in parts)
    return tuple(parts)


class ReplyRecorder:
    """Keeps a streaming reply in its conversation, event by event: the ONE place that turns
    engine events into the reply a conversation holds (every front-end feeds its events here).
    Ask the model for `recorder.request` (the conversation before the reply was added).

    While it streams, the reply is updated at most every `save_every` seconds (each update is
    saved by an attached store, so a killed process keeps what had arrived); `Done` records it
    with its exact ids; an `ErrorEvent` marks it failed, keeping the text that had arrived."""

    def __init__(self, conversation: Conversation, node: Node, *, tokenizer: Encoder | None = None,
                 tokenizer_id: str | None = None, save_every: float = 0.5,
                 request: Conversation | None = None) -> None:
        self.conversation, self.node = conversation, node
        # What the model answers: the conversation as it was before this reply was added (a
        # copy, so the engine thread never sees the reply growing or later edits).
        self.request = request if request is not None else conversation.copy()
        self.tokenizer, self.tokenizer_id = tokenizer, tokenizer_id
        self.save_every = save_every
        self.parts: list[dict] = []
        self._saved_at = time.monotonic()
        self._dirty = False
        self.done: Done | None = None
        self.error: str | None = None

    @classmethod
    def start(cls, conversation: Conversation, backend: Any, seed: int | None = None,
              **kwargs: Any) -> "ReplyRecorder":
        """A new (partial) reply to the conversation's last message, recorded for `backend`
        (a local model gives the tokenizer for exact ids; a remote one has none)."""
        request = conversation.copy()
        node = conversation.start_reply(seed)
        tokenizer = getattr(backend, "tokenizer", None)
        tokenizer_id = getattr(backend, "tokenizer_id", None) if tokenizer is not None else None
        return cls(conversation, node, tokenizer=tokenizer, tokenizer_id=tokenizer_id,
                   request=request, **kwargs)

    def _text(self, piece: str) -> None:
        if self.parts and self.parts[-1]["type"] == "text":
            self.parts[-1]["text"] += piece
        else:
            self.parts.append({"type": "text", "text": piece})

    def feed(self, event: Any) -> None:
        from .events import ErrorEvent, TextDelta, ToolCall, ToolResult

        if isinstance(event, TextDelta):
            self._text(event.text)
        elif isinstance(event, ToolCall):
            self.parts.append({"type": "python", "text": event.expression})
        elif isinstance(event, ToolResult):
            if event.result is not None:
                self.parts.append({"type": "python_output", "text": event.result})
        elif isinstance(event, Done):
            self.done = event
            self.conversation.finish_reply(self.node, event, tokenizer=self.tokenizer,
                                           tokenizer_id=self.tokenizer_id)
            return
        elif isinstance(event, ErrorEvent):
            self.error = event.message
            self.node.content = _content(self.parts)
            self.conversation.fail_reply(self.node, event.message)
            return
        else:
            return
        self._dirty = True
        if time.monotonic() - self._saved_at >= self.save_every:
            self.flush()

    def flush(self) -> None:
        """Save what has arrived now (the front-end calls this on a timer, and before exit)."""
        if self._dirty and self.done is None and self.error is None:
            self.conversation.update_reply(self.node, self.parts)
            self._saved_at = time.monotonic()
            self._dirty = False

    @property
    def finished(self) -> bool:
        return self.done is not None or self.error is not None


def _ordinal(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def _say_which(words: str, messages: Sequence[Message]) -> str:
    """The rulebook's words (kept exactly: "Message 3 is too long. …") plus which message that
    is in words a person uses, since the index counts from 0 and includes replies."""
    match = re.match(r"Message (\d+) ", words)
    if not match or int(match.group(1)) >= len(messages):
        return words
    index = int(match.group(1))
    message = messages[index]
    if message.role == "system":
        who = "the system message"
    elif message.role == "user":
        users = [i for i, m in enumerate(messages) if m.role == "user"]
        who = "your message" if index == users[-1] else f"your {_ordinal(users.index(index) + 1)} message"
    else:
        replies = [i for i, m in enumerate(messages) if m.role == "assistant"]
        who = f"the {_ordinal(replies.index(index) + 1)} reply"
    if "too long" in words:
        who += f", {len(message.text):,} characters"
    return f"{words} ({who})"
