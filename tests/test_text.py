from nanochat_core.text import sanitize_for_terminal


def test_control_sequences_are_made_visible():
    evil = "ok\x1b[2J\x1b]0;pwned\x07 done\x9b"
    clean = sanitize_for_terminal(evil)
    assert "\x1b" not in clean and "\x07" not in clean and "\x9b" not in clean
    assert clean.startswith("ok^[[2J^[]0;pwned^G done")


def test_newlines_tabs_and_unicode_kept():
    text = "line 1\n\tline 2 ✓ 🎉"
    assert sanitize_for_terminal(text) == text
    assert sanitize_for_terminal("a\r\nb\rc") == "a\nb\nc"


def test_bidirectional_controls_are_shown_not_applied():
    for code in [*range(0x202A, 0x202F), *range(0x2066, 0x206A)]:
        shown = sanitize_for_terminal(f"a{chr(code)}b")
        assert shown == f"a<U+{code:04X}>b"
    # ordinary right-to-left text is text, not a control
    assert sanitize_for_terminal("שלום") == "שלום"


def test_one_line_escapes_newlines_and_is_idempotent():
    from nanochat_core.text import one_line

    evil = "first\nsecond\tthird\r\x1b]52;c;cm0gLXJmIH4=\x07\u202e\ud800"
    line = one_line(evil)
    assert line == "first\\nsecond\\tthird\\r^[]52;c;cm0gLXJmIH4=^G<U+202E>\ufffd"
    assert one_line(line) == line and sanitize_for_terminal(line) == line
    line.encode("utf-8")  # no lone surrogate left: writable to any UTF-8 stream
    assert one_line("x" * 50, limit=10) == "x" * 9 + "…"


def test_log_records_are_one_sanitized_line():
    import io
    import logging

    from nanochat_core.text import SafeLogFormatter

    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(SafeLogFormatter("%(message)s"))
    logger = logging.getLogger("test.safe.formatter")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        logger.warning("[%s]: %s", "USER", "hi\x1b]0;title\x07\nrm -rf ~\x1b[2K\r")
    finally:
        logger.removeHandler(handler)
    assert stream.getvalue() == "[USER]: hi^[]0;title^G\\nrm -rf ~^[[2K\\r\n"
