"""The one Conversation: chat_cli's token history, branches, marked replies, the rulebook's words.

Uses the gen5 fixture's real tokenizer and model (tests/fixtures) for ids and replies.
"""

from __future__ import annotations

import pytest

from conftest import FIXTURES
from nanochat_core.chat import Message, SamplingParams, ValidationError
from nanochat_core.conversation import Conversation, ReplyRecorder
from nanochat_core.events import Done, ErrorEvent, GenerationStats, TextDelta, ToolCall, ToolResult
from nanochat_core.tokenizer import Tokenizer

TOKENIZER = Tokenizer.from_file(FIXTURES / "gen5-smear-backout" / "base_dir" / "tokenizer" / "tokenizer.pkl")
SP = TOKENIZER.special
BOS, US, UE = TOKENIZER.bos_id, SP("<|user_start|>"), SP("<|user_end|>")
AS, AE = SP("<|assistant_start|>"), SP("<|assistant_end|>")
PY_S, PY_E = SP("<|python_start|>"), SP("<|python_end|>")
STATS = GenerationStats(prompt_tokens=1, generated_tokens=1, ttft_s=0.01, total_s=0.02)


def enc(text: str) -> list[int]:
    return TOKENIZER.encode(text)


def reply(conv: Conversation, ids: list[int], *, reason: str = "stop", stop: int | None = AE,
          parts: tuple = ()) -> None:
    node = conv.start_reply()
    conv.finish_reply(node, Done(reason, STATS, tuple(ids), parts, stop), tokenizer=TOKENIZER,
                      tokenizer_id="t")


def test_history_is_chat_cli_s_token_list():
    conv = Conversation()
    conv.add_user("hello")
    assert conv.prompt_ids(TOKENIZER) == [BOS, US, *enc("hello"), UE, AS]
    generated = enc("hi there")
    reply(conv, generated, parts=({"type": "text", "text": "hi there"},))
    conv.add_user("again")
    assert conv.prompt_ids(TOKENIZER, tokenizer_id="t") == [
        BOS, US, *enc("hello"), UE, AS, *generated, AE, US, *enc("again"), UE, AS]


def test_a_reply_ending_in_bos_keeps_it_and_is_closed():
    """chat_cli appends every yielded token (the <|bos|> stop too), then <|assistant_end|>."""
    conv = Conversation()
    conv.add_user("a")
    reply(conv, [5, 6], stop=BOS, parts=({"type": "text", "text": "xy"},))
    assert conv.last.token_ids == (5, 6, BOS, AE)
    conv.add_user("b")
    assert conv.prompt_ids(TOKENIZER, tokenizer_id="t")[-9:-4] == [AS, 5, 6, BOS, AE]


def test_empty_cut_and_tool_only_replies_stay_in_the_history():
    conv = Conversation()
    conv.add_user("a")
    reply(conv, [])  # the first token was <|assistant_end|>
    assert conv.last.token_ids == (AE,) and conv.last.content == ""
    conv.add_user("b")
    reply(conv, [PY_S, 7, 8], reason="length", stop=None,
          parts=({"type": "python", "text": "12"},))  # cut inside an unclosed python block
    assert conv.last.token_ids == (PY_S, 7, 8, AE) and conv.last.state == "length"
    conv.add_user("c")
    ids = conv.prompt_ids(TOKENIZER, tokenizer_id="t")
    assert ids.count(AE) == 2 and [PY_S, 7, 8, AE] == ids[ids.index(PY_S):ids.index(PY_S) + 4]
    conv.validate()  # an empty reply we recorded is fine for the rulebook (nanochat keeps it)


def test_a_failed_reply_is_kept_marked_and_left_out_of_the_context():
    conv = Conversation()
    conv.add_user("first")
    reply(conv, [5], parts=({"type": "text", "text": "x"},))
    conv.add_user("too much")
    node = conv.start_reply()
    conv.fail_reply(node, "The conversation is 9999 tokens, more than this model's context")
    assert [n.role for n in conv.path()] == ["user", "assistant", "user", "assistant"]
    assert conv.last.state == "error" and "context" in conv.last.error
    assert [m.text for m in conv.request_messages()] == ["first", "x"]
    conv.add_user("shorter")
    assert [m.text for m in conv.request_messages()] == ["first", "x", "shorter"]


def test_regenerate_and_edit_keep_the_old_versions_as_branches():
    conv = Conversation()
    first = conv.add_user("q1")
    reply(conv, [5], parts=({"type": "text", "text": "a1"},))
    old_reply = conv.head
    conv.regenerate_from()
    reply(conv, [6], parts=({"type": "text", "text": "a1 again"},))
    assert conv.siblings(conv.head) == [old_reply, conv.head]
    assert conv.last.text == "a1 again"
    conv.switch(conv.head, -1)
    assert conv.last.text == "a1"  # the earlier version, still there
    edited = conv.edit(first.id, "q1 edited")
    assert conv.siblings(edited.id) == [first.id, edited.id] and len(conv.path()) == 1
    conv.switch(edited.id, -1)
    assert [n.text for n in conv.path()] == ["q1", "a1"]  # back on the old branch, its latest reply
    conv.discard(edited.id)
    assert conv.siblings(first.id) == [first.id]


def test_system_message_is_folded_and_errors_say_which_message():
    conv = Conversation(system="Be brief.")
    conv.add_user("hi")
    assert conv.prompt_ids(TOKENIZER)[:3] == [BOS, US, *enc("Be brief.\n\nhi")[:1]]
    with pytest.raises(ValidationError) as info:
        conv.validate(extra_user="x" * 8001)
    assert str(info.value) == ("Message 2 is too long. Maximum 8000 characters allowed per message "
                               "(your message, 8,001 characters)")
    with pytest.raises(ValidationError) as info:
        Conversation().validate(extra_user="")
    assert str(info.value) == "Message 0 has empty content (your message)"


def test_from_messages_applies_the_default_system_only_when_none_is_given():
    conv = Conversation.from_messages([{"role": "user", "content": "hi"}], default_system="S")
    assert conv.system == "S" and [m.role for m in conv.request_messages()] == ["system", "user"]
    own = Conversation.from_messages([{"role": "system", "content": "mine"}, {"role": "user", "content": "hi"}],
                                     default_system="S")
    assert own.system == "mine"
    with pytest.raises(ValidationError):
        Conversation.from_messages([{"role": "assistant", "content": "x"}])


def test_replies_recorded_with_another_tokenizer_are_rendered_from_their_text():
    conv = Conversation()
    conv.add_user("a")
    reply(conv, [1, 2, 3], parts=({"type": "text", "text": "hello"},))  # ids of tokenizer "t"
    conv.add_user("b")
    same = conv.prompt_ids(TOKENIZER, tokenizer_id="t")
    other = conv.prompt_ids(TOKENIZER, tokenizer_id="another")  # after switching models
    start = 4 + len(enc("a"))  # bos, user_start, "a", user_end, assistant_start
    assert same[start:start + 4] == [1, 2, 3, AE]
    assert other[start:start + len(enc("hello")) + 1] == [*enc("hello"), AE]


def test_recorder_streams_into_the_conversation_and_marks_errors():
    conv = Conversation()
    conv.add_user("q")
    rec = ReplyRecorder.start(conv, backend=None, save_every=0)
    assert rec.request.last.role == "user"  # what the model answers: without the new reply
    for event in (TextDelta("Let me"), ToolCall("1+1"), ToolResult("1+1", "2"), TextDelta(" see")):
        rec.feed(event)
    assert conv.last.state == "partial" and conv.last.content[1] == {"type": "python", "text": "1+1"}
    rec.feed(ErrorEvent("the connection broke"))
    assert conv.last.state == "error" and conv.last.text == "Let me see"


def test_the_engine_shows_text_after_an_unclosed_python_block(load_fixture):
    """Text inside a python block the reply never closed is shown (it was dropped before)."""
    from nanochat_core.engine import EventBuilder, SpecialIds

    model = load_fixture("gen5-smear-backout")
    builder = EventBuilder(model.tokenizer, SpecialIds(model.tokenizer), 3)
    events = []
    for token in [*enc("ok "), PY_S, *enc("2+2 and more")]:
        events += builder.feed(token)
    events += builder.finish("length")
    calls = [e for e in events if isinstance(e, ToolCall)]
    assert calls and calls[0].expression == "2+2 and more"
    done = events[-1]
    assert done.parts[-1] == {"type": "python", "text": "2+2 and more"}


def test_a_real_model_keeps_exact_ids_across_turns(load_fixture):
    """Through ChatModel.chat(conversation): the history holds the generated ids, and the next
    turn's prompt extends it (the engine reuses its KV cache for all of it)."""
    model = load_fixture("gen5-smear-backout")
    conv = Conversation()
    sampling = SamplingParams(temperature=0.0, max_tokens=12)
    for text in ("hello", "and then"):
        conv.add_user(text)
        rec = ReplyRecorder.start(conv, model)
        for event in model.chat(rec.request, sampling):
            rec.feed(event)
        assert rec.done is not None
        generated = rec.done.generated_ids
        assert generated and conv.last.token_ids == generated + (() if generated[-1] == AE else (AE,))
    conv.add_user("third")
    prompt = model.render_chat(conv)
    first_reply = conv.path()[1].token_ids
    assert prompt[len(enc("hello")) + 4:][:len(first_reply)] == list(first_reply)
    # the KV cache already holds the whole history but the reply's last token (never fed back),
    # the closing <|assistant_end|> and the new turn (user_start, "third", user_end, assistant_start)
    assert model.engine.cached_prefix(prompt) == len(prompt) - len(enc("third")) - 5
    assert Message("user", "third") == conv.request_messages()[-1]
