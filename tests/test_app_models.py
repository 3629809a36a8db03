"""Switching models in the full-screen app (issue 13 item 5): the picker (`/model` and the
palette, one registry entry) lists what `nanochat-tui models` lists, loads the chosen checkpoint
on a worker thread, and the conversation carries over, re-read with the new model's tokenizer.
Real checkpoints on disk: the gen5 fixture and the bundled demo model (another tokenizer)."""

from __future__ import annotations

import shutil
import threading

import pytest
from app_helpers import SIZE, bubbles, enter, make_app, notices, replies, screen_text, send, wait_for
from conftest import FIXTURES
from fake_backend import FakeBackend

from nanochat_core import catalog
from nanochat_core.catalog import demo_entries, list_models, load_entry
from nanochat_core.chat import Message, SamplingParams
from nanochat_core.events import Done
from nanochat_tui.chat_session import model_identity
from nanochat_tui.config import ModelSelection
from nanochat_tui.widgets import ModelPickerScreen

GEN5 = FIXTURES / "gen5-smear-backout" / "base_dir"
GREEDY = SamplingParams(temperature=0.0, top_k=50, max_tokens=12, seed=42)


@pytest.fixture
def no_hub_cache(tmp_path, monkeypatch):
    """The list holds only the test's folders and the demo model (never the user's HF cache)."""
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-hf-cache"))


async def open_picker(pilot) -> ModelPickerScreen:
    app = pilot.app
    await wait_for(pilot, lambda: isinstance(app.screen, ModelPickerScreen) and app.screen.entries is not None,
                   what="the model list")
    await pilot.pause()
    return app.screen


async def test_switching_mid_conversation_keeps_it_and_the_new_model_answers(load_fixture, no_hub_cache, tmp_path):
    a = load_fixture("gen5-smear-backout")
    app = make_app(a, home=tmp_path, sampling=GREEDY, model=ModelSelection(base_dir=str(GEN5), device_type="cpu"))
    async with app.run_test(size=SIZE) as pilot:
        await send(pilot, "Hello there")
        first = app.conversation.last
        assert first.tokenizer == a.tokenizer_id and first.text

        # /model: what `nanochat-tui models` lists, the model in use marked, the demo model last
        await enter(pilot, "/model")
        picker = await open_picker(pilot)
        assert [e.model_path for e in picker.entries] == [e.model_path for e in list_models(GEN5)]
        assert len(picker.entries) == 2 and picker.entries[-1].is_demo
        text = screen_text(app)
        assert "● 1" in text and "(demo model)" in text
        await pilot.press("escape")  # cancels: nothing changes
        await wait_for(pilot, lambda: app.screen is app.screen_stack[0], what="the picker to close")
        assert app.backend is a and app.conversation.model == model_identity(a)

        # the palette opens the same picker; typing filters, Enter loads the highlighted row
        await pilot.press("ctrl+p")
        await pilot.press(*"another checkpoint")
        await pilot.pause(0.3)
        await pilot.press("enter")
        picker = await open_picker(pilot)
        await pilot.press(*"demo")
        await wait_for(pilot, lambda: len(picker.shown) == 1, what="the filter")
        await pilot.press("enter")
        await wait_for(pilot, lambda: app.backend is not a, timeout=60, what="the demo model to load")
        b = app.backend
        assert b.info.is_demo and b.tokenizer_id != a.tokenizer_id
        assert app.conversation.model == model_identity(b)  # the conversation records who answers now
        assert notices(app)[-1] == (f"Switched to {b.info.describe()} · the conversation carries over "
                                    "(2 messages, re-read with its tokenizer)")
        assert app.status.text.startswith(f"Ready · {b.info.short_name}")

        await send(pilot, "And now?")
        assert bubbles(app) == ["Hello there", "And now?"]  # the earlier messages are still shown
        assert [r.node_id for r in replies(app)] == [first.id, app.conversation.last.id]
        second = app.conversation.last

    # The second reply is B's answer to the whole conversation rendered with B's tokenizer: the
    # first reply's ids (A's tokenizer) were re-encoded from its text.
    ref = load_entry(demo_entries()[0], device="cpu")
    messages = [Message("user", "Hello there"), Message("assistant", first.text), Message("user", "And now?")]
    request = app.conversation.copy()
    request.rewind(second.parent)
    assert request.prompt_ids(ref.tokenizer, tokenizer_id=ref.tokenizer_id) == ref.render(messages)
    end = ref.tokenizer.special("<|assistant_end|>")
    assert list(first.token_ids) != ref.tokenizer.encode(first.text) + [end]  # (so reusing A's ids would show)
    done = next(e for e in ref.chat(messages, GREEDY) if isinstance(e, Done))
    closed = tuple(done.token_ids) + (() if done.token_ids[-1] == end else (end,))  # (as the history keeps it)
    assert (second.text, second.token_ids, second.tokenizer) == (done.text, closed, ref.tokenizer_id)


async def test_a_failing_switch_is_one_line_and_the_model_stays(no_hub_cache, tmp_path, monkeypatch):
    broken = tmp_path / "models"
    shutil.copytree(GEN5, broken)
    (broken / "chatsft_checkpoints" / "d4" / "meta_000700.json").write_text("{ not json")  # listed, cannot load
    gate, threads = threading.Event(), []
    real_load = catalog.load_entry

    def held_load(entry, **options):  # the real load, held until the test has looked around
        threads.append(threading.current_thread())
        gate.wait(30)
        return real_load(entry, **options)

    monkeypatch.setattr(catalog, "load_entry", held_load)
    flowing = threading.Event()
    backend = FakeBackend(flowing=flowing)
    app = make_app(backend, home=tmp_path / "home", model=ModelSelection(base_dir=str(broken)))
    try:
        async with app.run_test(size=SIZE) as pilot:
            # While a reply streams, switching is refused and the command stays in the input
            await send(pilot, "one", wait=False)
            await wait_for(pilot, lambda: app.generating)
            await enter(pilot, "/model")
            assert app.banner.message.startswith("A reply is still streaming: press Esc to stop it, then /model")
            assert app.input.text == "/model" and not isinstance(app.screen, ModelPickerScreen)
            flowing.set()
            await wait_for(pilot, lambda: not app.generating, what="the reply")
            identity = dict(app.conversation.model)

            # /model 1 loads row 1 (the broken copy) at once, on a worker thread with its stage shown
            await enter(pilot, "/model 1")
            await wait_for(pilot, lambda: threads, what="the load to start")
            assert threads[0] is not threading.main_thread()
            assert app.status.text.startswith("Switching to d4 · sft step 700")
            await enter(pilot, "two")  # the app answers meanwhile; the message waits for the new model
            assert app.input.text == "two" and app.banner.message.startswith("Switching to d4 · sft step 700")
            gate.set()
            await wait_for(pilot, lambda: app._switching is None, timeout=30, what="the load to fail")
            await pilot.pause()
            failed = [line for line in notices(app) if line.startswith("Could not switch")]
            assert len(failed) == 1 and app.banner.message == failed[0]
            assert "meta_000700.json" in failed[0] and "\n" not in failed[0] and "Traceback" not in failed[0]
            assert failed[0].endswith(f"· still using {backend.info.short_name}")
            # the model in use stays, untouched, and answers
            assert app.backend is backend and app.conversation.model == identity
            assert app.status.text.startswith("Ready")
            await send(pilot, "two")
            assert replies(app)[-1].text == "You said: two" and bubbles(app) == ["one", "two"]
    finally:  # (a failed assertion must not leave a thread waiting)
        flowing.set()
        gate.set()


async def test_an_hf_download_at_start_shows_its_progress_in_the_app(tmp_path, monkeypatch):
    from fake_hub import FakeHub

    hub = FakeHub().start()
    try:
        monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        monkeypatch.setenv("HF_HUB_DISABLE_PROGRESS_BARS", "1")
        for name in ("HF_HUB_OFFLINE", "HF_HUB_CACHE"):
            monkeypatch.delenv(name, raising=False)
        tag = "chatsft_checkpoints/d4/"
        hub.add("alice/nanochat-d4", {tag + "model_000700.pt": GEN5 / tag / "model_000700.pt",
                                      tag + "meta_000700.json": GEN5 / tag / "meta_000700.json",
                                      "tokenizer/tokenizer.pkl": GEN5 / "tokenizer" / "tokenizer.pkl"}, "a" * 40)
        app = make_app(home=tmp_path / "home", model=ModelSelection(hf="alice/nanochat-d4", device_type="cpu"))
        app.backend = None  # load through the selection, as at a real start
        async with app.run_test(size=SIZE) as pilot:
            await wait_for(pilot, lambda: app.backend is not None, timeout=60, what="the download and load")
            lines = notices(app)
            assert any(line.startswith("Downloading model_000700.pt: ") and line.endswith("(100%)") for line in lines)
            assert app.backend.info.hf_repo == "alice/nanochat-d4"
    finally:
        hub.stop()
