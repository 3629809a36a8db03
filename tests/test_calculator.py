"""The calculator accepts what nanochat's accepts, returns what it printed, and runs no eval."""

import threading

import pytest

from nanochat_core.calculator import calculate


@pytest.mark.parametrize("expr, result", [
    ("12*7", "84"),
    ("1,000/8", "125.0"),
    ("(2+3)*4 - 1", "19"),
    ("-3 + 5", "2"),
    ("7//2", "3"),
    ("0.1+0.2", str(0.1 + 0.2)),
    ("'strawberry'.count('r')", "3"),
    ('"banana".count("an")', "2"),
])
def test_accepted(expr, result):
    assert calculate(expr) == result


@pytest.mark.parametrize("expr", [
    "1/0", "2**10", "abs(-3)", "__import__('os').system('true')", "'file'.count('f')",
    "'abc'.upper()", "open('x')", "", "1 +", "9" * 2000, "x = 1", "[1,2][0]", "1e5",
])
def test_refused_gives_no_result(expr):
    assert calculate(expr) is None


def test_size_is_bounded():
    assert len(calculate("*".join(["99999999999"] * 80))) > 800  # long but bounded products work
    assert calculate("*".join(["99999999999"] * 90)) is None  # over 1000 characters: refused


def test_works_off_the_main_thread():
    # nanochat's SIGALRM timeout silently returned nothing here; ours must answer.
    out = []
    t = threading.Thread(target=lambda: out.append(calculate("6*7")))
    t.start()
    t.join()
    assert out == ["42"]
