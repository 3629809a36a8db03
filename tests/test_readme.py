"""README.md opens with the two fresh-machine commands, and CI runs the test command verbatim."""

from __future__ import annotations

import re

from conftest import REPO


def _bash_blocks(text: str) -> list[str]:
    return [b.strip() for b in re.findall(r"```bash\n(.*?)```", text, flags=re.S)]


def test_readme_opens_with_the_demo_and_test_commands_and_ci_runs_the_latter():
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    run_demo, run_tests = _bash_blocks(readme)[:2]
    assert run_demo.endswith(".venv/bin/nanochat-tui") and "pip install -e ." in run_demo
    assert "torch==2.13.0" in run_demo and "torch==2.13.0" in run_tests
    assert run_tests.endswith("python -m pytest") and "'.[test]'" in run_tests
    ci = (REPO / ".ci" / "run").read_text(encoding="utf-8")
    commands = [line.strip() for line in ci.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    assert run_tests in commands, "CI must run README's test command exactly"
