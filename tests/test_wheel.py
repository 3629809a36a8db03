"""The built wheel works on its own: data files inside, a fresh venv answers a one-shot prompt."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from conftest import REPO

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(out), str(REPO)],
                   check=True, timeout=300)
    (whl,) = out.glob("nanochat_tui-*.whl")
    return whl


def test_wheel_ships_data_inside_packages(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    assert any(n.startswith("nanochat_core/_assets/demo/tokenizer/tokenizer.pkl") for n in names)
    assert any(n.startswith("nanochat_core/_assets/demo/chatsft_checkpoints/") and n.endswith(".pt") for n in names)
    assert any(n.startswith("nanochat_tui/_web/") for n in names)
    top_level = {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")}
    assert top_level == {"nanochat_core", "nanochat_tui"}  # no generic `web` / `assets` packages
    size_mb = wheel.stat().st_size / 2**20
    assert size_mb < 15, f"wheel is {size_mb:.1f} MB"


def test_fresh_venv_one_shot_on_demo_model(wheel, tmp_path):
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "-q"]
    subprocess.run(pip + ["torch==2.13.0"], check=True, timeout=600)
    subprocess.run(pip + [str(wheel)], check=True, timeout=600)
    empty = tmp_path / "no-checkpoints"
    empty.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["NANOCHAT_BASE_DIR"] = str(empty)
    out = subprocess.run([str(venv / "bin" / "nanochat-tui"), "--prompt", "What are you?", "-t", "0"],
                         capture_output=True, text=True, timeout=300, cwd=tmp_path, env=env)
    assert out.returncode == 0, out.stderr
    assert "using the bundled demo model" in out.stderr
    assert str(venv) in out.stderr  # the model came from inside the installed package
    assert out.stdout.strip()  # a real reply
