"""Record nanochat's own calculator results for our corpus: tests/fixtures/calculator_reference.json.

    python scripts/make_calculator_reference.py --nanochat /path/to/nanochat-checkout [--commit SHA]
    python scripts/make_calculator_reference.py --nanochat /path/to/checkout --bench   # timings

It imports `use_calculator` from the checkout's nanochat/engine.py (so torch must be importable),
calls it in the main thread (its SIGALRM timeout only works there) on every expression of the
corpus below, and writes what nanochat's engine would force: `str(result)`, or null. The corpus
and the notes on where we deliberately differ are ours; nanochat's code is only run, not copied.
tests/test_calculator.py compares nanochat_core.calculator against the file.

Long expressions are stored as a pattern [prefix, unit, count, suffix], meaning
prefix + unit * count + suffix, to keep the file small.
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import platform
import random
import re
import subprocess
import sys
import time
from pathlib import Path

OUT = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "calculator_reference.json"
ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+")

# Reasons we give no result where nanochat gives one (docs/calculator.md, "Differences").
DEPTH = "syntax tree deeper than MAX_DEPTH (2,500)"
INPUT = "expression longer than MAX_EXPRESSION_CHARS (100,000)"
LENGTH = "a value longer than MAX_LENGTH (1,000,000)"
STEPS = "step budget MAX_STEPS (250,000) spent"
CODEC = "quadratic codec (punycode/idna) input over SLOW_CODEC_CHARS (2,000)"
FORMAT = "str.format template with fields (only reachable through decoded bytes)"
NESTED = "a list inside a list"
GENATTR = "generator internals (gi_*) are not exposed"


def T(x: str) -> str:
    """Pass the string filter and return x's own value: ''.count('') is 1, so truthy."""
    return f"{x} if ''.count('') else 0"


def corpus() -> list[dict]:
    cases: list[dict] = []

    def add(group: str, *exprs: str, differs: str | None = None) -> None:
        for e in exprs:
            case = {"group": group, "expr": e}
            if differs:
                case["differs"] = differs
            cases.append(case)

    def pattern(group: str, prefix: str, unit: str, count: int, suffix: str,
                differs: str | None = None) -> None:
        case = {"group": group, "pattern": [prefix, unit, count, suffix]}
        if differs:
            case["differs"] = differs
        cases.append(case)

    # The examples: refused by the old calculator, evaluated by nanochat.
    add("issue", "'abc'.upper().count('A')", "'a b'.split().count('a')", "()", "...", "(...)",
        "b'abc'.count(b'a')", "f'abc'.count('a')", "not 'abc'.count('z')",
        "'abc'.count('a') and 'abc'.count('b')", "'yes' if 'abc'.count('a') else 'no'",
        "'Hello World'.lower().count('o')", "'banana'.replace('a').count('a')",
        "B'aa'.count(b'a')", "F'x'.count('x')", "not not 'a'.count('a')")
    pattern("issue", "", "12345+", 200, "1")  # 1,201 characters
    pattern("issue", "", "7*", 400, "7")
    pattern("issue", "", "1.5+", 300, "0.5")

    # Arithmetic: the first branch (digits, + - * / . ( ) and spaces; no **).
    add("arithmetic", "12*7", "1,000/8", "1,000,000 + 1", "(2+3)*4 - 1", "-3 + 5", "7//2",
        "-7//2", "7//-2", "7.5//2", "-7.5//2", "1.0//0.1", "0.1+0.2", "1/3", "2/3*3", "10/4",
        "2*3.0", "100/7", "0.00001", "0.0001*0.1", "123456789.123456789", "1/1024/1024/1024",
        "99999999999999999*99999999999999999", "123456789*987654321", "12345678901234567890/3",
        "12345678901234567890//3", "--1", "+-+1", "-(-(3))", "((1+2)*(3+4))", "1.", ".5",
        "1..5", "1 .5", "00", "007", "0", "-0", "-0.0", "0*-1", "0.0*-1", "1/0", "1//0",
        "1.0/0", "0/0", "0.0//0", "1-1-1-1", "2*3+4*5-6/3", "(((((1)))))", "3 * (4 + 5) / 2",
        "  1 + 1  ", "1+1 ", " 1", "1 + ", "+", "*1", "1**2", "2**10", "2* *3", "2 ** 3",
        "()", "(())", "()+()", "()*3", "3*()", "()*0", "()*-1", "()-()", "-()", "+()",
        "()/1", "...+1", "...*2", "()()", "(1)(2)", "(*())", "1 2", "", " ", ",", "1,,,2",
        "(1,2)", "1,234.5*2", "/", ".", "..", "....", ".....", "1...2", "1//", "1///2",
        "1e5", "1E5", "0x10", "1_000", "1.5.5", "(1)+(2)*(3)", "-(1)", "+(+(+1))",
        "100000000000000000000.0*100000000000000000000.0", "0.1*3", "1/3*3", "2/7",
        "4/2", "9//3", "9/3", "5-10", "-5--10", "3.14159*2*2", "22/7", "1/7*7",
        "1000000*1000000*1000000*1000000", "9007199254740993/1", "9007199254740993*1.0",
        "0.1+0.7", "4.35*100", "1.1*1.1", "3*1.1", "8-6.4", "2.675*100", "1/3+1/3+1/3")
    nines = "9" * 400
    add("arithmetic", f"{nines}/1", f"{nines}*1.0", f"{nines}//1", f"{nines}.0",
        f"{nines}.0*10", f"-{nines}.0", f"{nines}.0-{nines}.0", f"{nines}.0*0",
        f"{nines}*{nines}", f"{nines}//{nines[:200]}", f"{nines}/{nines}",
        f"0.{nines}", "1" + "0" * 308 + ".0*10", "9" * 4300, "9" * 4301, "-" + "9" * 4300)

    # Random arithmetic of every shape (fixed seed, so the corpus is reproducible).
    rng = random.Random(20260704)

    def number() -> str:
        kind = rng.random()
        if kind < 0.5:
            return str(rng.randint(0, 10 ** rng.randint(1, 12)))
        if kind < 0.8:
            return f"{rng.randint(0, 999)}.{rng.randint(0, 999):03d}"
        return rng.choice(["0", "1", "0.5", ".25", "3.", "1,000", "2,500,000"])

    def arith(depth: int) -> str:
        if depth == 0 or rng.random() < 0.3:
            return rng.choice(["", "", "", "-", "+", "--"]) + number()
        left, right = arith(depth - 1), arith(depth - 1)
        op = rng.choice(["+", "-", "*", "/", "//", " + ", " * ", " - "])
        text = f"{left}{op}{right}"
        return f"({text})" if rng.random() < 0.4 else text

    add("arithmetic-random", *(arith(rng.randint(1, 5)) for _ in range(80)))

    # Long and deep arithmetic (Python's compiler gives up around 2,980 nested levels).
    pattern("arithmetic-long", "", "1+", 999, "1")
    pattern("arithmetic-long", "", "123+", 2000, "4")
    pattern("arithmetic-long", "", "2*", 1000, "2")
    pattern("arithmetic-long", "", "99999999999*", 80, "99999999999")
    pattern("arithmetic-long", "", "99999999999*", 90, "99999999999")
    pattern("arithmetic-long", "", "1000000007*", 400, "1")  # 3,600 digits: printable
    pattern("arithmetic-long", "", "1000000007*", 500, "1")  # 4,500 digits: str() raises
    pattern("arithmetic-long", "", "3-", 2400, "3")
    pattern("arithmetic-long", "", "0.1+", 2400, "0.1")
    pattern("arithmetic-long", "", "1/", 1000, "1")
    pattern("arithmetic-long", "", "(1+", 199, "1" + ")" * 199)
    pattern("arithmetic-long", "", "(", 200, "1" + ")" * 200)  # tokenizer: too many parens
    pattern("arithmetic-long", "", "-", 2400, "1")
    pattern("arithmetic-long", "", "1+", 2700, "1", differs=DEPTH)
    pattern("arithmetic-long", "", "-", 2700, "1", differs=DEPTH)
    pattern("arithmetic-long", "", "1+", 3100, "1")
    pattern("arithmetic-long", "", "1+", 20000, "1")
    pattern("arithmetic-long", "", "-", 20000, "1")
    pattern("arithmetic-long", "", "(1)+", 2000, "1")
    pattern("arithmetic-long", "", "1 + ", 2000, "1")
    pattern("arithmetic-long", "", "1,000+", 2000, "1")
    pattern("arithmetic-long", "", "1234567890" * 4 + "+", 2000, "1")  # 82,000 characters
    pattern("arithmetic-long", "", "1234567890" * 4 + "+", 2500, "1", differs=INPUT)
    pattern("arithmetic-long", "", "((1+1)*(1+1))+", 1000, "1")

    # .count() in the string branch.
    add("count", "'strawberry'.count('r')", '"banana".count("an")', "'aaa'.count('')",
        "''.count('')", "'abc'.count('abc')", "'abc'.count('abcd')", "'Mississippi'.count('ss')",
        "'Mississippi'.lower().count('s')", "'aaaa'.count('aa')", "'abc'.count( 'a' )",
        "'abc' .count('a')", "'abc'.count ('a')", "'abc' . count ( 'a' )",
        "'abc'.count('a') ", "   'abc'.count('a')", "'abc'.count()", "'abc'.count(1)",
        "'abc'.count('a' 'b')", "'abc'.count(b'a')", "'abc'.count('a', 1)", "'a'.count",
        "'abc'.count('a')'", "count('a')", "'x'.count('x').count(1)", "'It s'.count(' ')",
        "'hello world'.count('o')", "'The quick brown fox'.lower().count('o')",
        "'A'.count('a')", "'aAaA'.count('A')", "'1,000'.count('0')", "'a,b,c'.count('')",
        "'a_b'.count('_')", "'a.b.c'.count('.')", "'(a)'.count('(')", "'x' 'y'.count('y')")

    # Literals: prefixes, quotes, implicit concatenation, numbers with letters.
    add("literals", T("'abc'"), T('"abc"'), T("'''a'b'''"), T('"""a"b"""'), T("'it''s'"),
        T("u'abc'"), T("U'abc'"), T("r'abc'"), T("R'abc'"), T("b'abc'"), T("B'abc'"),
        T("br'abc'"), T("Rb'abc'"), T("bR'abc'"), T("f'abc'"), T("F'abc'"), T("rf'abc'"),
        T("fR'abc'"), T("f''"), T("b''"), T("''"), T("f'a' 'b'"), T("'a' f'b'"),
        T("f'a' f'b'"), T("b'a' b'b'"), T("b'a' 'b'"), T("u'a' b'b'"), T("ub'a'"), T("bu'a'"),
        T("'a' 'b' 'c'"), T("1_000"), T("1__000"), T("1_"), T("0x1F"), T("0X1f"), T("0o17"),
        T("0b101"), T("0B1"), T("0777"), T("00"), T("1e3"), T("1E3"), T("1e"), T("1.5e2"),
        T("1e999"), T("1j"), T("1.5J"), T("1_0j"), T("0x"), T("0xg"), T("1.e2"), T("1if 1 else 2"),
        T("0x1for 1"), T("1else 2"), T("1or 2"), T("1and 2"), T("1in 'a'"), T("1is 1"),
        T("1not in 'a'"), T("True"), T("False"), T("None"), T("(None)"), T("(True)"),
        "'a'.count('a') and 1_000_000", "'a'.count('a') and 0o17 and 0b101",
        "True.real if '.count(' else 1", "'a'.count('a') and None", "'a'.count('a') and 1j",
        "'a'.count('a') and 1e999")

    # str methods (T(...) shows each result as nanochat prints it).
    for call in ["capitalize()", "casefold()", "center(9)", "center(-1)", "center('x')",
                 "count('b')", "encode()", "encode('utf_16')", "encode('utf_32')",
                 "encode('ascii')", "encode('latin1')", "encode('cp1252')", "encode('UTF8')",
                 "encode('utf_7')", "encode('idna')", "encode('punycode')", "encode('cp037')",
                 "encode('unicode_escape')", "encode('raw_unicode_escape')", "encode('big5')",
                 "encode('rot13')", "encode('rot_13')", "encode('base64')", "encode('zlib')",
                 "encode('hex')", "encode('nosuch')", "encode('utf_8_sig')", "encode('mbcs')",
                 "encode('undefined')", "endswith('c')", "endswith(())",
                 "endswith('abc'.partition('b'))", "expandtabs()", "expandtabs(4)", "find('c')",
                 "find('z')", "format()", "format('x')", "format_map('x')", "index('b')",
                 "index('z')", "isalnum()", "isalpha()", "isascii()", "isdecimal()", "isdigit()",
                 "isidentifier()", "islower()", "isnumeric()", "isprintable()", "isspace()",
                 "istitle()", "isupper()", "join('xyz')", "join('a b'.split())",
                 "join(c for c in 'xyz')", "join(b'ab')", "join(())", "ljust(6)", "lower()",
                 "lstrip()", "lstrip('a')", "maketrans('a')", "partition('b')", "partition('')",
                 "removeprefix('a')", "removesuffix('c')", "replace('a')", "rfind('b')",
                 "rindex('b')", "rjust(6)", "rpartition('b')", "rsplit()", "rsplit('b')",
                 "rstrip('c')", "split()", "split('b')", "split('')", "splitlines()",
                 "splitlines(True)", "startswith('a')", "strip()", "strip('ac')", "swapcase()",
                 "title()", "translate('ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz')",
                 "translate('a b'.split())", "translate(b'xyz')", "translate(())",
                 "translate(None)", "translate(1)", "upper()", "zfill(6)", "zfill(-3)",
                 "upper().lower().title()", "nosuch()", "upper", "upper()()",
                 "split().pop().upper()", "encode().decode()", "encode().hex()"]:
        add("str-methods", T(f"'abc'.{call}"))
    add("str-methods", T("'a b  c '.split()"), T("' a '.strip()"), T("'Hello World'.swapcase()"),
        T("'hello world'.title()"), T("'abc def'.capitalize()"),
        T("'x'.join('a b c'.split())"), T("'a1'.isalnum()"), T("'12'.isdigit()"),
        T("'ab cd'.split().count('cd')"), T("'abcabc'.rfind('b')"), T("'abc'.zfill(2)"),
        T("'a'.center(4)"), T("'aXbXc'.split('X')"), T("'a b'.partition(' ')"),
        T("'a'.encode('utf_16').decode('utf_16')"), T("'abc'.encode('utf_32').decode('latin1')"),
        T("'Strawberry'.casefold().count('r')"), T("'abc'.format_map(None)"),
        T("''.join('abc'.split('b'))"), T("'abc'.startswith('')"), T("'1_0'.isdecimal()"),
        T("'Abc'.istitle()"), T("'ABC'.isupper()"), T("'   '.isspace()"), T("''.isspace()"))

    # bytes methods.
    for call in ["capitalize()", "center(7)", "count(b'b')", "count(98)", "count('b')",
                 "decode()", "decode('utf_16')", "decode('latin1')", "decode('ascii')",
                 "decode('punycode')", "decode('idna')", "decode('unicode_escape')",
                 "decode('zlib')", "decode('nosuch')", "endswith(b'c')", "expandtabs(2)",
                 "find(b'c')", "find(99)", "fromhex('616263')", "fromhex('zz')", "hex()",
                 "hex('x')", "hex(b'x')", "hex(1)", "index(b'c')", "isalnum()", "isalpha()",
                 "isascii()", "isdigit()", "islower()", "isspace()", "istitle()", "isupper()",
                 "join(b'x y'.split())", "join(b'xy')", "join(c for c in b'xy')", "ljust(5)",
                 "lower()", "lstrip(b'a')", "maketrans(b'a')", "partition(b'b')",
                 "removeprefix(b'a')", "removesuffix(b'c')", "replace(b'a')", "rfind(b'a')",
                 "rindex(b'a')", "rjust(5)", "rpartition(b'b')", "rsplit()", "rstrip()",
                 "split()", "split(b'b')", "splitlines()", "startswith(b'a')", "strip()",
                 "swapcase()", "title()", "translate(None)", "translate(b'a')", "upper()",
                 "zfill(5)", "decode().count('a')", "encode()", "nosuch"]:
        add("bytes-methods", T(f"b'abc'.{call}"))
    add("bytes-methods", T("b'a b'.split().count(b'a')"), T("b'A'.lower()"),
        T("b'616263'.decode().encode()"), T("b''.join(())"), T("b'abc'.hex().count('6')"),
        T("b'aaaa'.decode('utf_16')"), T("b'aaaa'.decode('utf_16').encode('punycode')"),
        T("b'abc' in b'xabcx'"), T("98 in b'abc'"), T("'b' in b'abc'"), T("b'' in b''"))

    # int, bool, float and complex methods and attributes.
    for call in ["(5).bit_length()", "(5).bit_count()", "(5).conjugate()", "(5).real",
                 "(5).imag", "(5).numerator", "(5).denominator", "(5).as_integer_ratio()",
                 "(5).is_integer()", "(255).to_bytes()", "(255).to_bytes(1)", "(256).to_bytes(1)",
                 "(5).to_bytes(3)", "(5).to_bytes(0)", "(0).to_bytes(0)", "(0).from_bytes(b'ab')",
                 "(0).from_bytes(b'ab'.split())", "(0).from_bytes(c for c in b'ab')",
                 "(0).from_bytes('ab')", "(0).from_bytes(())", "5 .real", "5 .bit_length()",
                 "0x10.bit_length()", "True.real", "True.to_bytes()", "True.from_bytes(b'a')",
                 "True.from_bytes(b'')", "False.bit_length()", "True.conjugate()",
                 "True.numerator", "None.real", "1.5.hex()", "1.5.as_integer_ratio()",
                 "(1.0).fromhex('0x1p3')", "1.0.fromhex('0x1p99999')", "1.0.fromhex('zz')",
                 "1.5.is_integer()", "2.0.is_integer()", "1.5.real", "1.5.imag",
                 "1.5.conjugate()", "1e999.hex()", "1e999.as_integer_ratio()", "1j.real",
                 "1j.imag", "1j.conjugate()", "(1j).conjugate()", "1j.hex()", "1.real",
                 "1..real", "0.1.as_integer_ratio()", "1e308.hex()", "(9).to_bytes(1).decode()",
                 "(10).to_bytes(1).decode().splitlines()", "(31613).to_bytes(2).decode()",
                 "(0).from_bytes(b'abcdefghijklmnopqrstuvwxyz')"]:
        add("number-methods", T(call))

    # Lists (from split) and their methods; a generator's first item (send(None)) shows the
    # list after a mutating method.
    def after(op: str, words: str = "a b c") -> str:
        return T(f"(l.{op} or l for l in ('{words}'.split() for _ in 'x')).send(None)")

    add("list-methods", T("'a b c'.split().pop()"), T("'a b c'.split().pop(0)"),
        T("'a b c'.split().pop(5)"), T("'a b c'.split().pop('x')"), T("'a b c'.split().copy()"),
        T("'a b a'.split().count('a')"), T("'a b c'.split().index('b')"),
        T("'a b c'.split().index('z')"), T("'a b c'.split().reverse()"),
        T("'a b c'.split().sort()"), T("'a b c'.split().append('d')"),
        T("'a b c'.split().clear()"), T("'a b c'.split().extend('de')"),
        T("'a b c'.split().remove('a')"), T("'a b c'.split().remove('z')"),
        T("'a b c'.split().insert(0)"), T("'a b c'.split().nosuch()"),
        after("append('d')"), after("append(1)"), after("append(())"), after("append(b'x')"),
        after("extend('de')"), after("extend(b'de')"), after("extend(())"),
        after("extend(x for x in 'de')"), after("extend(1)"), after("reverse()"),
        after("sort()", "c a b"), after("remove('b')"), after("clear()"), after("pop()"),
        after("insert(0)"), after("extend(l)"), after("extend(l.copy())"),
        after("append(l.count('a'))"), after("sort()", "b a B A"),
        after("append(1) or l.sort()"), after("extend('xy') or l.sort()"),
        T("'a b'.split().count('a'.upper)"), T("'a b' in 'a b'.split()"),
        T("'a' in 'a b'.split()"), T("'c' not in 'a b'.split()"),
        T("'x'.join(''.join(w) for w in 'ab cd'.split())"))

    # Tuples and generators.
    add("tuples-generators", T("'abc'.partition('b').count('b')"),
        T("'abc'.partition('b').index('c')"), T("().count(1)"), T("().index(1)"),
        T("(1.5).as_integer_ratio().count(3)"), T("'abc'.partition('b').nosuch"),
        T("(c for c in 'abc').send(None)"), T("(c for c in 'abc').send('x')"),
        T("(c for c in 'abc').close()"), T("(c for c in '').send(None)"),
        T("(c for c in 'abc').throw(1)"), T("'b' in (c for c in 'abc')"),
        T("'z' in (c for c in 'abc')"), T("'z' not in (c for c in 'abc')"),
        T("(c for c in 'abc')"), T("'abc'.upper"), T("'abc'.count"), T("b'a'.hex"),
        T("(5).bit_length"), T("'a b'.split().pop"), T("(c for c in 'abc').send"),
        T("'a b'.split() if (c for c in 'x') else 0"),
        T("(l.append(l.pop) or l for l in ('a'.split() for _ in 'x')).send(None)"),
        T("(c for c in 'ab').gi_frame"))
    add("tuples-generators", T("(c for c in 'ab').gi_running"), differs=GENATTR)

    # not / and / or / conditional expressions / in / is.
    add("logic", "not 'abc'.count('d')", "not not 'abc'.count('d')", "not ''.count('')",
        "'abc'.count('z') or 'x'", "'abc'.count('z') or ''", "'abc'.count('a') or 'x'",
        "'abc'.count('z') and 'x'", "'abc'.count('a') and 'x' and 'y'",
        "'abc'.count('z') or 'abc'.count('y') or 'w'", "'' or '.count('", "'.count(' or 1",
        "'no' if 'abc'.count('z') else 'yes'", "'a' if 'b' if '.count(' else 'c' else 'd'",
        "'a' if '' else 'b' if '.count(' else 'c'", "'.count(' if None else 'x'",
        "'a' in 'abc' and '.count('", "'a' in 'abc' in 'abcd' and '.count('",
        "'z' in 'abc' in 'abcd' if '.count(' else 1", T("'a' in 'abc' in 'abcd'"),
        T("'ab' in 'abc' not in 'x'"), T("'a' not in 'abc'"), T("'a' is 'a'"),
        T("'a' is not 'b'"), T("None is None"), T("None is not None"), T("1 in 'abc'"),
        T("'a' in 1"), T("'a' in None"), T("() in ()"), T("'abc'.count('a') is 1"),
        T("not ()"), T("not ..."), T("not None"), T("not 0.0"), T("not b''"), T("not 0j"),
        T("'x' and ()"), T("() or ..."), T("... and 'a'.upper()"),
        T("'a' if 'a'.count('b') else 'b' if 'c'.count('d') else 'e'"),
        T("'a'.count('a') in 'a'.split()"), T("'a' in 'a'.split() is 'x'"),
        T("not 'a' in 'abc'"), T("not 'a' is 'b'"), T("'a' in 'abc' or 1 in 'x'"),
        T("'a' in 'xyz' and 1 in 'x'"), T("'a' in 'ab' in 'abc' in 'abcd' in 'abcde'"),
        T("not not not not ''"), T("(not 'a') is False"), T("'' is not ''"))

    # Generator expressions: scoping, laziness, targets.
    add("comprehensions", "''.join(x for x in 'abc' if x in 'ab').count('a')",
        T("''.join(x for x in 'abc' if x in 'ab' if x not in 'b')"),
        T("''.join(x for x in 'ab' for y in 'cd')"), T("''.join(y for x in 'ab' for y in 'cd')"),
        T("''.join(x for x in 'ab' for x in 'cd')"),
        T("''.join(''.join(x for y in 'ab') for x in 'cd')"),
        T("''.join(''.join(a for a in b) for b in 'ab cd'.split())"),
        T("''.join(y for x in 'ab')"), T("''.join(x for x in 'ab' if y for y in 'cd')"),
        T("''.join(x for x in x)"), T("''.join(x for x in 'ab' if x for y in x)"),
        T("(1 for a.b in '')"), T("''.join('x' for a.b in '') "), T("''.join('x' for a.b in 'ab')"),
        T("''.join('x' for () in 'a'.split('a'))"), T("''.join('x' for () in 'ab')"),
        T("''.join('x' for () in ((), ()))"), T("''.join('x' for () in ())"),
        T("(x for x in 5)"), T("(x for x in 'a' for y in 5) and 1"),
        T("''.join(x for x in 'a' for y in 5)"), T("(x async for x in 'a')"),
        T("((yield) for x in 'a')"), T("(yield)"), T("(await x for x in 'a')"),
        T("''.join(x.upper() for x in 'abc')"), T("''.join(x for x in 'a b c'.split())"),
        T("''.join(str(x) for x in 'abc')"), T("''.join(x for x in b'abc')"),
        T("b''.join(x for x in b'a b'.split())"), T("''.join((x for x in 'abc'))"),
        T("''.join(((x for x in 'abc')))"), T("''.join(x for x in 'abc' if 'b' not in x)"),
        T("''.join('y' if x in 'a' else x for x in 'abc')"),
        T("''.join(g.send(None) for g in ((c for c in w) for w in 'ab cd'.split()))"),
        T("''.join(''.join(g) for g in ((x for y in 'ab') for x in 'cd'))"),
        T("''.join(x for x in ''.join(y for y in 'abc'))"),
        T("(c for c in 'abc').send(None) if (c for c in 'x') else 0"),
        T("''.join(x for x in 'ab' if x if x if x)"), T("''.join(_ for _ in 'ab')"),
        T("''.join(match for match in 'ab')"), T("''.join(True for x in 'a')"),
        T("''.join(x for True in 'a')"), T("''.join(x for None in 'a')"),
        T("''.join(x for x in 'a' 'b')"), T("''.join(x for x in 'a' if x 'b')"),
        T("''.join(x for x in 'abc').count('b')"), T("''.join(print for x in 'a')"))
    add("comprehensions", "''.join('x' " + "for a in 'a' " * 25 + ").count('x')")

    # Identity: CPython merges equal constants and interns name-like strings.
    add("identity", *(T(e) for e in [
        "'a b'.split().pop() is 'b'", "'abc'.strip() is 'abc'", "'abc'.split().pop() is 'abc'",
        "''.join('abc'.split()) is 'abc'", "'a' is 'a'", "1000 is 1000", "1.5 is 1.5",
        "f'abc' is 'abc'", "b'ab' is b'ab'", "'ab'.upper() is 'AB'", "() is ()",
        "1.0.real is 1.0", "'a'.lower() is 'a'", "'A'.lower() is 'a'", "'x y'.split().pop() is 'y'",
        "'a b'.split() is 'a b'.split()", "'abc'.upper is 'abc'.upper", "'' is ''",
        "''.join('') is ''", "'a-b'.count('-') is 0", "'abc'.count('a') is 1",
        "'abc'.replace is 'abc'.replace", "'a c'.split().pop() is 'c'", "1j is 1j",
        "'ab cd'.split().pop() is 'cd'", "b'a b'.split().pop() is b'b'", "0x10 is 16",
        "'hello world'.split().pop() is 'world'", "'abc'.format() is 'abc'", "1e999 is 1e999",
        "'a'.strip() is 'a'", "'a b'.split().pop(0) is 'a b'.split().pop(0)",
        "'x'.join('a') is 'a'", "'abc'.lstrip('z') is 'abc'", "True.real is 1",
        "'a b'.split().pop() is 'a b'.split().pop()", "(5).conjugate() is 5",
        "'ab'.partition('b').count('b') is 1"]))

    # Expressions that raise (no result in nanochat either).
    add("errors", "'abc'.index('z') and '.count('", "'abc'.count('a') and print('x')",
        "len('abc'.count('a'))", "str.count('a' 'a')", "'abc'.count('a') and x",
        "'abc'.count(x)", "(lambda x x)('.count(')", "'abc'.count('a')(1)", "().count(1)()",
        "''.count('').bit_length(1)", "'abc'.count('a') if '' else y", "'a'.nosuch.count('a')",
        "'a'.upper.count('a')", "(c for c in 'ab').count('a')", "'abc'.count('a') is not",
        "'abc'.count('a') in", "not", "'a'.count('a'", "'a'.count('a'))", "'a.count('a')",
        "'abc'.count('a') 'b'", "'a'.count('a') if 'b'", "'a'.count('a') else 'b'",
        "b'\\x00'.count(b'')", "'abc'.count('a') and None.x", "'a'.count('a') and ....real",
        "'a'.count('a') and ()()", "'a'.count('a') and (1)(2)", "'a'.count('a') and 'b'()")

    # nanochat's filters: words and characters that stop evaluation.
    add("filters", "'import'.count('i')", "'__'.count('_')", "'a__b'.count('a')",
        "'Open'.count('O')", "'OPEN'.count('O')", "'directory'.count('d')", "'DIR'.count('D')",
        "'profile'.count('f')", "'evaluate'.count('e')", "'vars'.count('v')",
        "'getattr'.count('g')", "'hasattr'.count('h')", "'setattr'.count('s')",
        "'delattr'.count('d')", "'compile'.count('c')", "'exec'.count('e')",
        "'input'.count('i')", "'globals'.count('g')", "'locals'.count('l')",
        "'raw_input'.count('r')", "'fileno'.count('f')", "'reopen'.count('e')",
        "'a+b'.count('a')", "'a,b'.count(',')", "'a,b'.count('')", "'[1]'.count('1')",
        "'a'.count('a')+1", "'a'.count('a')-1", "'a'.count('a')*2", "'a'.count('a')/2",
        "'a\"b'.count('\"')", "'a'.count('a');1", "'%'.count('%')", "'{}'.count('{')",
        "'a:b'.count(':')", "'é'.count('é')", "'a\tb'.count('a')", "'a\\nb'.count('a')",
        "'a'.count('a')\n", "'abc'[0].count('a')", "'abc'[0:1].count('a')",
        "['a'].count('a')", "{'a'}.count('a')", "'a'.count('a') == 1", "'a'.count('a') < 2",
        "'a'.count('a') @ 1", "'a'.count('a') % 2", "~'a'.count('a')", "'a'.count(\\'a\\')",
        "'abc'.upper()", "'abc'.find('c')", "'.count('", "'.count( and x'", "x.count(",
        "x.count(y)", "'a'.count('a') # comment", "'a'.count('a') ** 2", "2**3",
        "'a' 'b'.count('a')", "1+1,", "1+1;")

    # Deep nesting (Python's compiler stops near 2,980 levels; we stop at 2,500).
    pattern("depth", "'a'", ".upper()", 1200, ".count('A')")
    pattern("depth", "'a'", ".upper()", 1300, ".count('A')", differs=DEPTH)
    pattern("depth", "'a'", ".upper()", 1600, ".count('A')")
    pattern("depth", "", "not ", 2400, "'a'.count('b')")
    pattern("depth", "", "not ", 2600, "'a'.count('b')", differs=DEPTH)
    pattern("depth", "", "not ", 3500, "'a'.count('b')")
    pattern("depth", "", "'a' if '' else ", 2400, "'a'.count('a')")
    pattern("depth", "", "'a' in ", 3000, "'a'.count('a')")  # flat comparison chain
    pattern("depth", "", "''.count('') and ", 3000, "'x'")  # flat boolean chain
    pattern("depth", "", "''.count('') or ", 3000, "'x'")
    pattern("depth", "", "(", 199, "'a'.count('a')" + ")" * 199)
    pattern("depth", "", "''.join(", 150, "'ab'" + ")" * 150 + ".count('a')")
    pattern("depth", "''.join(", "x for x in ''.join(", 60, "'ab'" + ")" * 61 + ".count('a')")

    # Sizes: what nanochat builds and where our caps refuse.
    add("limits", "'a'.zfill(999999).count('0')", "'a'.zfill(1000000).count('0')",
        "'a'.center(5000).count(' ')", "'ab'.ljust(999999).rjust(1000000).count(' ')",
        "(9).to_bytes(1).decode().expandtabs(8).count(' ')",
        "(1).to_bytes(1000000).count(b'')", "''.join(x for x in 'ab' for y in 'abcdefghij' "
        "for z in 'abcdefghij' for w in 'abcdefghij').count('a')",
        "''.join('x' for a in 'abcdefghij' for b in 'abcdefghij' for c in 'abcdefghij' "
        "for d in 'abcdefghij').count('x')",
        "'ab'.join('ab'.join('ab'.join('ab'.join('ab')))).count('a')")
    add("limits", "'a'.zfill(1000001).count('0')", "'a'.zfill(3000000).count('0')",
        "'x'.center(2000000).count(' ')", "(1).to_bytes(1000001).count(b'')",
        "(9).to_bytes(1).decode().expandtabs(2000000).count(' ')", differs=LENGTH)
    pattern("limits", "", "'ab'.join(", 12, "'ab'" + ")" * 12 + ".count('a')")
    pattern("limits", "", "'ab'.join(", 13, "'ab'" + ")" * 13 + ".count('a')", differs=LENGTH)
    hundred = "'" + "abcdefghij" * 10 + "'"
    add("limits", f"''.join('x' for a in {hundred} for b in {hundred}).count('x')")
    add("limits", f"''.join('x' for a in {hundred} for b in {hundred} for c in {hundred})"
        ".count('x')", differs=STEPS)
    thousand = "'" + "abcdefghij" * 100 + "'"
    add("limits", f"''.join('x' for a in {thousand} for b in {thousand} for c in {thousand})"
        ".count('x')")  # nanochat: its 3 s timeout
    add("limits", T("(l.extend(x for x in l) for l in ('a b'.split() for _ in 'x')).send(None)"))
    pattern("limits", "'", "a", 99000, "'.count('a')")
    pattern("limits", "'", "a", 150000, "'.count('a')", differs=INPUT)
    pattern("limits", "''.count('') and 0x", "f", 5000, "")  # 20,000-bit int: str() raises
    pattern("limits", "''.count('') and (0).from_bytes(b'", "a", 5000, "').bit_length()")
    pattern("limits", "b'", "a", 3000, "'.decode('utf_16').encode('punycode').count(b'a')")
    pattern("limits", "b'", "a", 6000, "'.decode('utf_16').encode('punycode').count(b'a')",
            differs=CODEC)
    add("limits", "(31613).to_bytes(2).decode().format_map('x').count('x')")
    add("limits", "(31613).to_bytes(2).decode().format('x').count('x')",
        "(31613).to_bytes(2).decode().format(b'x').count('x')", differs=FORMAT)
    add("limits", T("(l.append(l) or l.count(l) for l in ('a'.split() for _ in 'x')).send(None)"),
        T("(l.append(l.copy()) or l.count('a') for l in ('a'.split() for _ in 'x')).send(None)"),
        differs=NESTED)

    unique: dict[str, dict] = {}
    for case in cases:
        unique.setdefault(expand(case), case)
    return list(unique.values())


def expand(case: dict) -> str:
    if "expr" in case:
        return case["expr"]
    prefix, unit, count, suffix = case["pattern"]
    return prefix + unit * count + suffix


def blob_sha(path: Path) -> str:
    data = path.read_bytes()
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


BENCH = {
    "count": "'strawberry'.count('r')",
    "arithmetic": "(2+3)*4 - 1,000/8",
    "sum-2000": "123+" * 2000 + "4",
    "genexpr-1e4": "''.join('x' for a in {h} for b in {h}).count('x')".format(
        h="'" + "abcdefghij" * 10 + "'"),
    "genexpr-1e6": "''.join('x' for a in {h} for b in {h} for c in {h}).count('x')".format(
        h="'" + "abcdefghij" * 10 + "'"),
    "genexpr-1e9": "''.join('x' for a in {t} for b in {t} for c in {t}).count('x')".format(
        t="'" + "abcdefghij" * 100 + "'"),
}


def bench(use_calculator, runs: int) -> None:
    """Ours against nanochat's, side by side: alternating runs, medians, printed as JSON."""
    import statistics

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from nanochat_core.calculator import calculate

    def timed(fn, expr: str) -> float:
        t0 = time.perf_counter()
        fn(expr)
        return time.perf_counter() - t0

    rows = {}
    for name, expr in BENCH.items():
        ours, theirs = [], []
        for _ in range(runs):
            ours.append(timed(calculate, expr))
            theirs.append(timed(use_calculator, expr))
        result = use_calculator(expr)
        rows[name] = {"ours_s": statistics.median(ours), "nanochat_s": statistics.median(theirs),
                      "ratio": statistics.median(ours) / statistics.median(theirs),
                      "ours": calculate(expr), "nanochat": None if result is None else str(result)}
    print(json.dumps({"python": platform.python_version(), "runs": runs, "cases": rows}, indent=1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nanochat", required=True, type=Path, help="a nanochat checkout")
    parser.add_argument("--commit", help="the checkout's commit (default: git rev-parse HEAD)")
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--bench", action="store_true", help="time ours against nanochat's")
    parser.add_argument("--runs", type=int, default=5, help="runs per --bench case")
    args = parser.parse_args()

    engine_py = args.nanochat / "nanochat" / "engine.py"
    commit = args.commit
    if commit is None:
        commit = subprocess.run(["git", "-C", str(args.nanochat), "rev-parse", "HEAD"],
                                capture_output=True, text=True, check=True).stdout.strip()
    sys.path.insert(0, str(args.nanochat))
    # nanochat's real function, run in this (the main) thread.
    from nanochat.engine import use_calculator

    if args.bench:
        bench(use_calculator, args.runs)
        return

    results = []
    started = time.time()
    for case in corpus():
        expr = expand(case)
        t0 = time.perf_counter()
        value = use_calculator(expr)
        seconds = time.perf_counter() - t0
        entry = dict(case)
        if value is None:
            entry["nanochat"] = None
        else:
            try:
                entry["nanochat"] = str(value)
            except ValueError as e:  # the engine's str(result) raises outside any try
                entry["nanochat"] = None
                entry["nanochat_engine_raises"] = f"{type(e).__name__}: {e}"
        if entry["nanochat"] is not None and ADDRESS.search(entry["nanochat"]):
            entry["differs"] = "its text shows a memory address (differs from run to run)"
        if "differs" in case and entry["nanochat"] is None:
            print(f"note: nanochat gave no result for a case marked as differing: {expr[:80]}",
                  file=sys.stderr)
        if seconds > 1:
            entry["nanochat_seconds"] = round(seconds, 1)
        results.append(entry)

    about = {
        "what": "nanochat's use_calculator(expr) for each expression, as its engine forces it: "
                "str(result), or null for no result",
        "nanochat_commit": commit,
        "nanochat_engine_py_blob": blob_sha(engine_py),
        "python": platform.python_version(),
        "int_max_str_digits": sys.get_int_max_str_digits(),
        "made_by": "scripts/make_calculator_reference.py --nanochat <checkout> --commit "
                   f"{commit} (imports nanochat.engine from the checkout; main thread)",
        "made_on": datetime.date.today().isoformat(),
        "seconds": round(time.time() - started, 1),
        "fields": {
            "expr / pattern": "the expression; a pattern [prefix, unit, count, suffix] means "
                              "prefix + unit * count + suffix",
            "nanochat": "what the engine would force, or null",
            "differs": "why our calculator deliberately gives no result here",
            "nanochat_engine_raises": "use_calculator returned a value whose str() raises",
        },
    }
    args.out.write_text(json.dumps({"about": about, "cases": results}, indent=1,
                                   ensure_ascii=False) + "\n")
    print(f"{len(results)} cases -> {args.out}")


if __name__ == "__main__":
    main()
