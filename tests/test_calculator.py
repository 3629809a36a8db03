"""Our calculator gives nanochat's results (recorded from nanochat's own use_calculator), without
eval: bounded in time and memory, and the same in any thread. docs/calculator.md has the rules."""

from __future__ import annotations

import ast
import json
import os
import re
import subprocess
import sys
import threading
import types
import warnings
from pathlib import Path

import pytest

from nanochat_core import calculator
from nanochat_core.calculator import calculate

REFERENCE = json.loads(
    (Path(__file__).parent / "fixtures" / "calculator_reference.json").read_text())
CASES = REFERENCE["cases"]


def expression(case: dict) -> str:
    if "expr" in case:
        return case["expr"]
    prefix, unit, count, suffix = case["pattern"]
    return prefix + unit * count + suffix


def label(case: dict) -> str:
    text = expression(case)
    return f"{case['group']}:{text[:60]!r}" + (f"…[{len(text)}]" if len(text) > 60 else "")


SAME = [c for c in CASES if "differs" not in c]
DIFFERENT = [c for c in CASES if "differs" in c]


def test_reference_is_nanochats_and_broad():
    about = REFERENCE["about"]
    assert about["nanochat_commit"].startswith("92d63d4")
    assert len(CASES) >= 900 and len({expression(c) for c in CASES}) == len(CASES)
    values = [c["nanochat"] for c in SAME]
    assert sum(v is not None for v in values) > 400 and sum(v is None for v in values) > 200


GROUPS = sorted({c["group"] for c in SAME})


@pytest.mark.parametrize("group", GROUPS)
def test_same_result_as_nanochat(group):
    # One test per group (the corpus has ~900 cases); a failure lists every mismatch.
    wrong = [(label(c), calculate(expression(c)), c["nanochat"])
             for c in SAME if c["group"] == group]
    wrong = [w for w in wrong if w[1] != w[2]]
    assert not wrong, "\n".join(f"{e}: ours {o!r}, nanochat {n!r}" for e, o, n in wrong)


def test_deliberate_differences_give_no_result():
    # nanochat printed something here (a memory address, a value past one of our limits) or its
    # engine's str() would raise; we give no result, and docs/calculator.md says why.
    assert len(DIFFERENT) >= 25
    for case in DIFFERENT:
        assert case["nanochat"] is not None or "nanochat_engine_raises" in case, label(case)
        assert calculate(expression(case)) is None, label(case)


def test_no_eval_exec_or_signals():
    tree = ast.parse(Path(calculator.__file__).read_text())
    names = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)}
    names |= {n.attr for n in ast.walk(tree) if isinstance(n, ast.Attribute)}
    imported = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    assert not {"eval", "exec", "compile", "alarm", "setattr"} & names
    assert "signal" not in imported


def test_works_off_the_main_thread():
    # nanochat's SIGALRM timeout cannot be set outside the main thread, so it never answered
    # there; ours gives the same answers in any thread.
    sample = [c for c in SAME if len(expression(c)) < 200][::7]
    results: list = [None] * 3

    def worker(i: int) -> None:
        results[i] = {expression(c): calculate(expression(c)) for c in sample}

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(3)]  # at once
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [{expression(c): c["nanochat"] for c in sample}] * 3


HUNDRED = "'" + "abcdefghij" * 10 + "'"
THOUSAND = "'" + "abcdefghij" * 100 + "'"
# Expressions nanochat accepts that would run long or build something huge, and the limit that
# stops each of ours first (the reason _Refused carries).
LIMITS = {
    # 10**6 generator iterations; 10**9 (nanochat stops at its 3 s timeout); a list extended by
    # a generator over itself (nanochat: until the timeout).
    f"''.join('x' for a in {HUNDRED} for b in {HUNDRED} for c in {HUNDRED}).count('x')":
        "step budget",
    f"''.join('x' for a in {THOUSAND} for b in {THOUSAND} for c in {THOUSAND}).count('x')":
        "step budget",
    "(l.extend(x for x in l) for l in ('a b'.split() for _ in 'x')).send(None).count(1)":
        "step budget|allocation budget",
    # Sizes, refused before anything is built: exponential joins (3**25 characters), a 10**11
    # width, tabs expanded 2,000,000 wide, 3,000,000 bytes, a list holding itself.
    "'ab'.join(" * 25 + "'ab'" + ")" * 25 + ".count('a')": "join over the length cap",
    "'a'.zfill(100000000000).count('0')": "width over the length cap",
    "(9).to_bytes(1).decode().expandtabs(2000000).count(' ')": "tabs expand over",
    "(1).to_bytes(3000000).count(b'')": "length over the cap",
    "(l.append(l) or l for l in ('a'.split() for _ in 'x')).send(None).count(1)":
        "list inside a list",
    # Many values just under the length cap: the allocation budget ends it after ~20 of them.
    "''.join(x.zfill(999999) for x in 'abcdefghijklmnopqrstuvwxyz').count('0')":
        "allocation budget",
    # Depth past Python's own recursion limits.
    "-" * 2600 + "1": "too deeply nested",
    "'a'" + ".upper()" * 1300 + ".count('A')": "too deeply nested",
}


# Peak memory: VmHWM is this process's own high-water mark (ru_maxrss would include the
# parent's size at fork, and pytest's process may hold torch).
LIMIT_PROBE = """
import json, sys
from nanochat_core import calculator
out = []
for expr in json.loads(sys.stdin.read()):
    try:
        calculator._Machine().evaluate(expr)
        reason = None
    except calculator._Refused as e:
        reason = str(e)
    out.append([reason, calculator.accepted(expr), calculator.calculate(expr)])
status = open("/proc/self/status").read()
peak = int(status.split("VmHWM:")[1].split()[0])
print(json.dumps({"cases": out, "peak_kib": peak}))
"""


def test_limits_stop_evaluation_before_it_grows():
    # In a fresh process, so that its peak memory is these evaluations' alone.
    exprs = list(LIMITS)
    run = subprocess.run([sys.executable, "-c", LIMIT_PROBE], input=json.dumps(exprs),
                         check=False, capture_output=True, text=True, timeout=120,
                         env={**os.environ, "PYTHONPATH": str(Path(__file__).parent.parent)})
    assert run.returncode == 0, run.stderr
    report = json.loads(run.stdout)
    for expr, (reason, accepted, result) in zip(exprs, report["cases"]):
        assert reason is not None and re.search(LIMITS[expr], reason), (expr[:60], reason)
        assert accepted and result is None, expr[:60]
    # nanochat would build 3**25 characters, or 10**11; the whole run stays small.
    assert report["peak_kib"] < 100 * 1024, report["peak_kib"]


def test_largest_inputs_still_work():
    # At the input cap; a flat chain far longer than MAX_DEPTH; 10,000 generator iterations.
    assert calculate("'" + "a" * 99_987 + "'.count('a')") == "99987"  # 100,000 characters
    assert calculate("''.count('') and " * 5000 + "'x'") == "x"
    assert calculate(f"''.join('x' for a in {HUNDRED} for b in {HUNDRED}).count('x')") == "10000"
    assert calculate("'" + "a" * 99_988 + "'.count('a')") is None  # 100,001 characters


def test_budget_counts_steps_not_seconds():
    # The same evaluation always costs the same number of steps: no clock, no signal, so the
    # answer cannot depend on the machine's speed or on which thread asks.
    expr = f"''.join('x' for a in {HUNDRED} for b in {HUNDRED}).count('x')"
    costs = []
    for _ in range(2):
        machine = calculator._Machine()
        assert machine.evaluate(expr) == 10_000
        costs.append(calculator.MAX_STEPS - machine.steps)
    assert costs[0] == costs[1] and 10_000 < costs[0] < calculator.MAX_STEPS


def test_limit_constants_are_documented():
    doc = (Path(__file__).resolve().parent.parent / "docs" / "calculator.md").read_text()
    for name in ["MAX_EXPRESSION_CHARS", "MAX_DEPTH", "MAX_LENGTH", "MAX_RESULT_CHARS",
                 "MAX_STEPS", "MAX_ALLOCATED", "SLOW_CODEC_CHARS"]:
        value = f"{getattr(calculator, name):,}"
        assert re.search(rf"`{name}`.*{re.escape(value)}", doc), name


def test_whitelist_covers_each_public_method():
    # Every public attribute of the types an expression can hold is either evaluated or listed
    # in docs/calculator.md as deliberately not exposed; a new Python adding one shows up here.
    doc = (Path(__file__).resolve().parent.parent / "docs" / "calculator.md").read_text()
    for kind, table in calculator._ATTRIBUTES.items():
        public = {a for a in dir(kind) if not a.startswith("_")}
        for name in public - set(table):
            assert f"`{name}`" in doc, (kind.__name__, name)
    assert set(calculator._ATTRIBUTES) == {str, bytes, int, bool, float, complex, list, tuple,
                                           types.GeneratorType}


def test_parser_warnings_stay_quiet():
    # `1if 1 else 2` makes Python 3.11's parser warn; nanochat's eval shows nothing, nor do we.
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("default")
        assert calculate("1if ''.count('') else 2") == "1"
    assert caught == []
