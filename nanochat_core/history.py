"""Saved conversations: one SQLite file (stdlib sqlite3), written turn by turn as it happens.

- WAL mode and a busy timeout: two instances can read and write at once without corruption;
  every write is one short transaction.
- A versioned schema (`PRAGMA user_version`) with migrations in order; a database made by a newer
  version is never written (the app runs without saving and says why).
- Anything wrong with the file (locked for too long, read-only, corrupt, newer schema) raises
  `HistoryUnavailable` with one line; nothing is ever overwritten or "repaired" silently.
- Node ids are random 52-bit integers (JavaScript-safe), so two instances adding messages to the
  same conversation add branches instead of clashing.

`attach(conversation)` makes the store save every change of that conversation as it happens
(see Conversation's observers); a streaming reply is saved as `partial` and updated while it
grows, so a `kill -9` loses at most what arrived since the last update.
"""

from __future__ import annotations

import json
import os
import sqlite3
import sys
import threading
import time
from array import array
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable, Iterator

from .chat import SamplingParams
from .conversation import Conversation, Node
from .errors import NanochatError

SCHEMA_VERSION = 1
BUSY_TIMEOUT_MS = 5000  # how long a write waits for another instance's transaction
EXPORT_FORMAT = "nanochat-tui.conversation"
EXPORT_VERSION = 1

_SCHEMA_V1 = """
CREATE TABLE conversations (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    uid TEXT NOT NULL UNIQUE,
    title TEXT,
    system TEXT,
    sampling TEXT NOT NULL,
    model TEXT NOT NULL,
    head INTEGER,
    created REAL NOT NULL,
    updated REAL NOT NULL
);
CREATE TABLE nodes (
    conversation_id INTEGER NOT NULL REFERENCES conversations(id) ON DELETE CASCADE,
    id INTEGER NOT NULL,
    parent INTEGER,
    role TEXT NOT NULL,
    content TEXT NOT NULL,
    token_ids BLOB,
    tokenizer TEXT,
    state TEXT NOT NULL,
    error TEXT,
    stats TEXT,
    seed INTEGER,
    created REAL NOT NULL,
    PRIMARY KEY (conversation_id, id)
);
CREATE INDEX conversations_by_updated ON conversations(updated);
"""

# Migrations: MIGRATIONS[v] turns a version-v database into version v+1.
MIGRATIONS: dict[int, str] = {0: _SCHEMA_V1}


class HistoryUnavailable(NanochatError):
    """The history database cannot be used; `str()` says which file and why, in one line."""


@dataclass(frozen=True)
class Summary:
    """One line of `history list`."""

    id: int
    uid: str
    title: str
    messages: int
    model: str
    created: float
    updated: float


def _ids_blob(ids: tuple[int, ...] | None) -> bytes | None:
    """Token ids as little-endian uint32 (4 bytes each, vs ~6 as JSON text)."""
    if ids is None:
        return None
    packed = array("I", ids)
    if sys.byteorder != "little":  # pragma: no cover - big-endian hosts
        packed.byteswap()
    return packed.tobytes()


def _ids_tuple(blob: bytes | None) -> tuple[int, ...] | None:
    if blob is None:
        return None
    packed = array("I")
    packed.frombytes(blob)
    if sys.byteorder != "little":  # pragma: no cover
        packed.byteswap()
    return tuple(packed)


def _content_json(content: str | tuple[dict, ...]) -> str:
    return json.dumps(content if isinstance(content, str) else list(content), ensure_ascii=False)


def _content_value(text: str) -> str | tuple[dict, ...]:
    value = json.loads(text)
    return value if isinstance(value, str) else tuple(value)


def model_label(model: dict) -> str:
    """A short name for a conversation's model identity (history list)."""
    return str(model.get("name") or model.get("model_tag") or model.get("server") or "")


class HistoryStore:
    """The conversations database at `path`. Open with `HistoryStore.open(path)`."""

    def __init__(self, path: Path, connection: sqlite3.Connection) -> None:
        self.path = path
        self._db = connection
        self._lock = threading.RLock()  # one connection shared by the UI and worker threads
        self.error: str | None = None  # set when a write failed: saving stopped, say why

    # ---- opening ----

    @classmethod
    def open(cls, path: str | Path, busy_timeout_ms: int = BUSY_TIMEOUT_MS) -> "HistoryStore":
        """Open (creating if needed) the database; HistoryUnavailable if it cannot be used.
        `busy_timeout_ms`: how long to wait for another instance's lock before giving up."""
        path = Path(path).expanduser()
        where = str(path)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise HistoryUnavailable(f"cannot create {path.parent}: {e.strerror or e}") from None
        if path.exists() and not path.is_file():
            raise HistoryUnavailable(f"{where} is not a regular file")
        if path.exists() and not os.access(path, os.W_OK):
            raise HistoryUnavailable(f"{where} is read-only")
        try:
            db = sqlite3.connect(path, timeout=busy_timeout_ms / 1000, isolation_level=None,
                                 check_same_thread=False)
        except sqlite3.Error as e:
            raise HistoryUnavailable(f"cannot open {where}: {e}") from None
        try:
            version = db.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise HistoryUnavailable(
                    f"{where} was written by a newer nanochat-tui (schema {version}; this one knows "
                    f"{SCHEMA_VERSION}): it is left untouched")
            db.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
            mode = db.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise HistoryUnavailable(f"cannot use WAL mode on {where} (got {mode})")
            db.execute("PRAGMA synchronous = NORMAL")
            db.execute("PRAGMA foreign_keys = ON")
            if version < SCHEMA_VERSION:
                cls._migrate(db, version)
            db.execute("SELECT count(*) FROM conversations").fetchone()
        except HistoryUnavailable:
            db.close()
            raise
        except sqlite3.DatabaseError as e:
            db.close()
            raise HistoryUnavailable(f"cannot use {where}: {_reason(e)}") from None
        return cls(path, db)

    @staticmethod
    def _migrate(db: sqlite3.Connection, version: int) -> None:
        db.execute("BEGIN IMMEDIATE")
        try:
            current = db.execute("PRAGMA user_version").fetchone()[0]  # another instance may have won
            for v in range(current, SCHEMA_VERSION):
                for statement in filter(str.strip, MIGRATIONS[v].split(";")):
                    db.execute(statement)
            db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # ---- writing (each call is one short transaction) ----

    def _write(self, sql_and_params: Iterable[tuple[str, tuple]]) -> None:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                for sql, params in sql_and_params:
                    self._db.execute(sql, params)
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    def _conversation_row(self, conv: Conversation) -> tuple:
        sampling = {"temperature": conv.sampling.temperature, "top_k": conv.sampling.top_k,
                    "max_tokens": conv.sampling.max_tokens, "seed": conv.sampling.seed}
        return (conv.title, conv.system, json.dumps(sampling), json.dumps(conv.model, ensure_ascii=False),
                conv.head, conv.created, conv.updated)

    def _node_row(self, conv: Conversation, node: Node) -> tuple:
        return (conv.id, node.id, node.parent, node.role, _content_json(node.content),
                _ids_blob(node.token_ids), node.tokenizer, node.state, node.error,
                None if node.stats is None else json.dumps(node.stats), node.seed, node.created)

    def save(self, conv: Conversation) -> int:
        """Insert a conversation and all its messages (e.g. an import); returns its id."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                cur = self._db.execute(
                    "INSERT INTO conversations (uid, title, system, sampling, model, head, created, updated)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?)", (conv.uid, *self._conversation_row(conv)))
                conv.id = int(cur.lastrowid)
                for node in conv.nodes.values():
                    self._db.execute(_INSERT_NODE, self._node_row(conv, node))
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        return conv.id

    def attach(self, conv: Conversation) -> None:
        """Save this conversation from now on, change by change. A new conversation is written
        when its first message arrives (an empty chat leaves no row behind)."""
        conv.observers.append(_Saver(self))

    def delete(self, conversation_id: int) -> bool:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.execute("DELETE FROM nodes WHERE conversation_id = ?", (conversation_id,))
                cur = self._db.execute("DELETE FROM conversations WHERE id = ?", (conversation_id,))
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        return cur.rowcount > 0

    def rename(self, conversation_id: int, title: str) -> None:
        self._write([("UPDATE conversations SET title = ?, updated = ? WHERE id = ?",
                      (title, time.time(), conversation_id))])

    # ---- reading ----

    def _summaries(self, where: str = "", params: tuple = (), limit: int | None = None) -> list[Summary]:
        sql = ("SELECT c.id, c.uid, c.title, c.model, c.created, c.updated,"
               " (SELECT count(*) FROM nodes n WHERE n.conversation_id = c.id)"
               f" FROM conversations c {where} ORDER BY c.updated DESC, c.id DESC")
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        with self._lock:
            rows = self._db.execute(sql, params).fetchall()
        return [Summary(id=r[0], uid=r[1], title=r[2] or "(untitled)", model=model_label(json.loads(r[3])),
                        created=r[4], updated=r[5], messages=r[6]) for r in rows]

    def list(self, limit: int | None = None) -> list[Summary]:
        """Conversations, most recently updated first."""
        return self._summaries(limit=limit)

    def search(self, text: str, limit: int | None = None) -> list[Summary]:
        """Conversations whose title or any message contains `text` (case-insensitive)."""
        pattern = "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        return self._summaries(
            "WHERE c.title LIKE ? ESCAPE '\\' OR EXISTS (SELECT 1 FROM nodes n WHERE"
            " n.conversation_id = c.id AND n.content LIKE ? ESCAPE '\\')", (pattern, pattern), limit)

    def recent_prompts(self, limit: int = 500) -> list[str]:
        """The user's messages across every conversation, newest first (a front-end's prompt
        history: Up in an empty input, like a shell's)."""
        with self._lock:
            rows = self._db.execute(
                "SELECT content FROM nodes WHERE role = 'user' ORDER BY created DESC, rowid DESC LIMIT ?",
                (int(limit),)).fetchall()
        out = []
        for (content,) in rows:
            value = _content_value(content)
            if isinstance(value, str) and value.strip():
                out.append(value)
        return out

    def latest_id(self) -> int | None:
        found = self._summaries(limit=1)
        return found[0].id if found else None

    def resolve(self, ref: str | int) -> int:
        """A conversation id from what a user typed: its number, or a prefix of its uid."""
        text = str(ref).strip()
        with self._lock:
            if text.isdigit():
                row = self._db.execute("SELECT id FROM conversations WHERE id = ?", (int(text),)).fetchone()
            else:
                rows = self._db.execute("SELECT id FROM conversations WHERE uid LIKE ?",
                                        (text.replace("%", "") + "%",)).fetchall()
                row = rows[0] if len(rows) == 1 and text else None
        if row is None:
            raise HistoryUnavailable(f"no saved conversation {text!r} in {self.path} "
                                     "(nanochat-tui history list shows them)")
        return int(row[0])

    def load(self, conversation_id: int) -> Conversation:
        with self._lock:
            row = self._db.execute(
                "SELECT uid, title, system, sampling, model, head, created, updated FROM conversations"
                " WHERE id = ?", (conversation_id,)).fetchone()
            if row is None:
                raise HistoryUnavailable(f"no saved conversation {conversation_id} in {self.path}")
            nodes = self._db.execute(
                "SELECT id, parent, role, content, token_ids, tokenizer, state, error, stats, seed, created"
                " FROM nodes WHERE conversation_id = ? ORDER BY created, rowid", (conversation_id,)).fetchall()
        uid, title, system, sampling, model, head, created, updated = row
        s = json.loads(sampling)
        conv = Conversation(system=system, model=json.loads(model), title=title, uid=uid, created=created,
                            sampling=SamplingParams(temperature=s["temperature"], top_k=s["top_k"],
                                                    max_tokens=s["max_tokens"], seed=s["seed"]))
        conv.id = conversation_id
        for nid, parent, role, content, ids, tok, state, error, stats, seed, ncreated in nodes:
            node = Node(nid, parent, role, _content_value(content), token_ids=_ids_tuple(ids), tokenizer=tok,
                        state=state, error=error, stats=None if stats is None else json.loads(stats),
                        seed=seed, created=ncreated)
            conv.nodes[nid] = node
            conv.children.setdefault(nid, [])
        for node in conv.nodes.values():
            parent = node.parent if node.parent in conv.nodes else None
            node.parent = parent
            conv.children.setdefault(parent, []).append(node.id)
        conv.head = head if head in conv.nodes else (conv.latest_leaf(conv.children[None][-1])
                                                     if conv.children[None] else None)
        conv.updated = updated
        conv._remember_shown()
        return conv

    def all_ids(self) -> Iterator[int]:
        for summary in self._summaries():
            yield summary.id


_INSERT_NODE = ("INSERT OR REPLACE INTO nodes (conversation_id, id, parent, role, content, token_ids, tokenizer,"
                " state, error, stats, seed, created) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)")


class _Saver:
    """A Conversation observer that writes each change to the store. A failed write stops
    saving (store.error says why, for the front-end to show); the chat itself goes on."""

    def __init__(self, store: HistoryStore) -> None:
        self.store = store

    def _guard(self, conv: Conversation, writes: list[tuple[str, tuple]]) -> None:
        if self.store.error is not None:
            return
        try:
            if conv.id is None:
                if not conv.nodes:
                    return
                self.store.save(conv)
                return
            self.store._write(writes)
        except (sqlite3.Error, OSError) as e:
            self.store.error = f"stopped saving to {self.store.path}: {_reason(e)}"

    def node_added(self, conv: Conversation, node: Node) -> None:
        self._guard(conv, [(_INSERT_NODE, self.store._node_row(conv, node))])

    def node_changed(self, conv: Conversation, node: Node) -> None:
        self._guard(conv, [(_INSERT_NODE, self.store._node_row(conv, node))])

    def nodes_removed(self, conv: Conversation, node_ids: list[int]) -> None:
        if conv.id is None:
            return
        self._guard(conv, [("DELETE FROM nodes WHERE conversation_id = ? AND id = ?", (conv.id, nid))
                           for nid in node_ids])

    def conversation_changed(self, conv: Conversation) -> None:
        if conv.id is None and not conv.nodes:
            return
        self._guard(conv, [(
            "UPDATE conversations SET title = ?, system = ?, sampling = ?, model = ?, head = ?, created = ?,"
            " updated = ? WHERE id = ?", (*self.store._conversation_row(conv), conv.id))])


def _reason(e: BaseException) -> str:
    text = str(e) or type(e).__name__
    if "not a database" in text or "malformed" in text:
        return f"the file is damaged or not a nanochat-tui history ({text})"
    if "locked" in text or "busy" in text:
        return f"another program holds it locked ({text})"
    if "readonly" in text or "read-only" in text:
        return f"it is read-only ({text})"
    return text


# ---- export ----

def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, tz=timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


def export_json(conv: Conversation) -> dict[str, Any]:
    """The documented JSON shape (docs/conversation-format.md; schema in
    docs/conversation.schema.json): every message of every branch, and the branch on screen."""
    s = conv.sampling
    return {
        "format": EXPORT_FORMAT,
        "version": EXPORT_VERSION,
        "id": conv.id,
        "uid": conv.uid,
        "title": conv.title,
        "created": _iso(conv.created),
        "updated": _iso(conv.updated),
        "system": conv.system,
        "sampling": {"temperature": s.temperature, "top_k": s.top_k, "max_tokens": s.max_tokens, "seed": s.seed},
        "model": conv.model,
        "head": conv.head,
        "path": [node.id for node in conv.path()],
        "messages": [
            {
                "id": node.id,
                "parent": node.parent,
                "role": node.role,
                "content": node.content if isinstance(node.content, str) else [dict(p) for p in node.content],
                "state": node.state,
                "error": node.error,
                "stats": node.stats,
                "seed": node.seed,
                "created": _iso(node.created),
                "token_ids": None if node.token_ids is None else list(node.token_ids),
                "tokenizer": node.tokenizer,
            }
            for node in sorted(conv.nodes.values(), key=lambda n: n.created)
        ],
    }


def export_markdown(conv: Conversation) -> str:
    """The branch on screen as Markdown (what a person would paste somewhere)."""
    lines = [f"# {conv.title or 'Conversation'}", ""]
    meta = [f"saved {_iso(conv.updated)}"]
    if conv.model:
        meta.append(f"model {model_label(conv.model)}")
    lines += [f"_{' · '.join(meta)}_", ""]
    if conv.system:
        lines += ["**System:**", "", conv.system, ""]
    for node in conv.path():
        if node.role == "user":
            lines += ["## You", "", node.text, ""]
            continue
        lines += ["## Assistant", ""]
        parts = node.content if not isinstance(node.content, str) else ({"type": "text", "text": node.content},)
        for part in parts:
            if part["type"] == "text":
                lines.append(part["text"])
            elif part["type"] == "python":
                lines += ["", f"`calculator: {part['text']}`"]
            else:
                lines += [f"`= {part['text']}`", ""]
        note = {"stopped": "(stopped)", "length": "(max tokens reached)", "partial": "(interrupted)",
                "error": f"(failed: {node.error})", "lost": "(connection lost)"}.get(node.state)
        if note:
            lines += ["", f"_{note}_"]
        if not node.text and not note and isinstance(node.content, str):
            lines.append("_(empty reply)_")
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"


class InvalidExport(NanochatError):
    """A JSON file that is not a conversation export this version can read; one line says why."""


def _iso_time(value: Any, where: str) -> float:
    if value is None:
        return time.time()
    try:
        return datetime.fromisoformat(str(value).replace("Z", "+00:00")).timestamp()
    except ValueError:
        raise InvalidExport(f"{where}: {value!r} is not an ISO 8601 time") from None


WEB_FORMAT = "nanochat-conversation"  # the chat page's export (docs/web-conversations.md)
_WEB_FINISH = {"stop": "done", "length": "length", "cancelled": "stopped", "error": "error",
               "disconnected": "lost"}


def _from_web_export(data: dict) -> dict:
    """The chat page's export (string ids, `finish`, `settings`, `current`) in our shape, so a
    conversation moves from the browser to the terminal with `history import`."""
    messages = data.get("messages")
    if not isinstance(messages, list):
        raise InvalidExport("\"messages\" must be a list")
    ids: dict[Any, int] = {}
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or not isinstance(m.get("id"), (str, int)) or m["id"] in ids:
            raise InvalidExport(f"messages[{i}].id must be a unique string")
        ids[m["id"]] = i + 1
    out = []
    for i, m in enumerate(messages):
        parent = m.get("parent")
        if parent is not None and parent not in ids:
            raise InvalidExport(f"message {m['id']!r} has parent {parent!r}, which is not in the file")
        state = "done"
        if m.get("role") == "assistant":
            state = _WEB_FINISH.get(m.get("finish") or "stop", "done")
            if state == "lost" and m.get("context") is False:
                state = "error"  # the user chose to leave it out of the context
        out.append({"id": ids[m["id"]], "parent": None if parent is None else ids[parent],
                    "role": m.get("role"), "content": m.get("content"), "state": state,
                    "error": "connection lost" if state in ("error", "lost") else None,
                    "stats": m.get("stats"), "created": m.get("created")})
    settings = data.get("settings") if isinstance(data.get("settings"), dict) else {}
    sampling = {k: settings[k] for k in ("temperature", "top_k", "max_tokens") if k in settings}
    return {"format": EXPORT_FORMAT, "version": 1, "title": data.get("title"),
            "created": data.get("created"), "updated": data.get("updated"),
            "system": settings.get("system"), "sampling": {**sampling, "seed": None},
            "model": data.get("model") if isinstance(data.get("model"), dict) else {},
            "head": ids.get(data.get("current")), "messages": out}


def import_json(data: Any) -> Conversation:
    """A Conversation from `export_json`'s shape, or the chat page's (checked field by field:
    it is outside input). It gets a fresh uid, so importing a file twice gives two copies."""
    if isinstance(data, dict) and data.get("format") == WEB_FORMAT:
        if data.get("version") != 1:
            raise InvalidExport(f"chat page export version {data.get('version')!r} is not one this nanochat-tui reads (1)")
        data = _from_web_export(data)
    if not isinstance(data, dict) or data.get("format") != EXPORT_FORMAT:
        raise InvalidExport(f"not a nanochat-tui conversation export (no \"format\": \"{EXPORT_FORMAT}\" "
                            f"or \"{WEB_FORMAT}\")")
    if not isinstance(data.get("version"), int) or data["version"] > EXPORT_VERSION:
        raise InvalidExport(f"export version {data.get('version')!r} is newer than this nanochat-tui reads ({EXPORT_VERSION})")
    messages = data.get("messages")
    if not isinstance(messages, list):
        raise InvalidExport("\"messages\" must be a list")
    s = data.get("sampling") or {}
    try:
        sampling = SamplingParams(temperature=float(s.get("temperature", 0.6)), top_k=s.get("top_k", 50),
                                  max_tokens=int(s.get("max_tokens", 256)), seed=s.get("seed", 42))
    except (TypeError, ValueError):
        raise InvalidExport("\"sampling\" has values of the wrong type") from None
    system = data.get("system")
    title = data.get("title")
    model = data.get("model") or {}
    if not isinstance(system, (str, type(None))) or not isinstance(title, (str, type(None))) \
            or not isinstance(model, dict):
        raise InvalidExport("\"system\" and \"title\" must be strings or null, \"model\" an object")
    conv = Conversation(system=system, sampling=sampling, model=model, title=title,
                        created=_iso_time(data.get("created"), "created"))
    from .conversation import REPLY_STATES

    for i, m in enumerate(messages):
        where = f"messages[{i}]"
        if not isinstance(m, dict):
            raise InvalidExport(f"{where} must be an object")
        node_id, parent, role = m.get("id"), m.get("parent"), m.get("role")
        if not isinstance(node_id, int) or isinstance(node_id, bool) or node_id in conv.nodes:
            raise InvalidExport(f"{where}.id must be a unique integer")
        if parent is not None and not isinstance(parent, int):
            raise InvalidExport(f"{where}.parent must be an integer or null")
        if role not in ("user", "assistant"):
            raise InvalidExport(f"{where}.role must be \"user\" or \"assistant\"")
        content = m.get("content")
        if isinstance(content, list):
            if role != "assistant" or not all(
                    isinstance(p, dict) and p.get("type") in ("text", "python", "python_output")
                    and isinstance(p.get("text"), str) for p in content):
                raise InvalidExport(f"{where}.content parts must be {{type: text|python|python_output, text}} (replies only)")
            content = tuple({"type": p["type"], "text": p["text"]} for p in content)
        elif not isinstance(content, str):
            raise InvalidExport(f"{where}.content must be a string or a list of parts")
        state = m.get("state", "done")
        if state not in REPLY_STATES:
            raise InvalidExport(f"{where}.state must be one of {', '.join(REPLY_STATES)}")
        ids = m.get("token_ids")
        if ids is not None and (not isinstance(ids, list) or not all(
                isinstance(t, int) and not isinstance(t, bool) and 0 <= t < 2**32 for t in ids)):
            raise InvalidExport(f"{where}.token_ids must be a list of token ids or null")
        conv.nodes[node_id] = Node(
            node_id, parent, role, content, token_ids=None if ids is None else tuple(ids),
            tokenizer=m.get("tokenizer") if isinstance(m.get("tokenizer"), str) else None,
            state=state, error=m.get("error") if isinstance(m.get("error"), str) else None,
            stats=m.get("stats") if isinstance(m.get("stats"), dict) else None,
            seed=m.get("seed") if isinstance(m.get("seed"), int) else None,
            created=_iso_time(m.get("created"), f"{where}.created"))
    for node in conv.nodes.values():
        if node.parent is not None and node.parent not in conv.nodes:
            raise InvalidExport(f"message {node.id} has parent {node.parent}, which is not in the file")
        conv.children.setdefault(node.id, [])
        conv.children.setdefault(node.parent, []).append(node.id)
    # a parent chain that loops would never reach the root
    for node in conv.nodes.values():
        seen, cur = set(), node.id
        while cur is not None:
            if cur in seen:
                raise InvalidExport(f"message {node.id}'s parents form a loop")
            seen.add(cur)
            cur = conv.nodes[cur].parent
    head = data.get("head")
    conv.head = head if head in conv.nodes else (conv.latest_leaf(conv.children[None][-1])
                                                 if conv.children[None] else None)
    conv.updated = _iso_time(data.get("updated"), "updated")
    return conv
