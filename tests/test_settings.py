"""The settings file (nanochat_tui/settings.py) and `nanochat-tui config` (config_cli.py): a real
TOML file on disk, the real CLI in-process (cheap) and once as a process (the error line)."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import tomllib

import pytest
from conftest import FIXTURES, cli_command, cli_env

from nanochat_tui import cli
from nanochat_tui import settings as settings_file
from nanochat_tui.settings import Settings, SettingsError

GEN5 = FIXTURES / "gen5-smear-backout" / "base_dir"


@pytest.fixture
def home(tmp_path, monkeypatch):
    """A NANOCHAT_TUI_HOME of its own: config.toml and history.sqlite3 live there."""
    monkeypatch.setenv("NANOCHAT_TUI_HOME", str(tmp_path))
    return tmp_path


def write(home, text: str):
    path = home / "config.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_no_file_means_defaults(home):
    assert settings_file.load() == Settings()


def test_every_key_is_read_and_checked_by_the_rulebook(home):
    write(home, 'temperature = 0.3\ntop_k = 7\nmax_tokens = 99\nsystem = "Be brief."\n'
                'model_dir = "~/models"\nmodel_dirs = ["~/a", "/b"]\ntheme = "nord"\nhistory = false\n')
    s = settings_file.load()
    assert (s.temperature, s.top_k, s.max_tokens, s.system, s.theme, s.history) == (0.3, 7, 99, "Be brief.", "nord", False)
    assert s.model_dir == os.path.expanduser("~/models") and s.model_dirs == (os.path.expanduser("~/a"), "/b")
    assert s.path == home / "config.toml"


@pytest.mark.parametrize("text, words", [
    ("top_k = 300", "top_k: top-k must be between 0 and 200"),
    ("temperature = 5", "temperature: Temperature must be between 0.0 and 2.0"),
    ("max_tokens = 2.5", "max_tokens: max tokens must be an integer"),
    ('temperature = "hot"', "temperature: Temperature must be a number"),
    ("history = 1", "history: must be true or false"),
    ('model_dirs = "~/x"', 'model_dirs: must be a list of folders'),
    ("temprature = 0.5", "unknown key 'temprature' (known keys: temperature, top_k"),
    ("temperature = = 1", "not valid TOML: "),
])
def test_a_bad_file_is_one_line_naming_the_key(home, text, words):
    write(home, text + "\n")
    with pytest.raises(SettingsError) as caught:
        settings_file.load()
    message = str(caught.value)
    assert "\n" not in message and message.startswith(str(home / "config.toml") + ": ") and words in message


def test_saving_a_key_keeps_comments_and_other_keys(home):
    path = write(home, '# my settings\ntemperature = 0.3  # cool\nsystem = """two\nlines"""\n\n[extra]\n')
    # ([extra] is a table this version does not know: keep it out of the check for this test)
    path.write_text(path.read_text().replace("\n[extra]\n", "\n"))
    settings_file.save_values({"theme": "nord", "system": "one line", "temperature": 0.7})
    text = path.read_text()
    assert text.startswith("# my settings\n")
    data = tomllib.loads(text)
    assert data == {"temperature": 0.7, "system": "one line", "theme": "nord"}
    settings_file.save_values({"system": None})  # None removes a key
    assert "system" not in tomllib.loads(path.read_text())


def test_saving_creates_the_commented_template(home):
    settings_file.save_values({"theme": "gruvbox"})
    text = (home / "config.toml").read_text()
    assert "# temperature = 0.6" in text and tomllib.loads(text) == {"theme": "gruvbox"}


def _config_seen(monkeypatch, argv):
    """The ChatConfig the CLI builds for a -p run (the one-shot itself is not run)."""
    seen = {}

    def fake_oneshot(config, prompt):
        seen["config"] = config
        return 0

    import nanochat_tui.oneshot as oneshot

    monkeypatch.setattr(oneshot, "run_oneshot", fake_oneshot)
    assert cli.main(argv) == 0
    return seen["config"]


def test_the_file_gives_defaults_and_flags_win(home, monkeypatch):
    write(home, 'temperature = 0.3\ntop_k = 7\nmax_tokens = 99\nsystem = "From the file."\n'
                f'model_dir = "{GEN5}"\ntheme = "nord"\nhistory = false\n')
    config = _config_seen(monkeypatch, ["-p", "hi"])
    assert (config.sampling.temperature, config.sampling.top_k, config.sampling.max_tokens) == (0.3, 7, 99)
    assert config.system == "From the file." and config.model.base_dir == str(GEN5)
    assert config.theme == "nord" and not config.history.enabled
    config = _config_seen(monkeypatch, ["-p", "hi", "-t", "0.9", "-k", "0", "-m", "5", "--system", "Flag.",
                                        "--model-dir", "/elsewhere"])
    assert (config.sampling.temperature, config.sampling.top_k, config.sampling.max_tokens) == (0.9, 0, 5)
    assert config.system == "Flag." and config.model.base_dir == "/elsewhere"
    # a flag that needs saved conversations turns history on for this run
    assert _config_seen(monkeypatch, ["-p", "hi", "-c"]).history.enabled
    # the file's model folder is never next to --server (which would refuse a local checkpoint flag)
    config = _config_seen(monkeypatch, ["-p", "hi", "--server", "http://127.0.0.1:9/v1"])
    assert config.model.server == "http://127.0.0.1:9/v1" and config.model.base_dir is None


def test_a_bad_file_stops_the_chat_modes_with_one_line_but_not_help_or_config(home, capsys):
    write(home, "top_k = 300\n")
    assert cli.main(["-p", "hi"]) == 2
    err = capsys.readouterr().err
    assert err == f"nanochat-tui: error: {home / 'config.toml'}: top_k: top-k must be between 0 and 200\n"
    with pytest.raises(SystemExit):
        cli.main(["--help"])
    assert "usage: nanochat-tui" in capsys.readouterr().out
    assert cli.main(["config", "path"]) == 0
    assert capsys.readouterr().out.strip() == str(home / "config.toml")


def test_config_show_says_what_applies_and_where_from(home, capsys):
    assert cli.main(["config", "show"]) == 0
    out = capsys.readouterr().out
    assert "not created yet" in out and "# temperature = 0.6  # default" in out
    write(home, "max_tokens = 77\n")
    assert cli.main(["config", "show"]) == 0
    out = capsys.readouterr().out
    assert "max_tokens = 77  # set in the file" in out and "# top_k = 50  # default" in out


def _editor(tmp_path, body: str):
    script = tmp_path / "fake-editor"
    script.write_text(f"#!/bin/sh\n{body}\n")
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return str(script)


def test_config_edit_creates_the_template_opens_the_editor_and_checks_the_result(home, tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("VISUAL", raising=False)
    monkeypatch.setenv("EDITOR", _editor(tmp_path, 'cp "$1" "$1.seen"; echo "top_k = 9" >> "$1"'))
    assert cli.main(["config", "edit"]) == 0
    assert (home / "config.toml.seen").read_text() == settings_file.TEMPLATE  # the editor got the template
    assert settings_file.load().top_k == 9
    assert "is valid" in capsys.readouterr().err
    # a mistake made in the editor is reported at once, naming the key
    monkeypatch.setenv("EDITOR", _editor(tmp_path, 'echo "theme = 3" >> "$1"'))
    assert cli.main(["config", "edit"]) == 2
    assert "theme: must be a string" in capsys.readouterr().err
    monkeypatch.setenv("EDITOR", _editor(tmp_path, "exit 3"))
    assert cli.main(["config", "edit"]) == 2
    assert "exited with status 3" in capsys.readouterr().err


def test_the_real_cli_prints_one_error_line_for_a_bad_file(tmp_path):
    (tmp_path / "config.toml").write_text("max_tokens = 0\n")
    out = subprocess.run(cli_command() + ["-p", "hi"], capture_output=True, text=True, timeout=60,
                         env=cli_env(NANOCHAT_TUI_HOME=str(tmp_path)))
    assert out.returncode == 2 and out.stdout == ""
    assert out.stderr == (f"nanochat-tui: error: {tmp_path / 'config.toml'}: max_tokens: "
                          "max tokens must be between 1 and 4096\n")


def test_settings_module_keeps_textual_and_torch_out():
    code = "import sys\nimport nanochat_tui.settings, nanochat_tui.config_cli\nprint(sorted(m for m in ('torch', 'textual') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "[]", out.stderr


def test_an_unknown_theme_in_the_file_stops_the_full_screen_app_with_one_line(home):
    from nanochat_tui.app import _check_theme

    _check_theme("nord")  # a built-in theme is fine
    with pytest.raises(SettingsError) as caught:
        _check_theme("plaid")
    assert str(caught.value).startswith(f"{home / 'config.toml'}: theme: no theme 'plaid' (choose one of ")
