"""The calculator tool, with nanochat's acceptance rules and none of its `eval`.

nanochat evaluates the model's `<|python_start|>…<|python_end|>` text with `eval` behind a
character filter and a SIGALRM timeout (which silently disables the tool off the main thread).
We accept the same inputs (nanochat-format.md §6) but parse them into a small syntax tree and
walk a whitelist: arithmetic on numbers, and `'text'.count('t')`. No eval, no exec, bounded input,
so it is fast and works in any thread.
"""

from __future__ import annotations

import ast
import operator

# Without `**`, a 1000-character expression cannot build a number longer than ~1000 digits,
# so this one bound keeps every evaluation tiny in time and memory.
MAX_EXPRESSION_CHARS = 1000

_ARITHMETIC_CHARS = set("0123456789*+-/.() ")
_STRING_CHARS = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789'\"()._ ")
# nanochat refuses these substrings (case-insensitive) in the string branch; kept for parity.
_REFUSED = ("__", "import", "exec", "eval", "compile", "open", "file", "input", "raw_input",
            "globals", "locals", "vars", "dir", "getattr", "setattr", "delattr", "hasattr")

_BINARY = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
}
_UNARY = {ast.UAdd: operator.pos, ast.USub: operator.neg}


class _Refused(Exception):
    pass


def _arithmetic(node: ast.AST) -> int | float:
    if isinstance(node, ast.Constant) and type(node.value) in (int, float):
        return node.value
    if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
        return _UNARY[type(node.op)](_arithmetic(node.operand))
    if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
        left, right = _arithmetic(node.left), _arithmetic(node.right)
        return _BINARY[type(node.op)](left, right)
    raise _Refused


def _string_count(node: ast.AST) -> int:
    # Only the shape '<text>'.count('<text>') is allowed.
    if (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr == "count"
        and isinstance(node.func.value, ast.Constant)
        and isinstance(node.func.value.value, str)
        and len(node.args) == 1
        and not node.keywords
        and isinstance(node.args[0], ast.Constant)
        and isinstance(node.args[0].value, str)
    ):
        return node.func.value.value.count(node.args[0].value)
    raise _Refused


def calculate(expression: str) -> str | None:
    """The text nanochat's calculator would return for `expression`, or None for no result."""
    expr = expression.replace(",", "")
    if not expr.strip() or len(expr) > MAX_EXPRESSION_CHARS:
        return None
    try:
        if set(expr) <= _ARITHMETIC_CHARS:
            if "**" in expr:
                return None
            tree = ast.parse(expr.strip(), mode="eval")
            return str(_arithmetic(tree.body))
        if not set(expr) <= _STRING_CHARS:
            return None
        lowered = expr.lower()
        if any(bad in lowered for bad in _REFUSED) or ".count(" not in expr:
            return None
        tree = ast.parse(expr.strip(), mode="eval")
        return str(_string_count(tree.body))
    except (_Refused, SyntaxError, ZeroDivisionError, OverflowError, ValueError, RecursionError):
        return None
