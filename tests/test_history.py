"""Saved conversations in a real SQLite file: round trips, turn-by-turn saving, two writers at
once, databases that cannot be used (and are never touched), kill -9 mid-reply, the CLI."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import FIXTURES, cli_command, cli_env, wait_for
from nanochat_core.chat import SamplingParams
from nanochat_core.conversation import Conversation
from nanochat_core.events import Done, GenerationStats
from nanochat_core.history import (
    SCHEMA_VERSION,
    HistoryStore,
    HistoryUnavailable,
    InvalidExport,
    export_json,
    export_markdown,
    import_json,
)

GEN5 = FIXTURES / "gen5-smear-backout" / "base_dir"
STATS = GenerationStats(prompt_tokens=3, generated_tokens=2, ttft_s=0.01, total_s=0.03)


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def exchange(conv: Conversation, text: str, answer: str, ids=(7, 8)) -> None:
    conv.add_user(text)
    node = conv.start_reply(seed=42)
    conv.update_reply(node, [{"type": "text", "text": answer[:1]}])
    conv.finish_reply(node, Done("stop", STATS, tuple(ids), ({"type": "text", "text": answer},), 3))


def test_round_trip_keeps_branches_ids_and_the_branch_on_screen(tmp_path):
    store = HistoryStore.open(tmp_path / "h.sqlite3")
    conv = Conversation(system="Be brief.", sampling=SamplingParams(temperature=0.2, top_k=7, max_tokens=99, seed=5),
                        model={"name": "d4", "generation": "gen5-smear-backout"})
    store.attach(conv)
    exchange(conv, "first", "one")
    conv.regenerate_from()
    node = conv.start_reply()
    conv.finish_reply(node, Done("cancelled", STATS, (9,), ({"type": "text", "text": "uno"},), None))
    conv.add_user("second ✓ \x1b[2J")
    loaded = HistoryStore.open(tmp_path / "h.sqlite3").load(conv.id)
    assert [(n.role, n.text, n.state) for n in loaded.path()] == [
        ("user", "first", "done"), ("assistant", "uno", "stopped"), ("user", "second ✓ \x1b[2J", "done")]
    assert len(loaded.siblings(loaded.path()[1].id)) == 2  # the first answer is a branch
    assert loaded.system == "Be brief." and loaded.sampling.top_k == 7 and loaded.title == "first"
    assert export_json(loaded) == export_json(conv)
    assert import_json(json.loads(json.dumps(export_json(conv)))).path()[1].token_ids == conv.path()[1].token_ids


def test_each_change_is_in_the_file_as_it_happens(tmp_path):
    """Another connection sees the partial reply while it streams (turn-by-turn saving)."""
    path = tmp_path / "h.sqlite3"
    store = HistoryStore.open(path)
    conv = Conversation()
    store.attach(conv)
    assert store.list() == []  # an empty chat leaves no row
    conv.add_user("hello")
    node = conv.start_reply()
    conv.update_reply(node, [{"type": "text", "text": "Hel"}])
    reader = HistoryStore.open(path)
    partial = reader.load(conv.id).last
    assert partial.state == "partial" and partial.text == "Hel"
    conv.finish_reply(node, Done("length", STATS, (1, 2), ({"type": "text", "text": "Hello"},), None))
    assert reader.load(conv.id).last.state == "length"


WRITER = """
import sys
from nanochat_core.history import HistoryStore
from nanochat_core.conversation import Conversation
from nanochat_core.events import Done, GenerationStats
store = HistoryStore.open(sys.argv[1])
shared = store.load(int(sys.argv[3]))
own = Conversation()
for conv in (shared, own):
    store.attach(conv)
stats = GenerationStats(1, 1, 0.0, 0.0)
for i in range(40):
    for conv in (shared, own):
        conv.add_user(f"{sys.argv[2]} {i}")
        node = conv.start_reply()
        conv.update_reply(node, [{"type": "text", "text": "par"}])
        conv.finish_reply(node, Done("stop", stats, (1,), ({"type": "text", "text": "done"},), 3))
assert store.error is None, store.error
print(own.id)
"""


def test_two_instances_write_at_once_without_losing_a_turn(tmp_path):
    path = tmp_path / "h.sqlite3"
    store = HistoryStore.open(path)
    shared = Conversation()
    store.attach(shared)
    exchange(shared, "start", "ok")
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, str(path), name, str(shared.id)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=cli_env())
             for name in ("A", "B")]
    outs = [p.communicate(timeout=120) for p in procs]
    assert all(p.returncode == 0 for p in procs), outs
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    fresh = HistoryStore.open(path)
    for (out, _err), name in zip(outs, "AB"):
        own = fresh.load(int(out))
        assert [n.text for n in own.path() if n.role == "user"] == [f"{name} {i}" for i in range(40)]
    everything = fresh.load(shared.id)
    users = sorted(n.text for n in everything.nodes.values() if n.role == "user")
    assert len(users) == 81  # "start" and 40 from each writer: both added as branches, none lost
    assert all(n.state == "done" for n in everything.nodes.values() if n.role == "assistant")


def test_a_corrupt_or_newer_database_is_refused_in_one_line_and_left_untouched(tmp_path):
    corrupt = tmp_path / "corrupt.sqlite3"
    corrupt.write_bytes(b"SQLite format 3\x00" + os.urandom(4096))
    before = sha(corrupt)
    with pytest.raises(HistoryUnavailable) as info:
        HistoryStore.open(corrupt)
    assert "damaged or not a nanochat-tui history" in str(info.value) and "\n" not in str(info.value)
    assert sha(corrupt) == before

    newer = tmp_path / "newer.sqlite3"
    db = sqlite3.connect(newer)
    db.execute("CREATE TABLE future (x)")
    db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    db.commit()
    db.close()
    before = sha(newer)
    with pytest.raises(HistoryUnavailable) as info:
        HistoryStore.open(newer)
    assert "written by a newer nanochat-tui" in str(info.value)
    assert sha(newer) == before


def test_a_locked_database_is_refused_after_the_busy_timeout(tmp_path):
    path = tmp_path / "locked.sqlite3"
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("PRAGMA journal_mode = DELETE")
    holder.execute("CREATE TABLE other_program (x)")
    holder.execute("BEGIN EXCLUSIVE")
    try:
        with pytest.raises(HistoryUnavailable) as info:
            HistoryStore.open(path, busy_timeout_ms=200)
        assert "another program holds it locked" in str(info.value)
    finally:
        holder.execute("ROLLBACK")


def read_only_command(folder: Path, command: list[str]) -> list[str]:
    """`command`, run where `folder` is read-only. As root (CI) file modes do not stop writes,
    so the folder is bind-mounted read-only onto itself in a private mount namespace."""
    if os.geteuid() != 0:
        return command
    script = 'mount --bind -o ro "$0" "$0" && exec "$@"'
    return ["unshare", "-m", "sh", "-c", script, str(folder), *command]


def test_a_bad_database_never_stops_a_chat_and_is_never_written(tmp_path):
    """-p with a corrupt database: one warning line, the reply, exit 0, the file untouched; a
    read-only one likewise."""
    corrupt = tmp_path / "corrupt.sqlite3"
    corrupt.write_bytes(b"not a database at all" * 100)
    before = sha(corrupt)
    out = subprocess.run([*cli_command(), "--model-dir", str(GEN5), "-m", "4", "-p", "hi",
                          "--history-db", str(corrupt)], capture_output=True, text=True, env=cli_env(), timeout=120)
    assert out.returncode == 0, out.stderr
    warnings = [line for line in out.stderr.splitlines() if line.startswith("history:")]
    assert len(warnings) == 1 and "will not be saved" in warnings[0]
    assert sha(corrupt) == before and out.stdout.strip()

    readonly = tmp_path / "ro" / "h.sqlite3"
    readonly.parent.mkdir()
    HistoryStore.open(readonly).close()
    before = sha(readonly)
    os.chmod(readonly, 0o444)
    os.chmod(readonly.parent, 0o555)
    try:
        out = subprocess.run(read_only_command(readonly.parent, [
            *cli_command(), "--model-dir", str(GEN5), "-m", "4", "-p", "hi", "--history-db", str(readonly)]),
            capture_output=True, text=True, env=cli_env(), timeout=120)
    finally:
        os.chmod(readonly.parent, 0o755)
    assert out.returncode == 0, out.stderr
    assert any(line.startswith("history:") and "read-only" in line for line in out.stderr.splitlines()), out.stderr
    assert sha(readonly) == before


def run_cli(*args: str, stdin: str | None = None, home: Path) -> subprocess.CompletedProcess:
    return subprocess.run([*cli_command(), *args], input=stdin, capture_output=True, text=True,
                          env=cli_env(NANOCHAT_TUI_HOME=str(home)), timeout=120)


def test_prompt_is_saved_and_continue_adds_to_it_and_history_commands(tmp_path):
    home = tmp_path / "home"
    first = run_cli("--model-dir", str(GEN5), "-t", "0", "-m", "6", "-p", "first question", home=home)
    assert first.returncode == 0, first.stderr
    second = run_cli("--model-dir", str(GEN5), "-t", "0", "-m", "6", "-p", "and a follow-up", "-c", home=home)
    assert second.returncode == 0, second.stderr
    listed = json.loads(run_cli("history", "list", "--json", home=home).stdout)
    assert len(listed) == 1 and listed[0]["messages"] == 4 and listed[0]["title"] == "first question"
    exported = json.loads(run_cli("history", "export", str(listed[0]["id"]), home=home).stdout)
    assert [m["role"] for m in exported["messages"]] == ["user", "assistant", "user", "assistant"]
    assert exported["format"] == "nanochat-tui.conversation" and exported["path"] == [m["id"] for m in exported["messages"]]
    shown = run_cli("history", "show", "1", home=home)
    assert shown.stdout.startswith("# first question") and "## You\n\nand a follow-up" in shown.stdout
    found = run_cli("history", "search", "FOLLOW", "--json", home=home)
    assert [c["id"] for c in json.loads(found.stdout)] == [listed[0]["id"]]
    assert json.loads(run_cli("history", "search", "nowhere", "--json", home=home).stdout) == []
    # round trip through a file: import gives a second, equal conversation
    dump = tmp_path / "all.json"
    assert run_cli("history", "export", "--all", "-o", str(dump), home=home).returncode == 0
    assert run_cli("history", "import", str(dump), home=home).returncode == 0
    both = json.loads(run_cli("history", "list", "--json", home=home).stdout)
    assert len(both) == 2 and {c["messages"] for c in both} == {4}
    gone = run_cli("history", "delete", str(both[0]["id"]), home=home)
    assert gone.returncode == 2 and "add --yes" in gone.stderr  # never without asking
    assert run_cli("history", "delete", str(both[0]["id"]), "--yes", home=home).returncode == 0
    missing = run_cli("history", "show", "999", home=home)
    assert missing.returncode == 2 and missing.stderr.count("\n") == 1 and "no saved conversation" in missing.stderr
    incognito = run_cli("--model-dir", str(GEN5), "-m", "3", "-p", "secret", "--no-history", home=home)
    assert incognito.returncode == 0
    assert "secret" not in run_cli("history", "export", "--all", home=home).stdout


def test_import_refuses_malformed_files_in_one_line():
    good = export_json(Conversation())
    for bad, words in [({}, "not a nanochat-tui conversation export"),
                       ({**good, "version": 99}, "newer than"),
                       ({**good, "messages": [{"id": 1, "parent": 2, "role": "user", "content": "x"}]}, "not in the file"),
                       ({**good, "messages": [{"id": 1, "parent": None, "role": "root", "content": "x"}]}, "role"),
                       ({**good, "messages": [{"id": 1, "parent": 1, "role": "user", "content": "x"}]}, "loop")]:
        with pytest.raises(InvalidExport) as info:
            import_json(bad)
        assert words in str(info.value)


def test_kill_9_mid_reply_then_continue_shows_every_turn_and_the_partial_one(tmp_path):
    from nanochat_core.synthetic import write_random_checkpoint

    base = tmp_path / "model"
    write_random_checkpoint(base, "d6:384:8192")  # random weights: long replies, rarely a stop
    home = tmp_path / "home"
    proc = subprocess.Popen([*cli_command(), "--plain", "--model-dir", str(base), "-m", "3000"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env=cli_env(NANOCHAT_TUI_HOME=str(home)), text=True)
    db = home / "history.sqlite3"

    def conversation():
        if not db.exists():
            return None
        try:
            store = HistoryStore.open(db)
            latest = store.latest_id()
            return store.load(latest) if latest is not None else None
        except HistoryUnavailable:
            return None

    try:
        proc.stdin.write("first line\n")
        proc.stdin.flush()
        # the first reply is long: stop it with Ctrl+C once it has been saved while streaming
        wait_for(lambda: (c := conversation()) and c.last.role == "assistant" and c.last.text,
                 what="the first reply saved while streaming")
        proc.send_signal(signal.SIGINT)
        wait_for(lambda: (c := conversation()) and c.last.state == "stopped", what="the stopped reply saved")
        proc.stdin.write("second line\n")
        proc.stdin.flush()
        wait_for(lambda: (c := conversation()) and len(c.path()) == 4 and len(c.last.text) > 0,
                 what="the second reply saved while streaming")
        proc.kill()  # SIGKILL: no cleanup of any kind
    finally:
        proc.kill()
        proc.communicate(timeout=30)
    resumed = subprocess.run([*cli_command(), "--plain", "--model-dir", str(base), "-c", "-m", "2"],
                             input="", capture_output=True, text=True,
                             env=cli_env(NANOCHAT_TUI_HOME=str(home)), timeout=120)
    assert resumed.returncode == 0, resumed.stderr
    transcript = resumed.stderr
    assert "User: first line" in transcript and "User: second line" in transcript
    assert transcript.index("[stopped]") < transcript.index("User: second line") < transcript.index("[interrupted]")


def test_the_export_matches_its_documented_schema(tmp_path):
    import jsonschema

    from conftest import REPO

    schema = json.loads((REPO / "docs" / "conversation.schema.json").read_text())
    conv = Conversation(system="s")
    exchange(conv, "q", "a")
    conv.add_user("again")
    node = conv.start_reply()
    conv.fail_reply(node, "boom")
    jsonschema.validate(json.loads(json.dumps(export_json(conv))), schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({**export_json(conv), "messages": [{"id": 1}]}, schema)
    assert "## You\n\nq" in export_markdown(conv) and "_(failed: boom)_" in export_markdown(conv)


def test_a_conversation_exported_from_the_chat_page_imports_with_its_branches():
    """The page's export (docs/web-conversations.md) moves to the terminal with history import."""
    page = {
        "format": "nanochat-conversation", "version": 1, "id": "c-1", "title": "What is 2+3?",
        "title_edited": False, "created": "2026-12-02T10:15:03.120Z", "updated": "2026-12-02T10:16:40.002Z",
        "model": {"name": "d20", "description": "d20 · …"},
        "settings": {"temperature": 0.8, "top_k": 50, "max_tokens": 512, "system": "Be brief."},
        "current": "m-3",
        "messages": [
            {"id": "m-1", "parent": None, "role": "user", "content": "What is 2+3?", "created": "2026-12-02T10:15:03.121Z"},
            {"id": "m-2", "parent": "m-1", "role": "assistant", "finish": "stop", "created": "2026-12-02T10:15:03.130Z",
             "content": [{"type": "python", "text": "2+3"}, {"type": "python_output", "text": "5"},
                         {"type": "text", "text": "The answer is 5."}]},
            {"id": "m-3", "parent": "m-1", "role": "assistant", "content": "It is 5.", "finish": "disconnected",
             "context": False, "created": "2026-12-02T10:16:40.001Z"},
        ],
    }
    conv = import_json(page)
    assert conv.system == "Be brief." and conv.sampling.max_tokens == 512 and conv.title == "What is 2+3?"
    assert [n.text for n in conv.path()] == ["What is 2+3?", "It is 5."]
    assert conv.last.state == "error"  # disconnected and left out of the context on the page
    assert len(conv.siblings(conv.head)) == 2
    first = conv.nodes[conv.siblings(conv.head)[0]]
    assert first.content[0] == {"type": "python", "text": "2+3"} and first.state == "done"
    with pytest.raises(InvalidExport):
        import_json({**page, "messages": [{"id": "a", "parent": "zz", "role": "user", "content": "x"}]})
