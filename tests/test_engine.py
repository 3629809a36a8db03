"""The engine protocol (spec §6-§7) with a scripted stand-in model, plus real-model streaming."""

from __future__ import annotations

import threading
import time

import pytest
import torch

from conftest import FIXTURES
from nanochat_core.chat import SamplingParams
from nanochat_core.context import ContextTooLong
from nanochat_core.engine import Engine, sample_next
from nanochat_core.events import Done, ErrorEvent, TextDelta, ToolCall, ToolResult
from nanochat_core.tokenizer import StreamDecoder, Tokenizer

TOKENIZER = Tokenizer.from_file(FIXTURES / "gen5-smear-backout/base_dir/tokenizer/tokenizer.pkl")


class ScriptedModel(torch.nn.Module):
    """Stands in for GPT: always makes the next scripted token the argmax. Records every token
    fed to it, so we can check what the engine feeds back (forced tokens included)."""

    def __init__(self, script: list[int], vocab: int, delay: float = 0.0):
        super().__init__()
        self.device = torch.device("cpu")
        self.script, self.vocab, self.delay = script, vocab, delay
        self.fed: list[int] = []
        self.rotary_len = 10_000

    def new_cache(self, batch, capacity):
        from nanochat_core.model import KVCache

        return KVCache(1, batch, 1, 2, capacity, torch.float32, "cpu")

    def forward(self, idx, cache=None, prev_token=None, last_only=False):
        if self.delay:
            time.sleep(self.delay)
        self.fed.extend(idx[0].tolist())
        step = cache.pos - self.prompt_len + idx.shape[1] if cache is not None else 0
        cache.pos += idx.shape[1]
        logits = torch.zeros(1, self.vocab)
        logits[0, self.script[min(step, len(self.script) - 1)]] = 10.0
        return logits


def engine_for(script_text_parts, delay=0.0):
    """Build a script from text and special-token names, e.g. ["Hi ", "<|python_start|>", "12*7"]."""
    script = []
    for part in script_text_parts:
        script += [TOKENIZER.special(part)] if part.startswith("<|") else TOKENIZER.encode(part)
    model = ScriptedModel(script, TOKENIZER.vocab_size, delay)
    return Engine(model, TOKENIZER), model, script


def run(engine, model, prompt=None, **sampling):
    prompt = prompt or [TOKENIZER.bos_id, TOKENIZER.special("<|assistant_start|>")]
    model.prompt_len = len(prompt)
    return list(engine.stream(prompt, SamplingParams(**{"temperature": 0.0, **sampling})))


def test_calculator_output_is_forced_and_fed_back():
    engine, model, _ = engine_for(["Sure: ", "<|python_start|>", "12*7", "<|python_end|>",
                                   "IGNORED", " done", "<|assistant_end|>"])
    model.prompt_len = 2
    steps = list(engine.generate([TOKENIZER.bos_id, TOKENIZER.special("<|assistant_start|>")], max_tokens=50))
    tokens = [s.token for s in steps]
    out_start, out_end = TOKENIZER.special("<|output_start|>"), TOKENIZER.special("<|output_end|>")
    i = tokens.index(out_start)
    assert tokens[i: i + 4] == [out_start, *TOKENIZER.encode("84"), out_end]
    assert [s.forced for s in steps[i: i + 4]] == [True] * 4
    assert all(not s.forced for s in steps[:i])
    assert set(TOKENIZER.encode("84")) <= set(model.fed)  # the model saw the tool output


def test_stream_events_for_a_tool_call():
    engine, model, _ = engine_for(["Let me see. ", "<|python_start|>", "12*7", "<|python_end|>",
                                   "x", "x", "x", "x", " It is 84.", "<|assistant_end|>"])
    events = run(engine, model)
    kinds = [type(e).__name__ for e in events]
    assert kinds[0] == "TextDelta"
    assert ToolCall("12*7") in events and ToolResult("12*7", "84") in events
    done = events[-1]
    assert isinstance(done, Done) and done.reason == "stop"
    assert [p["type"] for p in done.parts] == ["text", "python", "python_output", "text"]
    assert done.parts[1]["text"] == "12*7" and done.parts[2]["text"] == "84"
    assert done.stats.generated_tokens == len(done.token_ids)


def test_tool_call_without_result():
    engine, model, _ = engine_for(["<|python_start|>", "1/0", "<|python_end|>", "ok", "<|assistant_end|>"])
    events = run(engine, model)
    assert ToolResult("1/0", None) in events
    assert isinstance(events[-1], Done) and events[-1].reason == "stop"


def test_stop_on_bos_and_length():
    engine, model, _ = engine_for(["hello", "<|bos|>"])
    assert run(engine, model)[-1].reason == "stop"
    engine, model, _ = engine_for(["a b c d e f g h i j k l m n o p"])
    done = run(engine, model, max_tokens=5)[-1]
    assert done.reason == "length" and done.stats.generated_tokens == 5


def test_cancel_from_another_thread_stops_within_a_step():
    engine, model, _ = engine_for(["word " * 200], delay=0.02)
    cancel = threading.Event()
    model.prompt_len = 2
    events = []
    stream = engine.stream([TOKENIZER.bos_id, TOKENIZER.special("<|assistant_start|>")],
                           SamplingParams(temperature=0.0, max_tokens=500), cancel)
    for event in stream:
        events.append(event)
        if len(events) == 3:
            fed_at_cancel = len(model.fed)
            threading.Timer(0, cancel.set).start()
            time.sleep(0.01)
    assert events[-1].reason == "cancelled"
    assert len(model.fed) <= fed_at_cancel + 2  # at most the step in flight


def test_utf8_characters_arrive_whole():
    text = "snow ☃ and 🎉 done"
    ids = TOKENIZER.encode(text)
    dec = StreamDecoder(TOKENIZER)
    pieces = [dec.feed(i) for i in ids] + [dec.flush()]
    assert "".join(pieces) == TOKENIZER.decode(ids) == text
    assert all("\ufffd" not in p for p in pieces)
    assert any(len(TOKENIZER.token_bytes(i)) < 4 for i in ids)  # the emoji really was split


def test_invalid_bytes_match_one_shot_decode():
    ids = [128, 65, 200, 200, 66]  # raw byte tokens: invalid UTF-8 in the middle
    dec = StreamDecoder(TOKENIZER)
    assert "".join([dec.feed(i) for i in ids] + [dec.flush()]) == TOKENIZER.decode(ids)


def test_sampling_follows_nanochat():
    logits = torch.tensor([[1.0, 3.0, 2.0, 3.0]])
    g = torch.Generator().manual_seed(0)
    assert sample_next(logits, g, 0.0, 50).item() == 1  # first index among equal maxima
    draws = {sample_next(logits, torch.Generator().manual_seed(s), 1.0, 1).item() for s in range(20)}
    assert draws <= {1, 3} and len(draws) == 1  # top-1 keeps one of the maxima (topk's choice)
    draws = {sample_next(logits, torch.Generator().manual_seed(s), 1.0, 0).item() for s in range(50)}
    assert draws == {0, 1, 2, 3}  # top_k 0 = full vocabulary


def test_seeded_sampling_is_reproducible(load_fixture):
    m = load_fixture("gen5-smear-backout")
    msgs = [{"role": "user", "content": "Say something."}]
    sp = SamplingParams(temperature=1.0, top_k=50, max_tokens=20, seed=123)
    a = [e for e in m.chat(msgs, sp) if isinstance(e, Done)][0].token_ids
    b = [e for e in m.chat(msgs, sp) if isinstance(e, Done)][0].token_ids
    c = [e for e in m.chat(msgs, SamplingParams(temperature=1.0, top_k=50, max_tokens=20, seed=7)) if isinstance(e, Done)][0].token_ids
    assert a == b and a != c


def test_stream_text_equals_decode_of_ids(load_fixture):
    m = load_fixture("gen4-rope100k-qkscale")
    events = list(m.chat([{"role": "user", "content": "hello there"}], SamplingParams(temperature=0.0, max_tokens=40)))
    done = events[-1]
    text = "".join(e.text for e in events if isinstance(e, TextDelta))
    assert text == done.text
    if all(p["type"] == "text" for p in done.parts):
        specials = m.tokenizer.special_ids
        assert text == m.tokenizer.decode([t for t in done.token_ids if t not in specials])


def test_context_overflow_is_refused_before_any_work(load_fixture):
    m = load_fixture("gen5-smear-backout")
    ids = [m.tokenizer.bos_id] + [65] * 2600  # rotary table holds 10 x 256 positions
    with pytest.raises(ContextTooLong, match="Maximum 2560 tokens allowed, this one has 2601"):
        m.stream(ids, SamplingParams(max_tokens=5))  # raised by the call, not while iterating
    # The engine underneath, called directly, ends its stream with the same line.
    events = list(m.engine.stream(ids, SamplingParams(max_tokens=5)))
    assert isinstance(events[-1], ErrorEvent) and "Maximum 2560 tokens allowed" in events[-1].message
