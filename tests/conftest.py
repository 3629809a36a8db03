"""Shared fixtures: the golden nanochat checkpoints (tests/fixtures/nanochat-generations)."""

from __future__ import annotations

import atexit
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import pytest

# Saved conversations and settings of every test run go to a throw-away folder, never to the
# user's own (subprocesses inherit it through cli_env()). Tests that want a home of their own
# make it inside the same folder (NANOCHAT_TUI_TEST_ROOT), which goes when the run ends.
TEST_ROOT = tempfile.mkdtemp(prefix="nanochat-tui-tests-")
atexit.register(shutil.rmtree, TEST_ROOT, ignore_errors=True)
os.environ["NANOCHAT_TUI_TEST_ROOT"] = TEST_ROOT
os.environ["NANOCHAT_TUI_HOME"] = os.path.join(TEST_ROOT, "home")

FIXTURES = Path(__file__).parent / "fixtures" / "nanochat-generations"
GENERATIONS = sorted(p.name for p in FIXTURES.iterdir() if p.is_dir())
REPO = Path(__file__).resolve().parent.parent


def wait_for(condition, what: str = "condition", timeout: float = 30.0, every: float = 0.02):
    """Poll `condition()` until it returns something truthy and return that; fail naming
    `what` at the deadline. The one way tests wait (never a sleep followed by an assertion);
    the deadline only bounds a failure, it is no speed claim."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(every)


def fixture_dir(gen: str) -> Path:
    return FIXTURES / gen


def fixture_softcap(gen: str) -> float | None:
    """The one fact files cannot tell (spec §9.4): the softcap-20 week needs the override."""
    return 20.0 if gen == "gen3-softcap20" else None


def expected(gen: str) -> dict:
    return json.loads((FIXTURES / gen / "expected.json").read_text())


@pytest.fixture(scope="session")
def load_fixture():
    """Load a fixture generation once per session (cached)."""
    from nanochat_core import load_chat_model

    cache = {}

    def load(gen: str):
        if gen not in cache:
            cache[gen] = load_chat_model(base_dir=FIXTURES / gen / "base_dir",
                                         softcap=fixture_softcap(gen), device="cpu")
        return cache[gen]

    return load


@pytest.fixture
def copy_fixture(tmp_path):
    """Copy a fixture's base_dir somewhere writable and return the copy."""

    def copy(gen: str = "gen5-smear-backout") -> Path:
        dest = tmp_path / f"{gen}-base"
        shutil.copytree(FIXTURES / gen / "base_dir", dest)
        return dest

    return copy


def cli_env(**extra: str) -> dict:
    """Environment for running the installed CLI: no real ~/.cache/nanochat leaks in."""
    env = dict(os.environ)
    env.pop("NANOCHAT_BASE_DIR", None)
    env.pop("NANOCHAT_TUI_API_KEY", None)  # a developer's own key must not change what --web does
    env.update(extra)
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


def cli_command() -> list[str]:
    """How to start the CLI: the console script next to this interpreter, else `-m`."""
    script = Path(sys.executable).parent / "nanochat-tui"
    return [str(script)] if script.exists() else [sys.executable, "-m", "nanochat_tui"]
