"""The OpenAI-compatible API (/v1) of `nanochat-tui --web`: chunk sequence and shapes, the
rulebook's words in OpenAI's error shape, refused fields, stop sequences, disconnects; then real
clients on a real loopback server: the official `openai` SDK and our own RemoteChatModel (the
latter against a real fixture model, compared with the SSE endpoint and ChatModel.reply())."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from dataclasses import replace

import aiohttp
import openai
import pytest

from conftest import FIXTURES
from nanochat_core.chat import SamplingParams
from nanochat_core.remote import RemoteChatModel
from nanochat_tui.config import WebConfig
from nanochat_tui.web import create_app, ready_lines
from nanochat_tui.web.routes_openai import StopCutter, first_stop, model_id
from web_fakes import FakeModel, fake_info, until

GEN = "gen5-smear-backout"
USER = [{"role": "user", "content": "hello"}]
CHAT = "/v1/chat/completions"
MODEL = "nanochat-d4"  # fake_info()'s model tag is "d4"


@pytest.fixture
def make_client(aiohttp_client):
    async def make(*backends, config: WebConfig | None = None, **changes):
        return await aiohttp_client(create_app(replace(config or WebConfig(), **changes), list(backends)))
    return make


async def read_chunks(resp) -> list:
    """Every `data:` payload of an SSE response (parsed; "[DONE]" stays a string)."""
    assert resp.status == 200, await resp.text()
    assert resp.headers["Content-Type"] == "text/event-stream; charset=utf-8"
    raw = (await resp.read()).decode("utf-8")
    assert raw.endswith("\n\n")
    out = []
    for block in raw.split("\n\n")[:-1]:
        assert block.startswith("data: ") and "\n" not in block, repr(block)
        data = block[len("data: "):]
        out.append(data if data == "[DONE]" else json.loads(data))
    return out


def contents(chunks) -> list[str]:
    return [c["choices"][0]["delta"]["content"] for c in chunks
            if isinstance(c, dict) and c.get("choices") and "content" in c["choices"][0]["delta"]]


async def stream(client, **body):
    return await read_chunks(await client.post(CHAT, json={"messages": USER, "stream": True, **body}))


def assert_openai_error(obj: dict, message: str, param, code=None, kind="invalid_request_error", exact=True):
    assert set(obj) == {"error"} and set(obj["error"]) == {"message", "type", "param", "code"}, obj
    err = obj["error"]
    assert (err["message"] == message) if exact else err["message"].startswith(message), err["message"]
    assert (err["type"], err["param"], err["code"]) == (kind, param, code)
    assert "Traceback" not in err["message"] and "\n" not in err["message"]


# ---------------------------------------------------------------- streaming and whole replies


async def test_stream_is_openai_chunks_in_order_with_usage(make_client):
    client = await make_client(FakeModel(reply=lambda m, s: "Hi 👋 there"))
    chunks = await stream(client, stream_options={"include_usage": True})
    assert chunks[-1] == "[DONE]"
    chunks = chunks[:-1]
    heads = {(c["id"], c["object"], c["created"], c["model"]) for c in chunks}
    assert len(heads) == 1  # one id, created and model on every chunk
    cid, obj, created, model = heads.pop()
    assert cid.startswith("chatcmpl-") and len(cid) > 12 and obj == "chat.completion.chunk"
    assert model == MODEL and isinstance(created, int) and abs(created - time.time()) < 60

    def choice(delta, finish=None):
        return [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]

    assert [c["choices"] for c in chunks] == [
        choice({"role": "assistant", "content": ""}),
        choice({"content": "Hi"}), choice({"content": " 👋"}), choice({"content": " there"}),
        choice({}, "stop"),
        [],
    ]
    assert [c["usage"] for c in chunks[:-1]] == [None] * 5  # OpenAI: null until the last chunk
    # no prompt_tokens_details.cached_tokens: it would tell about other clients' prompts
    assert chunks[-1]["usage"] == {"prompt_tokens": 10, "completion_tokens": 3, "total_tokens": 13}


async def test_stream_without_include_usage_has_no_usage_at_all(make_client):
    client = await make_client(FakeModel())
    chunks = await stream(client)
    assert chunks[-1] == "[DONE]" and all("usage" not in c for c in chunks[:-1])
    assert "".join(contents(chunks)) == "You said: hello"
    assert chunks[-2]["choices"][0]["finish_reason"] == "stop"


async def test_whole_reply_is_a_chat_completion(make_client):
    client = await make_client(FakeModel(reply=lambda m, s: "Hi 👋 there"))
    resp = await client.post(CHAT, json={"messages": USER, "model": MODEL})
    assert resp.status == 200 and resp.headers["Content-Type"].startswith("application/json")
    body = await resp.json()
    assert body.pop("id").startswith("chatcmpl-") and isinstance(body.pop("created"), int)
    assert body == {
        "object": "chat.completion", "model": MODEL,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hi 👋 there", "refusal": None},
                     "logprobs": None, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 10, "completion_tokens": 3, "total_tokens": 13},
    }


async def test_max_tokens_finish_length_and_max_completion_tokens_wins(make_client):
    fake = FakeModel(reply=lambda m, s: "one two three four")
    client = await make_client(fake)
    chunks = await stream(client, max_tokens=2)
    assert contents(chunks)[1:] == ["one", " two"] and chunks[-2]["choices"][0]["finish_reason"] == "length"
    whole = await (await client.post(CHAT, json={"messages": USER, "max_tokens": 100, "max_completion_tokens": 3})).json()
    assert whole["choices"][0]["message"]["content"] == "one two three"
    assert whole["choices"][0]["finish_reason"] == "length" and whole["usage"]["completion_tokens"] == 3
    assert [s.max_tokens for _, s in fake.calls] == [2, 3]


async def test_sampling_fields_reach_the_engine_with_the_servers_defaults(make_client):
    fake = FakeModel()
    client = await make_client(fake, sampling=SamplingParams(temperature=0.8, top_k=50, max_tokens=512, seed=None))
    await stream(client)
    await stream(client, temperature=0, top_k=7, max_tokens=3, seed=5, top_p=1, n=1)
    await stream(client, temperature=None, top_k=None, max_tokens=None, seed=None, top_p=None, n=None)
    assert [s for _, s in fake.calls] == [SamplingParams(0.8, 50, 512, None), SamplingParams(0.0, 7, 3, 5),
                                         SamplingParams(0.8, 50, 512, None)]


async def test_system_prompt_developer_role_and_text_parts(make_client):
    fake = FakeModel()
    client = await make_client(fake, system="Be brief.")
    await stream(client)
    await stream(client, messages=[{"role": "developer", "content": "Mine."}, *USER])
    parts = [{"type": "text", "text": "first"}, {"type": "text", "text": "second"}]
    whole = await (await client.post(CHAT, json={"messages": [{"role": "user", "content": parts}]})).json()
    assert whole["choices"][0]["message"]["content"] == "You said: first\nsecond"
    history = [*USER, {"role": "assistant", "content": [{"type": "text", "text": "hi!"}]}, {"role": "user", "content": "more"}]
    await stream(client, messages=history, name="ignored")
    sent = [[(m.role, m.content) for m in call] for call, _ in fake.calls]
    assert sent == [
        [("system", "Be brief."), ("user", "hello")],
        [("system", "Mine."), ("user", "hello")],  # a client's own system prompt replaces --system
        [("system", "Be brief."), ("user", "first\nsecond")],
        [("system", "Be brief."), ("user", "hello"), ("assistant", "hi!"), ("user", "more")],
    ]


async def test_calculator_tool_use_is_left_out_of_the_content(make_client):
    client = await make_client(FakeModel(reply=lambda m, s: "It is 42", tool=("6*7", "42")))
    resp = await client.post(CHAT, json={"messages": USER, "stream": True})
    raw = await resp.text()
    assert "6*7" not in raw and "python" not in raw
    chunks = [json.loads(b[6:]) for b in raw.split("\n\n")[:-2]]
    assert "".join(contents(chunks)) == "It is 42"
    whole = await (await client.post(CHAT, json={"messages": USER})).json()
    assert whole["choices"][0]["message"]["content"] == "It is 42"


async def test_unknown_and_unsupported_harmless_fields_are_ignored(make_client):
    fake = FakeModel()
    client = await make_client(fake)
    chunks = await stream(client, presence_penalty=0.5, frequency_penalty=0.2, logit_bias={"50256": -100},
                          user="u1", metadata={"a": "b"}, store=False, parallel_tool_calls=True,
                          tools=[{"type": "function", "function": {"name": "f", "parameters": {}}}],
                          tool_choice="auto", function_call="none", response_format={"type": "text"},
                          logprobs=False, modalities=["text"], stream_options={"include_usage": False},
                          something_new={"x": 1})
    assert "".join(contents(chunks)) == "You said: hello" and len(fake.calls) == 1


async def test_engine_error_is_an_error_chunk_then_done_or_a_500(make_client):
    client = await make_client(FakeModel(reply=lambda m, s: "a b c", error_after=1))
    chunks = await stream(client)
    assert contents(chunks) == ["", "a"]
    assert chunks[-2:] == [{"error": {"message": "engine exploded", "type": "server_error", "param": None, "code": None}},
                           "[DONE]"]
    resp = await client.post(CHAT, json={"messages": USER})
    assert resp.status == 500 and resp.headers["x-should-retry"] == "false"
    assert_openai_error(await resp.json(), "engine exploded", None, kind="server_error")


# ---------------------------------------------------------------- the rulebook's words, OpenAI's shape

LONG = "x" * 8001
RULEBOOK = [
    ({"messages": []}, "At least one message is required", "messages"),
    ({"messages": [{"role": "user", "content": "hi"}] * 501}, "Too many messages. Maximum 500 messages allowed per request", "messages"),
    ({"messages": [{"role": "user", "content": ""}]}, "Message 0 has empty content", "messages"),
    ({"messages": [{"role": "user", "content": LONG}]}, "Message 0 is too long. Maximum 8000 characters allowed per message", "messages"),
    ({"messages": [{"role": "user", "content": "y" * 7000}] * 5}, "Total conversation is too long. Maximum 32000 characters allowed", "messages"),
    ({"messages": [{"role": "robot", "content": "hi"}]}, "Message 0 has invalid role. Must be 'user', 'assistant', or 'system'", "messages"),
    ({"messages": [{"role": "tool", "content": "42"}]}, "Message 0 has invalid role. Must be 'user', 'assistant', or 'system'", "messages"),
    ({"messages": USER, "temperature": 2.5}, "Temperature must be between 0.0 and 2.0", "temperature"),
    ({"messages": USER, "temperature": -0.1}, "Temperature must be between 0.0 and 2.0", "temperature"),
    ({"messages": USER, "top_k": 201}, "top_k must be between 0 and 200", "top_k"),
    ({"messages": USER, "top_k": -1}, "top_k must be between 0 and 200", "top_k"),
    ({"messages": USER, "max_tokens": 0}, "max_tokens must be between 1 and 4096", "max_tokens"),
    ({"messages": USER, "max_tokens": 4097}, "max_tokens must be between 1 and 4096", "max_tokens"),
    ({"messages": USER, "max_completion_tokens": 5000}, "max_tokens must be between 1 and 4096", "max_completion_tokens"),
    ({"messages": USER, "seed": -1}, "seed must be between 0 and 2^63-1", "seed"),
    ({"messages": [{"role": "assistant", "content": "hi"}]}, "The last message must be from the user", "messages"),
    ({"messages": [USER[0], {"role": "system", "content": "s"}, USER[0]]},
     "Message 1 has role 'system', but a system message is only allowed as the first message", "messages"),
    ({"messages": [{"role": "system", "content": "s"}]}, "A system message must be followed by a user message", "messages"),
]


@pytest.mark.parametrize("body,message,param", RULEBOOK, ids=[m for _, m, _ in RULEBOOK])
@pytest.mark.parametrize("streaming", [False, True], ids=["whole", "stream"])
async def test_every_rulebook_message_is_a_400_in_openai_shape_with_its_exact_words(make_client, body, message, param, streaming):
    fake = FakeModel()
    client = await make_client(fake)
    resp = await client.post(CHAT, json={**body, "stream": streaming})
    assert resp.status == 400 and resp.headers["Content-Type"].startswith("application/json")
    assert_openai_error(await resp.json(), message, param)
    assert fake.calls == []  # rejected before any work


MALFORMED = [
    (b"", "Request body is empty", None),
    (b"{not json", "Request body is not valid JSON", None),
    (b"\xff\xfe{}", "Request body must be JSON encoded as UTF-8", None),
    (b"[1, 2]", "Request body must be a JSON object", None),
    (b"null", "Request body must be a JSON object", None),
    (b"[" * 100_000 + b"]" * 100_000, "Request body is not valid JSON", None),
    (b"{}", "'messages' must be a list", "messages"),
    (b'{"messages": "hi"}', "'messages' must be a list", "messages"),
    (b'{"messages": [42]}', "Message 0 must be an object", "messages"),
    (b'{"messages": [{"role": "user"}]}', "Message 0 must have 'role' and 'content'", "messages"),
    (b'{"messages": [{"role": "user", "content": 5}]}', "Message 0 content must be a string", "messages"),
    (b'{"messages": [{"role": "user", "content": null}]}', "Message 0 has empty content", "messages"),
    (b'{"messages": [{"role": "user", "content": [{"type": "text"}]}]}', "Message 0 has an invalid content part", "messages"),
    (b'{"messages": [{"role": "user", "content": [{"type": "text", "text": "a"}, 7]}]}', "Message 0 has an invalid content part", "messages"),
    (b'{"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "data:,"}}]}]}',
     "Message 0 has a content part of type 'image_url', but this model reads text only", "messages"),
    (b'{"messages": [{"role": "user", "content": [{"type": "text", "text": "hear"}, {"type": "input_audio"}]}]}',
     "Message 0 has a content part of type 'input_audio', but this model reads text only", "messages"),
    (b'{"messages": [{"role": "user", "content": "hi"}], "temperature": "hot"}', "Temperature must be a number", "temperature"),
    (b'{"messages": [{"role": "user", "content": "hi"}], "temperature": NaN}', "Temperature must be a number", "temperature"),
    (b'{"messages": [{"role": "user", "content": "hi"}], "top_k": 2.5}', "top_k must be an integer", "top_k"),
    (b'{"messages": [{"role": "user", "content": "hi"}], "max_tokens": "10"}', "max_tokens must be an integer", "max_tokens"),
    (b'{"messages": [{"role": "user", "content": "hi"}], "model": 5}', "model must be a string", "model"),
    (b'{"messages": [{"role": "user", "content": "hi"}], "stream": "yes"}', "stream must be true or false", "stream"),
    (b'{"messages": [{"role": "user", "content": "hi"}], "stream_options": 5}', "stream_options must be an object", "stream_options"),
    (b'{"messages": [{"role": "user", "content": "hi"}], "stream_options": {"include_usage": 1}}',
     "stream_options.include_usage must be true or false", "stream_options.include_usage"),
    (b'{"messages": [{"role": "user", "content": "hi"}], "stop": 5}', "stop must be a string or a list of up to 4 strings", "stop"),
    (b'{"messages": [{"role": "user", "content": "hi"}], "stop": ["a", null]}', "stop must be a string or a list", "stop"),
    (b'{"messages": [{"role": "user", "content": "hi"}], "stop": ["a", "b", "c", "d", "e"]}',
     "stop lists 5 sequences; at most 4 are allowed", "stop"),
    (b'{"messages": [{"role": "user", "content": "hi"}], "n": 2}', "n must be 1", "n"),
    (b'{"messages": [{"role": "user", "content": "hi"}], "top_p": 0.9}', "top_p is not supported", "top_p"),
    (b'{"messages": [{"role": "user", "content": "hi"}], "top_p": true}', "top_p is not supported", "top_p"),
    (b'{"messages": [{"role": "user", "content": "hi"}], "logprobs": true}', "logprobs are not supported", "logprobs"),
    (b'{"messages": [{"role": "user", "content": "hi"}], "response_format": {"type": "json_object"}}',
     "response_format is not supported", "response_format"),
    (b'{"messages": [{"role": "user", "content": "hi"}], "tool_choice": "required"}',
     'tool_choice "required" forces a function call', "tool_choice"),
    (b'{"messages": [{"role": "user", "content": "hi"}], "tool_choice": {"type": "function", "function": {"name": "f"}}}',
     'tool_choice {"type": "function", "function": {"name": "f"}} forces a function call', "tool_choice"),
    (b'{"messages": [{"role": "user", "content": "hi"}], "modalities": ["text", "audio"]}',
     "modalities: this model produces text only", "modalities"),
]


@pytest.mark.parametrize("raw,start,param", MALFORMED, ids=[s for _, s, _ in MALFORMED])
async def test_malformed_and_refused_bodies_are_400_in_openai_shape_never_500(make_client, raw, start, param):
    fake = FakeModel()
    client = await make_client(fake)
    resp = await client.post(CHAT, data=raw, headers={"Content-Type": "application/json"})
    assert resp.status == 400, await resp.text()
    assert_openai_error(await resp.json(), start, param, exact=False)
    assert fake.calls == []


async def test_top_p_refusal_says_to_use_top_k(make_client):
    client = await make_client(FakeModel())
    err = (await (await client.post(CHAT, json={"messages": USER, "top_p": 0.95})).json())["error"]
    assert err["message"] == ("top_p is not supported: this server samples with temperature and top_k only, so top_p "
                              "must be 1 or left out (use top_k to sample from the k most likely tokens)")


async def test_body_too_large_is_413_in_openai_shape(make_client):
    client = await make_client(FakeModel(), max_body_bytes=10_000)
    big = json.dumps({"messages": [{"role": "user", "content": "z" * 20_000}]}).encode()
    resp = await client.post(CHAT, data=big)
    assert resp.status == 413
    assert_openai_error(await resp.json(), "Request body is too large: at most 10000 bytes allowed", None)


async def test_wrong_method_and_unknown_v1_paths_answer_in_openai_shape(make_client):
    client = await make_client(FakeModel())
    resp = await client.get(CHAT)
    assert resp.status == 405
    assert_openai_error(await resp.json(), "Method Not Allowed", None)
    resp = await client.get("/v1/nope")
    assert resp.status == 404
    assert_openai_error(await resp.json(), "Not Found", None)
    old = await client.get("/chat/completions")  # nanochat's endpoint keeps nanochat's shape
    assert old.status == 405 and set(await old.json()) == {"detail"}


# ---------------------------------------------------------------- stop sequences


@pytest.mark.parametrize("text,stops", [
    ("alpha beta gamma delta", ["ta gam"]),
    ("alpha beta gamma delta", ["delta", "beta"]),
    ("alpha beta gamma delta", ["ab"]),  # "a" tails are held back again and again, then released
    ("aaab", ["aab"]),
    ("no stop here", ["zzz", "herex"]),
    ("héllo 👋 wörld", ["👋 w"]),
    ("stop at the very start", ["stop"]),
    ("overlapping abcabd", ["abcabd", "cab"]),  # "cab" is complete first: cut before it
    ("tie xab", ["b", "ab"]),  # both end together: the longer one, which starts first
])
def test_stop_cutter_cuts_at_the_first_stop_sequence_for_every_chunking(text, stops):
    # The stop sequence that is complete first wins: generation would have stopped there.
    ends = [(i + len(s), i) for s, i in ((s, text.find(s)) for s in stops) if i >= 0]
    cut = min(ends)[1] if ends else len(text)
    for size in (1, 2, 3, 5, len(text)):
        cutter = StopCutter(stops)
        out = []
        for i in range(0, len(text), size):
            out.append(cutter.feed(text[i:i + size]))
            sent = "".join(out)
            assert sent == text[:cut][:len(sent)]  # never anything past the cut, never reordered
        if not cutter.hit:
            out.append(cutter.flush())
        assert "".join(out) == text[:cut], (size, out)
        assert cutter.hit == (cut < len(text))


def test_the_stop_sequence_complete_first_wins():
    assert first_stop("overlapping abcabd", ["abcabd", "cab"]) == len("overlapping ab")
    assert first_stop("tie xab", ["b", "ab"]) == len("tie x")
    assert first_stop("a b", ["a", "b"]) == 0 and first_stop("abc", ["x"]) is None


async def test_stop_split_over_two_deltas_sends_nothing_after_it_and_cancels(make_client):
    words = "alpha beta gamma delta " + "more " * 200
    fake = FakeModel(reply=lambda m, s: words, token_delay=0.02)
    client = await make_client(fake)
    chunks = await stream(client, stop=["ta gam"], stream_options={"include_usage": True})
    # " beta" arrives, "ta" might start "ta gam" so it is held; " gamma" completes the stop sequence.
    assert contents(chunks) == ["", "alpha", " be"]
    assert chunks[-3]["choices"][0] == {"index": 0, "delta": {}, "logprobs": None, "finish_reason": "stop"}
    assert chunks[-2]["usage"]["completion_tokens"] >= 3 and chunks[-1] == "[DONE]"
    body = json.dumps(chunks)
    assert "gam" not in body and "more" not in body
    await until(lambda: fake.cancelled + fake.completed, "the generation to end")
    assert fake.cancelled == 1 and fake.completed == 0  # cancelled, not run to its 204th token


async def test_stop_in_a_whole_reply_and_a_partial_match_is_released(make_client):
    fake = FakeModel(reply=lambda m, s: "alpha beta gamma")
    client = await make_client(fake)
    whole = await (await client.post(CHAT, json={"messages": USER, "stop": "gamma"})).json()
    assert whole["choices"][0]["message"]["content"] == "alpha beta "
    assert whole["choices"][0]["finish_reason"] == "stop"
    chunks = await stream(client, stop=["ab", ""])  # "a" is held back each time, then sent
    assert contents(chunks) == ["", "alph", "a bet", "a gamm", "a"]
    assert chunks[-2]["choices"][0]["finish_reason"] == "stop"  # the model's own stop


# ---------------------------------------------------------------- models, model ids


async def test_models_list_and_retrieve(make_client):
    client = await make_client(FakeModel(), FakeModel())
    listing = await (await client.get("/v1/models")).json()
    assert listing["object"] == "list" and len(listing["data"]) == 1  # one model, however many workers
    card = dict(listing["data"][0])
    # which checkpoint, precisely (ModelInfo.identity()), without the server's file paths
    identity = {"stage": "sft", "tag": "d4", "step": 700, "generation": "gen5-smear-backout", "demo": False,
                "hf": None}
    assert card.pop("created") > 0 and card == {"id": MODEL, "object": "model", "owned_by": "nanochat-tui",
                                                "nanochat": identity}
    one = await client.get(f"/v1/models/{MODEL}")
    assert (await one.json()) == {**card, "created": listing["data"][0]["created"]}
    hub = FakeModel(info=replace(fake_info(), model_path="/srv/hf/snapshots/c0ffee/model_000700.pt",
                                 hf_repo="alice/nanochat-d4", hf_revision="main", hf_commit="c0ffee" * 6 + "abcd"))
    card = (await (await (await make_client(hub)).get("/v1/models")).json())["data"][0]
    assert card["nanochat"]["hf"] == {"repo": "alice/nanochat-d4", "revision": "main", "commit": "c0ffee" * 6 + "abcd"}
    assert "/srv" not in json.dumps(card)
    missing = await client.get("/v1/models/gpt-4o")
    assert missing.status == 404
    assert_openai_error(await missing.json(), "The model 'gpt-4o' does not exist on this server; it serves 'nanochat-d4'",
                        "model", "model_not_found")


async def test_unknown_model_is_404_model_not_found_and_a_missing_model_is_fine(make_client):
    fake = FakeModel()
    client = await make_client(fake)
    for streaming in (False, True):
        resp = await client.post(CHAT, json={"messages": USER, "model": "gpt-4o", "stream": streaming})
        assert resp.status == 404
        assert_openai_error(await resp.json(), "The model 'gpt-4o' does not exist on this server; it serves 'nanochat-d4'",
                            "model", "model_not_found")
    assert fake.calls == []
    assert (await client.post(CHAT, json={"messages": USER})).status == 200
    assert (await client.post(CHAT, json={"messages": USER, "model": MODEL})).status == 200


def test_model_ids():
    assert model_id(fake_info(model_tag="d20")) == "nanochat-d20"
    assert model_id(fake_info(model_tag="d4", is_demo=True)) == "nanochat-demo"
    assert model_id(fake_info(model_tag="my model/v2")) == "nanochat-my-model-v2"
    assert model_id(fake_info(model_tag="///")) == "nanochat-model"


def test_ready_lines_list_the_v1_endpoints():
    text = "\n".join(ready_lines(WebConfig(host="127.0.0.1"), 8000))
    assert "POST /v1/chat/completions" in text and "GET  /v1/models" in text


# ---------------------------------------------------------------- guard: key, CORS, queue


async def test_api_key_is_required_on_v1_in_openai_shape(make_client):
    client = await make_client(FakeModel(), api_key="s3cret")
    for path, method in ((CHAT, "post"), ("/v1/models", "get"), (f"/v1/models/{MODEL}", "get")):
        for headers in ({}, {"Authorization": "Bearer nope"}):
            resp = await getattr(client, method)(path, json={"messages": USER}, headers=headers)
            assert resp.status == 401 and resp.headers["WWW-Authenticate"] == "Bearer"
            assert_openai_error(await resp.json(), "Missing or wrong API key: send 'Authorization: Bearer <key>' "
                                "(on the chat page: /key <key>)", None, "invalid_api_key")
    good = {"Authorization": "Bearer s3cret"}
    assert (await client.get("/v1/models", headers=good)).status == 200
    assert "".join(contents(await read_chunks(await client.post(
        CHAT, json={"messages": USER, "stream": True}, headers=good)))) == "You said: hello"


async def test_cors_and_preflight_apply_to_v1(make_client):
    client = await make_client(FakeModel(), cors_origin="https://app.example")
    for path in (CHAT, "/v1/models", f"/v1/models/{MODEL}"):
        pre = await client.options(path, headers={"Origin": "https://app.example", "Access-Control-Request-Method": "POST"})
        assert pre.status == 204 and pre.headers["Access-Control-Allow-Origin"] == "https://app.example", path
    ok = await client.get("/v1/models", headers={"Origin": "https://app.example"})
    assert ok.headers["Access-Control-Allow-Origin"] == "https://app.example"
    evil = await client.post(CHAT, json={"messages": USER}, headers={"Origin": "http://evil.example"})
    assert evil.status == 403 and "Access-Control-Allow-Origin" not in evil.headers
    assert "--cors-origin" in (await evil.json())["error"]["message"]
    pre = await client.options(CHAT, headers={"Origin": "http://evil.example", "Access-Control-Request-Method": "POST"})
    assert pre.status == 403 and "error" in await pre.json()


async def open_stream(client, **body):
    """POST a streaming request and wait for its first content chunk; returns the open response."""
    resp = await client.post(CHAT, json={"messages": USER, "stream": True, **body})
    assert resp.status == 200
    while b'"content": ""' in (line := await resp.content.readuntil(b"\n\n")):
        pass
    assert b'"content"' in line
    return resp


async def test_queue_full_is_503_with_retry_after_in_openai_shape(make_client):
    client = await make_client(FakeModel(reply=lambda m, s: "t " * 400, token_delay=0.02), queue_size=0)
    running = await open_stream(client)
    refused = await client.post(CHAT, json={"messages": USER})
    assert refused.status == 503 and int(refused.headers["Retry-After"]) >= 1
    err = (await refused.json())["error"]
    assert err["type"] == "server_error" and err["message"].startswith("Server busy")
    running.close()


async def wait_until_free(client, workers: int = 1) -> None:
    async def free() -> bool:
        return (await (await client.get("/health")).json())["available_workers"] == workers

    await until(free, "the worker to be freed")


async def test_disconnect_cancels_a_stream_and_frees_the_worker(make_client):
    gate = threading.Event()  # after its first token the engine makes no step until it opens
    fake = FakeModel(reply=lambda m, s: "tok " * 1000, gate=gate)
    client = await make_client(fake)
    resp = await open_stream(client)
    assert (await (await client.get("/health")).json())["available_workers"] == 0
    before = fake.produced
    resp.close()
    await until(lambda: fake.cancelled == 1, "the generation to be cancelled")
    assert fake.produced - before <= 1  # within the step that was under way
    gate.set()
    await wait_until_free(client)
    again = await stream(client, max_tokens=2)
    assert contents(again) == ["", "tok", " tok"]


async def test_disconnect_during_a_whole_reply_cancels_it(make_client):
    fake = FakeModel(reply=lambda m, s: "tok " * 1000, token_delay=0.05)
    client = await make_client(fake)
    pending = asyncio.ensure_future(client.post(CHAT, json={"messages": USER}))
    assert await asyncio.to_thread(fake.started.wait, 30)
    pending.cancel()  # the client gives up: its connection is closed
    with pytest.raises(asyncio.CancelledError):
        await pending
    await until(lambda: fake.cancelled + fake.completed, "the generation to end")
    assert fake.cancelled == 1 and fake.completed == 0
    await wait_until_free(client)


# ---------------------------------------------------------------- real clients on a real server


@pytest.fixture
def serve(aiohttp_server):
    """A real server on 127.0.0.1 (a real port); returns its /v1 base URL."""
    async def start(*backends, **changes) -> str:
        server = await aiohttp_server(create_app(replace(WebConfig(), **changes), list(backends)))
        return f"http://127.0.0.1:{server.port}/v1"
    return start


def sdk(base_url: str, api_key: str = "unused") -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=base_url, api_key=api_key, max_retries=0, timeout=30,
                              http_client=openai.DefaultAsyncHttpxClient(trust_env=False))


async def test_openai_sdk_streams_answers_and_lists_models(serve):
    fake = FakeModel(reply=lambda m, s: "Hi 👋 there, friend")
    async with sdk(await serve(fake)) as client:
        models = [m.id async for m in client.models.list()]
        assert models == [MODEL]
        assert (await client.models.retrieve(MODEL)).owned_by == "nanochat-tui"

        pieces, finish, usage, ids = [], None, None, set()
        chunks = await client.chat.completions.create(
            model=MODEL, messages=USER, stream=True, stream_options={"include_usage": True},
            temperature=0, max_completion_tokens=50, seed=3, stop=[", fr"], extra_body={"top_k": 5})
        async for chunk in chunks:
            ids.add(chunk.id)
            if chunk.usage is not None:
                usage = chunk.usage
            for choice in chunk.choices:
                pieces.append(choice.delta.content or "")
                finish = choice.finish_reason or finish
        assert "".join(pieces) == "Hi 👋 there" and finish == "stop" and len(ids) == 1
        assert usage.prompt_tokens == 10 and usage.total_tokens == usage.prompt_tokens + usage.completion_tokens
        assert fake.calls[-1][1] == SamplingParams(temperature=0.0, top_k=5, max_tokens=50, seed=3)

        whole = await client.chat.completions.create(model=MODEL, messages=USER, max_tokens=2)
        assert whole.object == "chat.completion" and whole.model == MODEL
        assert whole.choices[0].message.role == "assistant" and whole.choices[0].message.content == "Hi 👋"
        assert whole.choices[0].finish_reason == "length"
        assert (whole.usage.prompt_tokens, whole.usage.completion_tokens, whole.usage.total_tokens) == (10, 2, 12)


async def test_openai_sdk_errors_carry_the_rulebooks_words(serve):
    async with sdk(await serve(FakeModel())) as client:
        with pytest.raises(openai.BadRequestError) as bad:
            await client.chat.completions.create(model=MODEL, messages=USER, temperature=2.5)
        assert bad.value.status_code == 400 and "Temperature must be between 0.0 and 2.0" in bad.value.message
        assert bad.value.param == "temperature" and bad.value.type == "invalid_request_error"
        with pytest.raises(openai.BadRequestError, match="The last message must be from the user"):
            await client.chat.completions.create(model=MODEL, messages=[{"role": "assistant", "content": "hi"}], stream=True)
        with pytest.raises(openai.BadRequestError, match="top_p is not supported"):
            await client.chat.completions.create(model=MODEL, messages=USER, top_p=0.5)
        with pytest.raises(openai.NotFoundError) as missing:
            await client.chat.completions.create(model="gpt-4o", messages=USER)
        assert missing.value.code == "model_not_found"


async def test_openai_sdk_with_a_wrong_key_is_an_authentication_error(serve):
    base = await serve(FakeModel(), api_key="s3cret")
    async with sdk(base, "wrong") as client:
        with pytest.raises(openai.AuthenticationError, match="Missing or wrong API key"):
            await client.chat.completions.create(model=MODEL, messages=USER)
        with pytest.raises(openai.AuthenticationError):
            await client.models.list()
    async with sdk(base, "s3cret") as client:
        reply = await client.chat.completions.create(model=MODEL, messages=USER)
        assert reply.choices[0].message.content == "You said: hello"


async def test_openai_sdk_sees_an_engine_error_mid_stream(serve):
    async with sdk(await serve(FakeModel(reply=lambda m, s: "a b c", error_after=1))) as client:
        chunks = await client.chat.completions.create(model=MODEL, messages=USER, stream=True)
        with pytest.raises(openai.APIError, match="engine exploded"):
            async for _ in chunks:
                pass


@pytest.fixture(scope="module")
def real_model():
    from nanochat_core import load_chat_model

    return load_chat_model(base_dir=FIXTURES / GEN / "base_dir", device="cpu")


async def test_remote_chat_model_and_the_sdk_get_what_the_sse_endpoint_and_reply_give(serve, real_model):
    greedy = SamplingParams(temperature=0.0, top_k=50, max_tokens=24, seed=42)
    prompts = ["hello", "What is 12 times 7?"]
    expected = [await asyncio.to_thread(real_model.reply, [{"role": "user", "content": p}], greedy) for p in prompts]
    assert all(expected)  # random weights, but real text comes out
    base = await serve(real_model)
    remote = await asyncio.to_thread(RemoteChatModel, base)
    assert remote.model == "nanochat-d4" and remote.info.model_tag == "nanochat-d4"
    async with aiohttp.ClientSession() as http, sdk(base) as client:
        for prompt, reply in zip(prompts, expected):
            messages = [{"role": "user", "content": prompt}]
            got = await asyncio.to_thread(remote.reply, messages, greedy)
            sse = await http.post(base.removesuffix("/v1") + "/chat/completions",
                                  json={"messages": messages, "temperature": 0, "max_tokens": 24})
            tokens = [json.loads(line[6:]).get("token", "") for line in (await sse.text()).split("\n\n") if line]
            whole = await client.chat.completions.create(model="nanochat-d4", messages=messages, temperature=0, max_tokens=24)
            assert got == "".join(tokens) == whole.choices[0].message.content == reply, prompt
    assert remote.notices == []  # every optional field (top_k, seed, stream_options) was accepted
