"""`nanochat-tui --plain` holds exactly nanochat's chat_cli token history, turn by turn.

The reference is what nanochat's own scripts/chat_cli.py held for the same checkpoint, seed,
flags and typed lines (tests/fixtures/chat_cli: recorded once with nanochat's code at each
fixture's commit; see its README). Our line chat is run on the same typed lines with `-m 256`
(chat_cli's reply length) and saves each conversation to a history database; the token history
of every saved conversation (Conversation.token_history) must equal chat_cli's, including
replies that end in <|bos|>, empty replies, unclosed python blocks, stripped lines and `clear`.
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import FIXTURES, GENERATIONS, cli_command, cli_env, fixture_softcap
from nanochat_core.history import HistoryStore
from nanochat_core.tokenizer import Tokenizer

RECORDINGS = Path(__file__).parent / "fixtures" / "chat_cli"


def recording(gen: str) -> dict:
    return json.loads((RECORDINGS / f"{gen}.json").read_text())


def cases() -> list:
    return [pytest.param(gen, c["name"], id=f"{gen}-{c['name']}")
            for gen in GENERATIONS for c in recording(gen)["conversations"]]


def expected_histories(gen: str, conv: dict) -> list[list[int]]:
    """chat_cli's history at the end of each conversation (a `clear` starts the next one).
    Where chat_cli itself died mid-reply (nanochat's engine at the context limit), the history
    it would have kept: the turn's user tokens and the recorded reply, closed."""
    end = recording(gen)["special_ids"]["<|assistant_end|>"]
    target = conv[conv["our_engine_must_equal"]]
    out: list[list[int]] = []
    history: list[int] | None = None
    for turn in target["turns"]:
        if turn["action"] == "clear":
            if history is not None and len(history) > 1:
                out.append(history)
            history = None
        elif turn["action"] == "error":
            reply = turn["reply_ids"]
            history = turn["history"] + turn["user_ids"] + reply + ([] if reply[-1] == end else [end])
        else:
            history = turn["history"]
    if history is not None and len(history) > 1:
        out.append(history)
    return out


def plain_args(gen: str, conv: dict, db: Path) -> list[str]:
    args = ["--plain", "--model-dir", str(FIXTURES / gen / "base_dir"), "--device-type", "cpu",
            "-t", str(conv["temperature"]), "-k", str(conv["top_k"]), "-m", str(conv["max_new_tokens"]),
            "--seed", str(conv["seed"]), "--history-db", str(db)]
    if fixture_softcap(gen):
        args += ["--softcap", str(fixture_softcap(gen))]
    return args


def saved_histories(gen: str, db: Path) -> list[list[int]]:
    tokenizer = Tokenizer.from_file(FIXTURES / gen / "base_dir" / "tokenizer" / "tokenizer.pkl")
    store = HistoryStore.open(db)
    ids = sorted(summary.id for summary in store.list())
    return [store.load(i).token_history(tokenizer, tokenizer_id=tokenizer.fingerprint) for i in ids]


@pytest.mark.parametrize("gen, name", cases())
def test_plain_mode_holds_chat_cli_s_history(gen, name, tmp_path, monkeypatch, capsys):
    from nanochat_tui.cli import main

    conv = next(c for c in recording(gen)["conversations"] if c["name"] == name)
    db = tmp_path / "history.sqlite3"
    monkeypatch.setattr(sys, "stdin", io.StringIO("".join(line + "\n" for line in conv["lines"])))
    assert main(plain_args(gen, conv, db)) == 0, capsys.readouterr().err
    assert saved_histories(gen, db) == expected_histories(gen, conv)


def test_the_real_command_holds_the_same_history(tmp_path):
    """The same check once through the installed `nanochat-tui` process (stdin piped)."""
    gen = "gen5-smear-backout"
    conv = next(c for c in recording(gen)["conversations"] if c["name"] == "defaults")
    db = tmp_path / "history.sqlite3"
    out = subprocess.run([*cli_command(), *plain_args(gen, conv, db)], input="".join(l + "\n" for l in conv["lines"]),
                         capture_output=True, text=True, env=cli_env(), timeout=180)
    assert out.returncode == 0, out.stderr
    assert saved_histories(gen, db) == expected_histories(gen, conv)
