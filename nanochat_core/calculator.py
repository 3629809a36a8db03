"""The calculator tool: nanochat's acceptance rules and results, without its `eval`.

nanochat (nanochat/engine.py `use_calculator`, see /work/shared/docs/nanochat-format.md §6) drops
commas, then evaluates either pure arithmetic (digits, `+ - * / . ( )`, spaces, no `**`) or, when
the text contains `.count(`, an expression over letters, digits, quotes, dots, underscores,
parentheses and spaces that avoids a list of words — with Python's `eval`, empty builtins and a
3-second SIGALRM timeout (which only works on the main thread). The engine forces `str(result)`
into the sequence, or nothing when the result is None or evaluation failed.

We apply the same filters, then parse with `ast` and run the tree on a small stack machine that
knows only the node types those characters can spell (constants, arithmetic, `not`/`and`/`or`,
`in`/`is`, conditional expressions, attribute calls, generator expressions) and a whitelist of
str/bytes/int/float/complex/list/tuple/generator methods, which it calls for real, so results are
Python's own. Instead of a timer, every evaluation has a step budget and size caps that are
checked *before* anything big is built; the numbers and what they change are in docs/calculator.md.
tests/test_calculator.py checks every expression of tests/fixtures/calculator_reference.json
(nanochat's own results) against this module.
"""

from __future__ import annotations

import ast
import codecs
import operator
import re
import sys
import threading
import types
import warnings

# --- Limits (docs/calculator.md explains which ones accepted input can reach) -----------------

MAX_EXPRESSION_CHARS = 100_000  # after commas are removed
MAX_DEPTH = 2_500  # syntax-tree nesting: a sum of ~2,500 terms, a chain of ~1,250 method calls
MAX_LENGTH = 1_000_000  # characters of a str, bytes of a bytes, items of a list or tuple
MAX_INT_BITS = 8 * MAX_LENGTH  # an int may be as big as the biggest bytes (int.from_bytes)
MAX_RESULT_CHARS = 1_000_000  # the text handed back to the engine
MAX_STEPS = 250_000  # budget units: one per instruction, C work by size (see _Machine.work)
MAX_ALLOCATED = 20_000_000  # characters/items/bytes created during one evaluation, in total
SLOW_CODEC_CHARS = 2_000  # punycode and idna are quadratic pure-Python codecs
CHARS_PER_STEP = 1_000  # characters/bytes/limbs a C method scans or copies per budget unit
ITEMS_PER_STEP = 50  # list items (objects) C code visits per budget unit
LIST_ITEM_WEIGHT = 8  # a list item counts as 8 characters against MAX_ALLOCATED

# Python prints ints of more than 4,300 digits only when told to (sys.set_int_max_str_digits);
# nanochat's engine calls str() outside its try, so such a result would raise there. We give
# no result, whatever the interpreter's setting (docs/calculator.md).
MAX_PRINTED_DIGITS = 4_300
_PRINTED_LIMIT = 10 ** MAX_PRINTED_DIGITS

# --- nanochat's acceptance filters (same order, same sets) ------------------------------------

_ARITHMETIC_CHARS = frozenset("0123456789*+-/.() ")
_STRING_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789'\"()._ ")
_REFUSED_WORDS = ("__", "import", "exec", "eval", "compile", "open", "file", "input", "raw_input",
                  "globals", "locals", "vars", "dir", "getattr", "setattr", "delattr", "hasattr")


def accepted(expression: str) -> bool:
    """Whether nanochat's filters let `expression` (commas already removed) reach evaluation."""
    chars = set(expression)
    if chars <= _ARITHMETIC_CHARS:
        return "**" not in expression
    if not chars <= _STRING_CHARS:
        return False
    lowered = expression.lower()
    if any(word in lowered for word in _REFUSED_WORDS):
        return False
    return ".count(" in expression


def calculate(expression: str) -> str | None:
    """What nanochat's engine would force after `expression`, or None for no result.

    None also stands for our deliberate refusals (limits, results that would show a memory
    address); docs/calculator.md lists them."""
    expr = expression.replace(",", "")
    if not accepted(expr) or len(expr) > MAX_EXPRESSION_CHARS:
        return None
    try:
        return _text(_Machine().evaluate(expr))
    except Exception:  # noqa: BLE001 - nanochat: any error in evaluation means no result
        return None


# --- Parsing -------------------------------------------------------------------------------

_SOURCE_NAME = "<calculator>"
# Python 3.11's parser warns (DeprecationWarning) about `1if x else y`, later versions with a
# SyntaxWarning. nanochat's eval ignores SyntaxWarning and the default filters hide the other;
# ours ignore both, for text parsed here only (catch_warnings() would not be thread-safe).
_QUIET = ((SyntaxWarning, re.escape(_SOURCE_NAME)), (DeprecationWarning, re.escape(_SOURCE_NAME)))


_QUIET_LOCK = threading.Lock()


def _quiet_parser_warnings() -> None:
    # Keep our two filters in front: a filter added later (pytest adds some around each test)
    # would otherwise win. They match warnings about our own pseudo-file only.
    def in_front() -> bool:
        front = warnings.filters[:len(_QUIET)]
        return all(any(f[0] == "ignore" and f[2] is category and f[3] is not None
                       and f[3].pattern == module for f in front) for category, module in _QUIET)

    if in_front():
        return
    with _QUIET_LOCK:
        if not in_front():
            for category, module in _QUIET:
                warnings.filterwarnings("ignore", category=category, module=module)


def _parse(expr: str) -> ast.expr:
    _quiet_parser_warnings()
    # eval() skips leading spaces; ast.parse would call them an indent. Python's own parser
    # gives up near 3,000 levels (less the caller's stack); _Compiler enforces MAX_DEPTH.
    return ast.parse(expr.lstrip(" "), filename=_SOURCE_NAME, mode="eval").body


# --- Compiling the tree to a flat program ----------------------------------------------------

class _Refused(Exception):
    """We give no result on purpose (a limit, or something we do not evaluate)."""


# Instructions are tuples (opcode, a, b); jumps hold a _Label until _Compiler.code resolves it.
# While compiling, (_NODE, node, depth) stands for a syntax-tree node still to expand.
_NODE = -1
(_CONST, _LOAD, _NO_NAME, _NOT, _NEG, _POS, _BINARY, _COMPARE, _COMPARE_CHAIN, _AND, _OR,
 _JUMP_IF_FALSE, _JUMP, _ATTR, _CALL, _GENEXPR) = range(16)
_JUMPS = frozenset({_COMPARE_CHAIN, _AND, _OR, _JUMP_IF_FALSE, _JUMP})


class _Label:
    __slots__ = ()


_BINARY_OPS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul,
               ast.Div: operator.truediv, ast.FloorDiv: operator.floordiv}
_UNARY_OPS = {ast.Not: _NOT, ast.USub: _NEG, ast.UAdd: _POS}
_COMPARE_OPS = {ast.In: "in", ast.NotIn: "not in", ast.Is: "is", ast.IsNot: "is not"}
_CONSTANT_TYPES = frozenset({str, bytes, int, float, complex, bool, type(None), type(...)})
_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_")


class _Scope:
    """Names a generator expression binds (its `for` targets); the top level binds none."""

    __slots__ = ("names", "parent")

    def __init__(self, names: frozenset, parent: _Scope | None):
        self.names = names
        self.parent = parent

    def distance(self, name: str) -> int | None:
        scope, hops = self, 0
        while scope is not None:
            if name in scope.names:
                return hops
            scope, hops = scope.parent, hops + 1
        return None  # a global or builtin in nanochat's eval: both are empty, so NameError


class _GenSpec:
    """A compiled generator expression: per `for` clause (target, iterable code, conditions)."""

    __slots__ = ("clauses", "element")

    def __init__(self, clauses: tuple, element: tuple):
        self.clauses = clauses
        self.element = element


class _Compiler:
    def __init__(self) -> None:
        self._constants: dict = {}

    def constant(self, value: object) -> object:
        # CPython merges equal constants of one compilation and interns name-like strings, which
        # `is` can observe ('abc'.strip() is 'abc'); do the same.
        kind = type(value)
        if kind not in _CONSTANT_TYPES:
            raise _Refused("constant type")
        # (Interning is observable for one-character strings: the interned 'b' is not the
        # cached 'b' that split() returns. Long ones are left alone: some Pythons never free
        # interned strings, and no method we call returns an interned long string.)
        key = (kind, repr(value)) if kind in (float, complex) else (kind, value)
        if key not in self._constants:
            if kind is str and len(value) <= 64 and set(value) <= _NAME_CHARS:
                value = sys.intern(value)
            self._constants[key] = value
        return self._constants[key]

    def code(self, root: ast.expr, scope: _Scope, depth: int = 1) -> tuple:
        out: list = []
        where: dict = {}
        work: list = [(_NODE, root, depth)]
        while work:  # iterative: MAX_DEPTH is beyond Python's recursion limit
            item = work.pop()
            if type(item) is _Label:
                where[item] = len(out)
            elif item[0] == _NODE:
                node, level = item[1], item[2]
                if level > MAX_DEPTH:
                    raise _Refused("too deeply nested")
                for part in reversed(self._expand(node, scope, level)):
                    work.append((_NODE, part, level + 1) if isinstance(part, ast.AST) else part)
            else:
                out.append(item)
        # Jumps name their target in `a`, except _COMPARE_CHAIN, whose `a` is the operator.
        return tuple((op, a, where[b]) if op == _COMPARE_CHAIN
                     else (op, where[a], b) if op in _JUMPS else (op, a, b)
                     for op, a, b in out)

    def _expand(self, node: ast.AST, scope: _Scope, depth: int) -> list:
        """The node as a sequence of sub-nodes, labels and instructions, in execution order."""
        kind = type(node)
        if kind is ast.Constant:
            return [(_CONST, self.constant(node.value), None)]
        if kind is ast.JoinedStr:  # an f-string without braces is a plain string constant
            if not all(type(v) is ast.Constant and type(v.value) is str for v in node.values):
                raise _Refused("f-string field")
            return [(_CONST, self.constant("".join(v.value for v in node.values)), None)]
        if kind is ast.Tuple and not node.elts:
            return [(_CONST, (), None)]
        if kind is ast.Name:
            hops = scope.distance(node.id)
            return [(_NO_NAME, node.id, None) if hops is None else (_LOAD, hops, node.id)]
        if kind is ast.UnaryOp and type(node.op) in _UNARY_OPS:
            return [node.operand, (_UNARY_OPS[type(node.op)], None, None)]
        if kind is ast.BinOp and type(node.op) in _BINARY_OPS:
            return [node.left, node.right, (_BINARY, _BINARY_OPS[type(node.op)], None)]
        if kind is ast.BoolOp:
            end = _Label()
            jump = _AND if type(node.op) is ast.And else _OR
            seq: list = []
            for value in node.values[:-1]:
                seq += [value, (jump, end, None)]
            return seq + [node.values[-1], end]
        if kind is ast.IfExp:
            other, end = _Label(), _Label()
            return [node.test, (_JUMP_IF_FALSE, other, None), node.body, (_JUMP, end, None),
                    other, node.orelse, end]
        if kind is ast.Compare and all(type(op) in _COMPARE_OPS for op in node.ops):
            end = _Label()
            seq = [node.left]
            pairs = list(zip(node.ops, node.comparators))
            for op, right in pairs[:-1]:
                seq += [right, (_COMPARE_CHAIN, _COMPARE_OPS[type(op)], end)]
            op, right = pairs[-1]
            return seq + [right, (_COMPARE, _COMPARE_OPS[type(op)], None), end]
        if kind is ast.Attribute:
            return [node.value, (_ATTR, node.attr, None)]
        if kind is ast.Call and not node.keywords and not any(
                type(a) is ast.Starred for a in node.args):
            return [node.func, *node.args, (_CALL, len(node.args), None)]
        if kind is ast.GeneratorExp:
            spec = self._generator(node, scope, depth)
            # The first iterable belongs to the enclosing scope and is iterated at once.
            return [node.generators[0].iter, (_GENEXPR, spec, None)]
        raise _Refused(f"unsupported syntax {kind.__name__}")

    def _generator(self, node: ast.GeneratorExp, scope: _Scope, depth: int) -> _GenSpec:
        if any(g.is_async for g in node.generators):
            raise _Refused("async comprehension")  # eval: SyntaxError outside async code
        names: set = set()
        targets = [self._target(g.target, names) for g in node.generators]
        inner = _Scope(frozenset(names), scope)
        depth += 2  # as Python's tree has it: GeneratorExp > comprehension > expression
        clauses = tuple(
            (targets[i], None if i == 0 else self.code(g.iter, inner, depth),
             tuple(self.code(cond, inner, depth) for cond in g.ifs))
            for i, g in enumerate(node.generators))
        return _GenSpec(clauses, self.code(node.elt, inner, depth - 1))

    @staticmethod
    def _target(node: ast.expr, names: set) -> tuple:
        if type(node) is ast.Name:
            names.add(node.id)
            return ("name", node.id)
        if type(node) is ast.Attribute:
            # `for a.b in ...`: every value we have refuses attribute assignment, so this fails
            # on the first item, as in Python (an empty iterable never assigns).
            return ("fail", None)
        if type(node) is ast.Tuple and not node.elts:
            return ("empty", None)  # `for () in ...`: each item must be empty
        raise _Refused("unsupported target")


# --- Running it -------------------------------------------------------------------------------

class _Env:
    __slots__ = ("parent", "values")

    def __init__(self, parent: _Env | None):
        self.values: dict = {}
        self.parent = parent


class _Bound:
    """A method looked up on a value: callable only through the whitelist's guard."""

    __slots__ = ("guard", "method", "obj")

    def __init__(self, obj: object, method: object, guard):
        self.obj, self.method, self.guard = obj, method, guard

    def __eq__(self, other: object) -> bool:
        # Python's bound builtin methods are equal when they wrap the same object and function.
        return self.method == other.method if type(other) is _Bound else NotImplemented

    def __hash__(self) -> int:
        return hash(self.method)


_ARITHMETIC_TYPES = frozenset({int, float, tuple, type(...)})
_UNPRINTABLE = (types.GeneratorType, _Bound)  # str() shows a memory address


def _size(value: object) -> int:
    """Elements a comparison or copy of `value` may touch."""
    kind = type(value)
    if kind is str or kind is bytes or kind is list:
        return len(value)
    if kind is tuple:
        return len(value) + sum(_size(item) for item in value)  # tuples hold scalars only
    if kind is int:
        return value.bit_length() // 32 + 1
    return 1


class _Machine:
    """One evaluation: its budget and what it has allocated. Nothing here is shared."""

    def __init__(self) -> None:
        self.steps = MAX_STEPS
        self.allocated = 0

    # budget
    def charge(self, units: int) -> None:
        self.steps -= units
        if self.steps < 0:
            raise _Refused("step budget spent")

    def work(self, chars: int) -> None:
        """C-level work over `chars` characters/bytes/limbs (much cheaper than a step)."""
        self.charge(chars // CHARS_PER_STEP + 1)

    def visit(self, items: int) -> None:
        """C-level work over `items` objects (a list scan, a sort's comparisons)."""
        self.charge(items // ITEMS_PER_STEP + 1)

    def account(self, value: object) -> object:
        """Check a new value against the size caps and charge its size; returns it."""
        kind = type(value)
        if kind is str or kind is bytes or kind is list or kind is tuple:
            size = len(value)
            if size > MAX_LENGTH:
                raise _Refused("value too long")
            if kind is list or kind is tuple:
                # Items that are new (split's pieces) hold at most the source's characters,
                # which the method's guard charged; count the slots and object overhead here.
                size *= LIST_ITEM_WEIGHT
        elif kind is int:
            if value.bit_length() > MAX_INT_BITS:
                raise _Refused("int too big")
            size = value.bit_length() // 64
        else:
            return value
        self.allocated += size
        if self.allocated > MAX_ALLOCATED:
            raise _Refused("allocation budget spent")
        self.work(size)
        return value

    # evaluation
    def evaluate(self, expr: str) -> object:
        return self.run(_Compiler().code(_parse(expr), _Scope(frozenset(), None)), _Env(None))

    def run(self, code: tuple, env: _Env) -> object:
        stack: list = []
        push, pop = stack.append, stack.pop
        pc, end = 0, len(code)
        while pc < end:
            op, a, b = code[pc]
            pc += 1
            self.steps -= 1
            if self.steps < 0:
                raise _Refused("step budget spent")
            if op == _CONST:
                push(a)
            elif op == _LOAD:
                scope = env
                for _ in range(a):
                    scope = scope.parent
                if b not in scope.values:
                    raise NameError(b)  # a comprehension variable used before it is bound
                push(scope.values[b])
            elif op == _NO_NAME:
                raise NameError(a)
            elif op == _NOT:
                push(not pop())
            elif op == _NEG or op == _POS:
                value = pop()
                if type(value) not in _ARITHMETIC_TYPES:
                    raise TypeError("bad operand type for unary operator")
                push(self.account(-value if op == _NEG else +value))
            elif op == _BINARY:
                right = pop()
                push(self.binary(a, pop(), right))
            elif op == _COMPARE:
                right = pop()
                push(self.compare(a, pop(), right))
            elif op == _COMPARE_CHAIN:
                right = pop()
                result = self.compare(a, pop(), right)
                if result:
                    push(right)
                else:
                    push(result)
                    pc = b
            elif op == _AND:
                if stack[-1]:
                    pop()
                else:
                    pc = a
            elif op == _OR:
                if stack[-1]:
                    pc = a
                else:
                    pop()
            elif op == _JUMP_IF_FALSE:
                if not pop():
                    pc = a
            elif op == _JUMP:
                pc = a
            elif op == _ATTR:
                push(self.attribute(pop(), a))
            elif op == _CALL:
                args = stack[len(stack) - a:]
                del stack[len(stack) - a:]
                push(self.call(pop(), args))
            else:  # _GENEXPR
                push(self.generator(a, env, iter(pop())))
        return stack[-1]

    def binary(self, fn, left: object, right: object) -> object:
        # Only the arithmetic branch has operators: ints, floats, () and ... reach here.
        if type(left) not in _ARITHMETIC_TYPES or type(right) not in _ARITHMETIC_TYPES:
            raise TypeError("unsupported operand")
        if type(left) is int and type(right) is int:
            limbs_l, limbs_r = left.bit_length() // 30 + 1, right.bit_length() // 30 + 1
            if fn is operator.add or fn is operator.sub:
                self.work(limbs_l + limbs_r)
            else:  # schoolbook bound for *, // and /
                if fn is operator.mul and 30 * (limbs_l + limbs_r) > MAX_INT_BITS + 60:
                    raise _Refused("int too big")
                self.work(limbs_l * limbs_r)
        return self.account(fn(left, right))

    def compare(self, op: str, left: object, right: object) -> bool:
        if op == "is":
            return left is right
        if op == "is not":
            return left is not right
        kind = type(right)
        if kind is str or kind is bytes:
            self.work(len(right) * min(_size(left) + 1, 101) + _size(left))
            found = left in right
        elif kind is list or kind is tuple:
            self.visit(len(right))
            self.work(len(right) * _size(left))
            found = left in right
        elif kind is types.GeneratorType:
            found = False  # Python's iterator search: identity, then ==, item by item
            for item in right:
                self.work(_size(left))
                if item is left or item == left:
                    found = True
                    break
        else:
            found = left in right  # TypeError for everything else we hold
        return found if op == "in" else not found

    def attribute(self, obj: object, name: str) -> object:
        table = _ATTRIBUTES.get(type(obj), {})
        if name not in table:
            raise AttributeError(name)  # or one we do not expose (docs/calculator.md)
        value = getattr(obj, name)  # AttributeError if this Python lacks it (int.is_integer)
        guard = table[name]
        return value if guard is None else _Bound(obj, value, guard)

    def call(self, fn: object, args: list) -> object:
        if type(fn) is not _Bound:
            raise TypeError("object is not callable")
        return fn.guard(self, fn.obj, fn.method, args)

    def drain(self, items) -> list:
        """A generator's items, as Python's join/from_bytes would first collect them."""
        out: list = []
        for item in items:
            out.append(item)
            if len(out) > MAX_LENGTH:
                raise _Refused("too many items")
        return self.account(out)

    def generator(self, spec: _GenSpec, parent: _Env, first: object):
        """A real generator running `spec` lazily, with this machine's budget."""
        clauses, last = spec.clauses, len(spec.clauses) - 1
        env = _Env(parent)
        values = env.values
        iterators = [first]
        while iterators:
            level = len(iterators) - 1
            self.charge(1)
            try:
                item = next(iterators[-1])
            except StopIteration:
                iterators.pop()
                continue
            (target, name), _, conditions = clauses[level]
            if target == "name":
                values[name] = item
            elif target == "fail":
                raise AttributeError("cannot assign to an attribute here")
            else:  # for () in ...
                if type(item) in (tuple, list):
                    if item:
                        raise ValueError("too many values to unpack")
                else:
                    for _ in item:
                        raise ValueError("too many values to unpack")
            if not all(self.run(cond, env) for cond in conditions):
                continue
            if level < last:
                iterators.append(iter(self.run(clauses[level + 1][1], env)))
            else:
                yield self.run(spec.element, env)


# --- The whitelist: each method's guard checks sizes/cost, calls it, and accounts the result ----

def _plain(m: _Machine, obj, method, args):
    """Work linear in the operands; the result is at most a few times their size."""
    m.work(_size(obj) + sum(_size(a) for a in args))
    return m.account(method(*args))


def _search(m: _Machine, obj, method, args):
    """count/find/split…: CPython's search is at worst ~len × min(len(needle), 100)."""
    needle = _size(args[0]) if args else 1
    m.work(_size(obj) * min(needle + 1, 101) + needle)
    return m.account(method(*args))


def _strip(m: _Machine, obj, method, args):
    """strip(chars) looks each stripped character up in `chars`."""
    m.work(_size(obj) * (_size(args[0]) + 1 if args else 1))
    return m.account(method(*args))


def _padded(m: _Machine, obj, method, args):
    """center/ljust/rjust/zfill(width): the result is `width` long; refuse it before building."""
    if args and type(args[0]) in (int, bool) and args[0] > MAX_LENGTH:
        raise _Refused("width over the length cap")
    return _plain(m, obj, method, args)


def _expandtabs(m: _Machine, obj, method, args):
    size = args[0] if args else 8
    if type(size) in (int, bool) and size > 0:
        tab = "\t" if type(obj) is str else b"\t"
        m.work(len(obj))
        if len(obj) + obj.count(tab) * size > MAX_LENGTH:
            raise _Refused("tabs expand over the length cap")
    return _plain(m, obj, method, args)


def _join(m: _Machine, obj, method, args):
    if len(args) == 1:
        items = args[0]
        if type(items) is types.GeneratorType:
            items = m.drain(items)
        kind = type(items)
        if kind is list or kind is tuple:
            m.visit(len(items))
            total = sum(map(len, items))  # TypeError for items join refuses too
        elif kind is str:
            total = len(items)
        else:
            total = 0  # bytes yield ints, which join refuses
        count = len(items) if kind in (list, tuple, str, bytes) else 0
        if total + len(obj) * max(count - 1, 0) > MAX_LENGTH:
            raise _Refused("join over the length cap")
        args = [items]
    return _plain(m, obj, method, args)


def _translate(m: _Machine, obj, method, args):
    if args and type(obj) is str and type(args[0]) in (list, tuple):
        m.visit(len(args[0]))  # a table entry may be a long string: bound the output first
        longest = max((len(e) for e in args[0] if type(e) is str), default=1)
        if len(obj) * max(longest, 1) > MAX_LENGTH:
            raise _Refused("translation over the length cap")
    return _plain(m, obj, method, args)


_SLOW_CODECS = frozenset({"punycode", "idna"})


def _codec(m: _Machine, obj, method, args):
    """encode/decode: only text encodings reach codecs (Python refuses zlib, base64…)."""
    if args and type(args[0]) is str:
        if len(args[0]) > 64:
            # No codec has such a name, and Python's codec registry would cache every one it was
            # asked for (a leak a model could drive). nanochat gets a LookupError: no result.
            raise _Refused("no such codec")
        try:
            name = codecs.lookup(args[0]).name
        except LookupError:
            name = ""  # the call below raises the same LookupError
        if name in _SLOW_CODECS:
            if len(obj) > SLOW_CODEC_CHARS:
                raise _Refused("long input to a quadratic codec")
            m.work(len(obj) * len(obj))
    m.work(10 * len(obj))
    return m.account(method(*args))


def _format(m: _Machine, obj, method, args):
    # Format fields can read attributes ({0.__class__}) and pad to any width. No literal can
    # hold a brace, but decoded bytes can: refuse such templates rather than interpret them.
    if "{" in obj or "}" in obj:
        raise _Refused("format template with fields")
    return _plain(m, obj, method, args)


def _to_bytes(m: _Machine, obj, method, args):
    if args and type(args[0]) in (int, bool) and args[0] > MAX_LENGTH:
        raise _Refused("length over the cap")
    return _plain(m, obj, method, args)


def _from_bytes(m: _Machine, obj, method, args):
    if args and type(args[0]) is types.GeneratorType:
        args = [m.drain(args[0])]
    return _plain(m, obj, method, args)


def _no_nested_lists(item: object) -> None:
    # A list inside a list allows structures whose comparison takes exponential time (and
    # self-containing lists); nothing a calculator needs. Refused (docs/calculator.md).
    if type(item) is list:
        raise _Refused("list inside a list")


def _append(m: _Machine, obj: list, method, args):
    if len(args) == 1:
        _no_nested_lists(args[0])
        if len(obj) >= MAX_LENGTH:
            raise _Refused("list over the length cap")
        m.allocated += LIST_ITEM_WEIGHT
    return _cheap(m, obj, method, args)


def _extend(m: _Machine, obj: list, method, args):
    if len(args) != 1:
        return method(*args)  # TypeError
    items = args[0]
    if type(items) is types.GeneratorType:
        # list.extend appends item by item while iterating, so a generator over the list itself
        # keeps finding new items (nanochat runs until its timeout; we until the budget ends).
        for item in items:
            _no_nested_lists(item)
            if len(obj) >= MAX_LENGTH:
                raise _Refused("list over the length cap")
            obj.append(item)
            m.allocated += LIST_ITEM_WEIGHT
        return None
    if type(items) in (list, tuple, str, bytes):
        if len(obj) + len(items) > MAX_LENGTH:
            raise _Refused("list over the length cap")
        m.allocated += LIST_ITEM_WEIGHT * len(items)
        if m.allocated > MAX_ALLOCATED:
            raise _Refused("allocation budget spent")
    return _plain(m, obj, method, args)


def _scan(m: _Machine, obj, method, args):
    """list/tuple count/index/remove compare every item with the argument."""
    m.visit(len(obj))
    m.work(len(obj) * (_size(args[0]) if args else 0))
    return m.account(method(*args))


def _sort(m: _Machine, obj: list, method, args):
    m.visit(len(obj))
    longest = max(map(_size, obj), default=0)
    compares = len(obj) * max(len(obj).bit_length(), 1)
    m.visit(compares)
    m.work(compares * longest)
    return method(*args)


def _copy(m: _Machine, obj: list, method, args):
    m.visit(len(obj))
    return m.account(method(*args))


def _cheap(m: _Machine, obj, method, args):
    return m.account(method(*args))


_STR = {
    **dict.fromkeys(["capitalize", "casefold", "lower", "upper", "swapcase", "title", "isalnum",
                     "isalpha", "isascii", "isdecimal", "isdigit", "isidentifier", "islower",
                     "isnumeric", "isprintable", "isspace", "istitle", "isupper", "splitlines",
                     "maketrans", "replace", "removeprefix", "removesuffix", "startswith",
                     "endswith"], _plain),
    **dict.fromkeys(["count", "find", "rfind", "index", "rindex", "split", "rsplit", "partition",
                     "rpartition"], _search),
    **dict.fromkeys(["strip", "lstrip", "rstrip"], _strip),
    **dict.fromkeys(["center", "ljust", "rjust", "zfill"], _padded),
    "expandtabs": _expandtabs, "join": _join, "translate": _translate, "encode": _codec,
    "format": _format, "format_map": _format,
}
_BYTES = {
    **dict.fromkeys(["capitalize", "lower", "upper", "swapcase", "title", "isalnum", "isalpha",
                     "isascii", "isdigit", "islower", "isspace", "istitle", "isupper",
                     "splitlines", "maketrans", "replace", "removeprefix", "removesuffix",
                     "startswith", "endswith", "hex", "fromhex", "translate"], _plain),
    **dict.fromkeys(["count", "find", "rfind", "index", "rindex", "split", "rsplit", "partition",
                     "rpartition"], _search),
    **dict.fromkeys(["strip", "lstrip", "rstrip"], _strip),
    **dict.fromkeys(["center", "ljust", "rjust", "zfill"], _padded),
    "expandtabs": _expandtabs, "join": _join, "decode": _codec,
}
_INT = {
    **dict.fromkeys(["real", "imag", "numerator", "denominator"]),  # data, not methods
    **dict.fromkeys(["as_integer_ratio", "bit_count", "bit_length", "conjugate", "is_integer"],
                    _cheap),
    "to_bytes": _to_bytes, "from_bytes": _from_bytes,
}
_FLOAT = {
    **dict.fromkeys(["real", "imag"]),
    **dict.fromkeys(["as_integer_ratio", "conjugate", "hex", "is_integer"], _cheap),
    "fromhex": _plain,
}
_LIST = {
    **dict.fromkeys(["count", "index", "remove"], _scan),
    **dict.fromkeys(["clear", "copy", "pop", "reverse", "insert"], _copy),
    "append": _append, "extend": _extend, "sort": _sort,
}
_ATTRIBUTES = {
    str: _STR, bytes: _BYTES, int: _INT, bool: _INT, float: _FLOAT,
    complex: {"real": None, "imag": None, "conjugate": _cheap},
    list: _LIST, tuple: dict.fromkeys(["count", "index"], _scan),
    # A generator's gi_frame/gi_code would expose interpreter internals; send and close do not.
    types.GeneratorType: {"send": _cheap, "close": _cheap, "throw": _cheap},
}


# --- The result -------------------------------------------------------------------------------

def _printable_size(value: object) -> int:
    """An upper bound on len(repr(value)) for the values we can hold."""
    kind = type(value)
    if kind is str:
        return 10 * len(value) + 2  # \U0001xxxx escapes
    if kind is bytes:
        return 4 * len(value) + 3
    if kind is list or kind is tuple:
        if 3 * len(value) > MAX_RESULT_CHARS:  # every item prints as at least "x, "
            raise _Refused("result too long")
        return 2 + sum(_printable_size(item) + 2 for item in value)
    if kind is int:
        if value.bit_length() > 14_300 or abs(value) >= _PRINTED_LIMIT:
            raise _Refused("int too long to print")
        return value.bit_length() // 3 + 2
    if isinstance(value, _UNPRINTABLE):
        raise _Refused("its text would show a memory address")
    return 64  # float, complex, bool, None, Ellipsis


def _text(value: object) -> str | None:
    if value is None:
        return None  # nanochat's engine forces nothing for None
    if type(value) is str:
        return value if len(value) <= MAX_RESULT_CHARS else None
    if _printable_size(value) > 10 * MAX_RESULT_CHARS:
        return None
    text = str(value)
    return text if len(text) <= MAX_RESULT_CHARS else None
