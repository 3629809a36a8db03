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
