"""The command line as a user runs it: real processes, real checkpoints on disk."""

from __future__ import annotations

import json
import os
import re
import pty
import select
import subprocess
import sys
import time

import pytest
from conftest import FIXTURES, cli_command, cli_env

GEN5 = FIXTURES / "gen5-smear-backout"


def run(args, stdin_text=None, timeout=120, **env):
    return subprocess.run(cli_command() + list(args), input=stdin_text, capture_output=True,
                          text=True, timeout=timeout, env=cli_env(**env))


def test_help_imports_neither_torch_nor_textual():
    code = ("import sys\nfrom nanochat_tui.cli import main\n"
            "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
            "bad = [m for m in ('torch', 'textual', 'aiohttp') if m in sys.modules]\n"
            "print('IMPORTED', bad)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert "usage: nanochat-tui" in out.stdout
    assert "IMPORTED []" in out.stdout
    for flag in ("--prompt", "--plain", "--web", "--model-dir", "--softcap", "--system", "--seed",
                 "--device-type", "--dtype", "--top-k", "--max-tokens", "--temperature", "--source"):
        assert flag in out.stdout


def test_prompt_and_web_modes_do_not_import_textual():
    code = ("import sys\nimport nanochat_tui.cli, nanochat_tui.oneshot, nanochat_tui.plain\n"
            "print('textual' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "False"


def test_web_help_says_p_is_port():
    out = run(["--web", "--help"])
    assert out.returncode == 0 and "-p PORT, --port PORT" in out.stdout


def test_one_shot_gives_nanochats_answer_on_stdout_only():
    """Temperature 0: stdout is exactly the engine's reply (fidelity itself is test_fidelity's
    job), and every notice goes to stderr."""
    from nanochat_core import load_chat_model
    from nanochat_core.chat import SamplingParams

    m = load_chat_model(base_dir=GEN5 / "base_dir")
    want = m.reply([{"role": "user", "content": "Why keep a cache?"}], SamplingParams(temperature=0, max_tokens=40))
    out = run(["--model-dir", str(GEN5 / "base_dir"), "-t", "0", "-m", "40", "--prompt", "Why keep a cache?"])
    assert out.returncode == 0, out.stderr
    assert out.stdout == want + "\n"
    assert "gen5-smear-backout" in out.stderr and "tok/s" in out.stderr


def test_prompt_from_stdin_and_system_message():
    args = ["--model-dir", str(GEN5 / "base_dir"), "-t", "0", "-m", "8"]
    a = run(args + ["--prompt", "-"], stdin_text="hello there")
    b = run(args + ["--prompt", "hello there"])
    assert a.returncode == 0 and a.stdout == b.stdout
    c = run(args + ["--prompt", "hello there", "--system", "Be terse."])
    assert c.returncode == 0 and c.stdout != b.stdout  # the system text reached the model


@pytest.mark.parametrize("flags, words", [
    (["-t", "3"], "Temperature must be between 0.0 and 2.0 (-t/--temperature)"),
    (["-k", "500"], "top-k must be between 0 and 200 (-k/--top-k)"),
    (["-m", "0"], "max tokens must be between 1 and 4096 (-m/--max-tokens)"),
    (["-t", "warm"], "Temperature must be a number, not 'warm' (-t/--temperature)"),
])
def test_bad_sampling_flags_exit_2_with_rulebook_words(flags, words):
    """The rulebook's words, with the flag named instead of the web API's field (top_k)."""
    out = run(flags + ["--prompt", "hi"])
    assert out.returncode == 2
    assert out.stderr.strip() == f"nanochat-tui: error: {words}"


def test_empty_and_oversized_prompts_use_rulebook_words():
    out = run(["--prompt", ""])
    assert out.returncode == 2 and out.stderr == "nanochat-tui: error: Message 0 has empty content (your message)\n"
    out = run(["--prompt", "x" * 8001])
    assert out.returncode == 2 and "Message 0 is too long. Maximum 8000 characters allowed per message" in out.stderr


def test_explicit_missing_checkpoint_is_one_line_exit_2(tmp_path):
    (tmp_path / "chatsft_checkpoints" / "d4").mkdir(parents=True)
    (tmp_path / "chatsft_checkpoints" / "d4" / "model_000010.pt").write_bytes(b"")
    out = run(["--model-dir", str(tmp_path), "-g", "d12", "--prompt", "hi"])
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "d12" in lines[0] and "d4" in lines[0]
    out = run(["--model-dir", str(tmp_path), "-s", "99", "--prompt", "hi"])
    assert out.returncode == 2 and "steps present: 10" in out.stderr


def test_broken_file_is_one_line_exit_2_and_debug_shows_traceback(copy_fixture):
    base = copy_fixture()
    (base / "chatsft_checkpoints/d4/meta_000700.json").write_text("{oops")
    out = run(["--model-dir", str(base), "--prompt", "hi"])
    assert out.returncode == 2 and len(out.stderr.strip().splitlines()) == 1
    assert "Traceback" not in out.stderr
    out = run(["--model-dir", str(base), "--prompt", "hi", "--debug"])
    assert out.returncode != 0 and "Traceback" in out.stderr


def test_demo_fallback_is_announced(tmp_path):
    out = run(["--prompt", "hi", "-m", "5"], NANOCHAT_BASE_DIR=str(tmp_path))
    assert out.returncode == 0, out.stderr
    assert f"no checkpoints in {tmp_path}; using the bundled demo model (" in out.stderr


def test_one_shot_calculator_note_goes_to_stderr_on_its_own_line(tmp_path):
    out = run(["--prompt", "what is 37*12?", "-t", "0"], NANOCHAT_BASE_DIR=str(tmp_path))
    assert out.returncode == 0, out.stderr
    assert out.stdout.endswith("444.\n") and "[calculator" not in out.stdout  # the reply only
    lines = out.stderr.splitlines()
    assert "[calculator: 37*12 = 444]" in lines
    assert re.match(r"\d+ tokens? · ", lines[-1])  # the summary starts a line of its own


def test_softcap_override_changes_logits_path():
    base = FIXTURES / "gen3-softcap20" / "base_dir"
    a = run(["--model-dir", str(base), "-t", "0", "-m", "12", "--prompt", "hello"])
    b = run(["--model-dir", str(base), "-t", "0", "-m", "12", "--prompt", "hello", "--softcap", "20"])
    assert a.returncode == b.returncode == 0
    assert "softcap 15" in a.stderr and "softcap 20" in b.stderr


def test_plain_mode_flow():
    script = "hello\n\nclear\nhow are you\nquit\n"
    out = run(["--plain", "--model-dir", str(GEN5 / "base_dir"), "-t", "0", "-m", "5"], stdin_text=script)
    assert out.returncode == 0, out.stderr
    # stdin is not a terminal: the transcript's prompts go to stderr, stdout holds the replies only
    assert out.stderr.count("Assistant: ") == 2  # the empty line was skipped
    assert "Conversation cleared." in out.stderr
    assert out.stderr.rstrip().endswith("Goodbye!")
    assert "User:" not in out.stdout and "Assistant:" not in out.stdout
    assert len(out.stdout.strip().splitlines()) >= 1


def test_plain_mode_is_automatic_without_a_terminal_and_eof_says_goodbye():
    out = run(["--model-dir", str(GEN5 / "base_dir"), "-m", "3"], stdin_text="hi\n")
    assert out.returncode == 0
    assert "User: " in out.stderr and "Assistant: " in out.stderr
    assert out.stderr.rstrip().endswith("Goodbye!")


def _run_in_pty(args, timeout=60) -> str:
    pid, fd = pty.fork()
    if pid == 0:  # child
        env = cli_env()
        os.execvpe(cli_command()[0], cli_command() + args, env)
    chunks, deadline = [], time.time() + timeout
    while time.time() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.5)
        if ready:
            try:
                data = os.read(fd, 65536)
            except OSError:
                break
            if not data:
                break
            chunks.append(data)
    os.waitpid(pid, 0)
    return b"".join(chunks).decode("utf-8", "replace")


def test_terminal_output_cannot_carry_escape_sequences():
    """A fixture's random model answers 'x' with an ESC (0x1b): on a terminal it is made visible."""
    from nanochat_core import load_chat_model
    from nanochat_core.chat import SamplingParams

    base = FIXTURES / "gen3-proto-lowrank-ve" / "base_dir"
    raw = load_chat_model(base_dir=base).reply([{"role": "user", "content": "x"}],
                                               SamplingParams(temperature=0, max_tokens=200))
    assert "\x1b" in raw  # precondition: the reply really carries an escape character
    out = _run_in_pty(["--model-dir", str(base), "-t", "0", "-m", "200", "--prompt", "x"])
    assert "tok/s" in out  # the run completed
    assert "\x1b" not in out and "^[" in out


def test_bench_prints_json_last_line():
    out = run(["bench", "--model-dir", str(GEN5 / "base_dir"), "--prompt-tokens", "32",
               "--decode-tokens", "8", "--naive"])
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout.strip().splitlines()[-1])
    for key in ("ttft_ms", "decode_tok_s", "prompt_tokens", "decode_tokens", "batch_size", "device",
                "dtype", "params", "weight_bytes", "naive_decode_tok_s"):
        assert key in result
    assert result["prompt_tokens"] == 32 and result["decode_tokens"] == 8 and result["decode_tok_s"] > 0


def test_bench_batch_and_random_model():
    out = run(["bench", "--random", "d2:128:512", "--prompt-tokens", "16", "--decode-tokens", "4",
               "--batch-size", "3"])
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["batch_size"] == 3 and result["n_layer"] == 2


def test_ctrl_c_stops_a_one_shot_reply_and_keeps_the_partial_text(tmp_path):
    import signal

    from nanochat_core.synthetic import write_random_checkpoint

    write_random_checkpoint(tmp_path, "d6:384:8192")  # random weights: it rarely stops by itself
    proc = subprocess.Popen(cli_command() + ["--model-dir", str(tmp_path), "-m", "4000", "--prompt", "hi"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=cli_env())
    # wait until the reply has started streaming (its first bytes on stdout), then press Ctrl+C
    first = b""
    deadline = time.monotonic() + 60
    while not first.strip() and time.monotonic() < deadline:
        ready, _, _ = select.select([proc.stdout], [], [], 0.5)
        if ready:
            chunk = os.read(proc.stdout.fileno(), 4096)
            assert chunk, "the process ended before its reply streamed"
            first += chunk
    assert first.strip(), "no reply text within 60 s"
    assert proc.poll() is None, "the reply ended before Ctrl+C could be tested"
    proc.send_signal(signal.SIGINT)
    rest, err = proc.communicate(timeout=30)
    err = err.decode("utf-8", "replace")
    assert proc.returncode == 130, err
    assert "stopped" in err and "Traceback" not in err


def test_bad_command_lines_are_one_line_from_main(capsys):
    """argparse's own errors go through main(): one `nanochat-tui: error:` line, exit 2."""
    from nanochat_tui.cli import main

    for argv in (["--no-such-flag"], ["-t"], ["bench", "--decode-tokens", "x"],
                 ["export"], ["--web", "-p", "port"], ["-i", "pretrain"]):
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith("nanochat-tui: error: "), (argv, err)


def test_version_and_terminal_default_max_tokens(capsys):
    from nanochat_tui.cli import build_chat_parser, build_web_parser, main

    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0
    assert re.fullmatch(r"nanochat-tui \d+\.\d+\.\d+\S*\n", capsys.readouterr().out)
    # terminal modes answer with at most 256 tokens as nanochat's chat_cli; the web server 512
    assert build_chat_parser().parse_args([]).max_tokens == "256"
    assert build_web_parser().parse_args(["--web"]).max_tokens == "512"
    assert "default: 256, as nanochat's chat_cli" in " ".join(build_chat_parser().format_help().split())


def test_only_a_non_default_model_choice_turns_off_the_demo_fallback():
    from nanochat_tui.cli import build_chat_parser
    from nanochat_tui.cli_options import selection_from

    parse = build_chat_parser().parse_args
    assert not selection_from(parse([])).explicit
    assert not selection_from(parse(["-i", "sft"])).explicit  # the default, said out loud
    assert selection_from(parse(["-i", "rl"])).explicit
    assert selection_from(parse(["-i", "mid"])).source == "mid"
    assert selection_from(parse(["-g", "d20"])).explicit
