"""LLM traffic recognition: request shapes per provider, replies whole and streamed."""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sidecar.llm import LlmCall, LlmReply, read_reply, recognise

FAST = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
ROLES = {"system", "user", "assistant", "tool"}
BEDROCK = "bedrock-runtime.us-east-1.amazonaws.com"
SSE = "text/event-stream"
JSON = "application/json"


def sse(*events: object, newline: str = "\n") -> bytes:
    """A stream of SSE events; an event is its data, or (event name, data)."""
    lines = []
    for event in events:
        if isinstance(event, tuple):
            lines.append(f"event: {event[0]}")
            event = event[1]
        lines += ["data: " + (event if isinstance(event, str) else json.dumps(event)), ""]
    return (newline.join(lines) + newline).encode()


def chat_chunk(delta: dict[str, object], finish: str | None = None, index: int = 0) -> object:
    return {
        "object": "chat.completion.chunk",
        "choices": [{"index": index, "delta": delta, "finish_reason": finish}],
    }


# --- requests: OpenAI ---------------------------------------------------------------------

CHAT_BODY = {
    "model": "gpt-4o",
    "stream": True,
    "messages": [
        {"role": "developer", "content": "Be terse."},
        {"role": "system", "content": [{"type": "text", "text": "Never reveal keys."}]},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "What is in this image?"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
                {"type": "input_text", "text": "And the weather?"},
            ],
        },
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "18C and sunny"},
        {"role": "assistant", "content": "It is 18C."},
        {"role": "user", "content": "Thanks"},
    ],
}


def test_openai_chat_multi_turn():
    call = recognise("api.openai.com", "/v1/chat/completions?trace=1", CHAT_BODY)
    assert call == LlmCall(
        provider="openai",
        model="gpt-4o",
        messages=(
            ("system", "Be terse."),
            ("system", "Never reveal keys."),
            ("user", "What is in this image?\nAnd the weather?"),
            ("assistant", '{"city": "Paris"}'),
            ("tool", "18C and sunny"),
            ("assistant", "It is 18C."),
            ("user", "Thanks"),
        ),
        stream=True,
    )
    assert call.prompt() == (
        "Be terse.\n\nNever reveal keys.\n\nWhat is in this image?\nAnd the weather?\n\nThanks"
    )
    assert call.context() == (
        "system: Be terse.\n\nsystem: Never reveal keys.\n\n"
        "user: What is in this image?\nAnd the weather?\n\n"
        'assistant: {"city": "Paris"}\n\ntool: 18C and sunny\n\n'
        "assistant: It is 18C.\n\nuser: Thanks"
    )


def test_openai_compatible_host_and_azure_deployment_as_model():
    body = {"messages": [{"role": "user", "content": "hi"}], "stream": "true"}
    local = recognise("localhost", "/v1/chat/completions", {**body, "model": "llama3"})
    assert local == LlmCall("openai", "llama3", (("user", "hi"),), stream=False)
    path = "/openai/deployments/gpt4o-prod/chat/completions?api-version=2024-10-21"
    azure = recognise("myres.openai.azure.com", path, body)
    assert azure is not None
    assert azure.model == "gpt4o-prod"


def test_assistant_text_and_tool_calls_share_one_message_and_unknown_roles_are_user():
    body = {
        "model": "m",
        "messages": [
            {
                "role": "assistant",
                "content": "Checking.",
                "tool_calls": [{"function": {"name": "f", "arguments": {"a": 1}}}],
            },
            {"role": "function", "name": "f", "content": "ok"},
            {"role": "narrator", "content": "aside"},
            "not a message",
        ],
    }
    call = recognise("api.openai.com", "/v1/chat/completions", body)
    assert call is not None
    assert call.messages == (
        ("assistant", 'Checking.\n{"a": 1}'),
        ("tool", "ok"),
        ("user", "aside"),
    )


RESPONSES_BODY = {
    "model": "gpt-4.1",
    "stream": True,
    "instructions": "You are a helpful assistant.",
    "input": [
        {
            "role": "user",
            "content": [
                {"type": "input_text", "text": "hello"},
                {"type": "input_image", "image_url": "https://example.com/cat.png"},
            ],
        },
        {
            "type": "message",
            "role": "assistant",
            "content": [{"type": "output_text", "text": "hi there"}],
        },
        {"type": "reasoning", "summary": []},
        {"type": "function_call", "call_id": "c1", "name": "lookup", "arguments": '{"q": "x"}'},
        {"type": "function_call_output", "call_id": "c1", "output": "result x"},
        {"role": "developer", "content": "dev note"},
    ],
}


def test_openai_responses_items():
    call = recognise("api.openai.com", "/v1/responses", RESPONSES_BODY)
    assert call == LlmCall(
        "openai",
        "gpt-4.1",
        (
            ("system", "You are a helpful assistant."),
            ("user", "hello"),
            ("assistant", "hi there"),
            ("assistant", '{"q": "x"}'),
            ("tool", "result x"),
            ("system", "dev note"),
        ),
        stream=True,
    )
    assert call.prompt() == "You are a helpful assistant.\n\nhello\n\ndev note"


def test_openai_responses_string_input():
    call = recognise("api.openai.com", "/v1/responses", {"model": "o3", "input": "Tell a joke"})
    assert call == LlmCall("openai", "o3", (("user", "Tell a joke"),), stream=False)
    assert call.context() == "user: Tell a joke"


@pytest.mark.parametrize(
    ("prompt", "text"),
    [("Say this is a test", "Say this is a test"), (["first", "second"], "first\nsecond")],
)
def test_openai_legacy_completions(prompt, text):
    body = {"model": "gpt-3.5-turbo-instruct", "prompt": prompt, "stream": True}
    call = recognise("api.openai.com", "/v1/completions", body)
    assert call == LlmCall("openai", "gpt-3.5-turbo-instruct", (("user", text),), stream=True)


# --- requests: Anthropic ------------------------------------------------------------------

ANTHROPIC_BODY = {
    "model": "claude-sonnet-4-5",
    "max_tokens": 1024,
    "stream": True,
    "system": [
        {"type": "text", "text": "You are a coding agent.", "cache_control": {"type": "ephemeral"}}
    ],
    "messages": [
        {"role": "user", "content": "List files"},
        {
            "role": "assistant",
            "content": [
                {"type": "thinking", "thinking": "ls will do", "signature": "sig"},
                {"type": "text", "text": "Running ls."},
                {"type": "tool_use", "id": "toolu_1", "name": "bash", "input": {"command": "ls"}},
            ],
        },
        {
            "role": "user",
            "content": [
                {
                    "type": "tool_result",
                    "tool_use_id": "toolu_1",
                    "content": [{"type": "text", "text": "a.txt b.txt"}],
                },
                {"type": "text", "text": "Now read a.txt"},
                {
                    "type": "image",
                    "source": {"type": "base64", "media_type": "image/png", "data": "AA"},
                },
            ],
        },
    ],
}


def test_anthropic_messages():
    call = recognise("api.anthropic.com", "/v1/messages", ANTHROPIC_BODY)
    assert call == LlmCall(
        "anthropic",
        "claude-sonnet-4-5",
        (
            ("system", "You are a coding agent."),
            ("user", "List files"),
            ("assistant", 'Running ls.\n{"command": "ls"}'),
            ("tool", "a.txt b.txt"),
            ("user", "Now read a.txt"),
        ),
        stream=True,
    )
    assert call.prompt() == "You are a coding agent.\n\nList files\n\nNow read a.txt"


def test_anthropic_string_system_and_string_tool_result_on_a_gateway_host():
    body = {
        "model": "claude-3-5-haiku-latest",
        "system": "Be safe.",
        "messages": [
            {"role": "user", "content": [{"type": "tool_result", "content": "exit 0"}]},
        ],
    }
    call = recognise("gateway.internal", "/anthropic/v1/messages", body)
    assert call == LlmCall(
        "anthropic", "claude-3-5-haiku-latest", (("system", "Be safe."), ("tool", "exit 0")), False
    )


# --- requests: Gemini ---------------------------------------------------------------------

GEMINI_BODY = {
    "systemInstruction": {"parts": [{"text": "You are a cat."}]},
    "contents": [
        {
            "role": "user",
            "parts": [{"text": "Hello"}, {"inlineData": {"mimeType": "image/jpeg", "data": "AA"}}],
        },
        {"role": "model", "parts": [{"functionCall": {"name": "find", "args": {"q": "mice"}}}]},
        {
            "role": "user",
            "parts": [{"functionResponse": {"name": "find", "response": {"count": 3}}}],
        },
        {"role": "model", "parts": [{"text": "Meow"}]},
        {"parts": [{"text": "Again"}]},
    ],
}


def test_gemini_stream_generate_content():
    path = "/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse"
    call = recognise("generativelanguage.googleapis.com", path, GEMINI_BODY)
    assert call == LlmCall(
        "gemini",
        "gemini-2.5-flash",
        (
            ("system", "You are a cat."),
            ("user", "Hello"),
            ("assistant", '{"q": "mice"}'),
            ("tool", '{"count": 3}'),
            ("assistant", "Meow"),
            ("user", "Again"),
        ),
        stream=True,
    )
    assert call.prompt() == "You are a cat.\n\nHello\n\nAgain"


def test_gemini_on_vertex_with_snake_case_system_instruction():
    path = (
        "/v1/projects/p/locations/us-central1/publishers/google/models/"
        "gemini-2.0-flash-001:generateContent"
    )
    body = {
        "system_instruction": {"parts": [{"text": "Answer in French."}]},
        "contents": [{"role": "user", "parts": [{"text": "Hi"}]}],
    }
    call = recognise("us-central1-aiplatform.googleapis.com", path, body)
    assert call == LlmCall(
        "gemini",
        "gemini-2.0-flash-001",
        (("system", "Answer in French."), ("user", "Hi")),
        stream=False,
    )


# --- requests: Bedrock --------------------------------------------------------------------

CONVERSE_BODY = {
    "system": [{"text": "Sys A"}, {"cachePoint": {"type": "default"}}],
    "messages": [
        {
            "role": "user",
            "content": [
                {"text": "hi"},
                {"image": {"format": "png", "source": {"bytes": "AAAA"}}},
            ],
        },
        {
            "role": "assistant",
            "content": [{"toolUse": {"toolUseId": "t1", "name": "calc", "input": {"expr": "1+1"}}}],
        },
        {
            "role": "user",
            "content": [
                {
                    "toolResult": {
                        "toolUseId": "t1",
                        "content": [{"text": "2"}, {"json": {"ok": True}}],
                    }
                }
            ],
        },
    ],
    "inferenceConfig": {"maxTokens": 512},
}
CONVERSE_MESSAGES = (
    ("system", "Sys A"),
    ("user", "hi"),
    ("assistant", '{"expr": "1+1"}'),
    ("tool", '2\n{"ok": true}'),
)


def test_bedrock_converse():
    path = "/model/anthropic.claude-3-5-sonnet-20240620-v1%3A0/converse"
    call = recognise(BEDROCK, path, CONVERSE_BODY)
    assert call == LlmCall(
        "bedrock", "anthropic.claude-3-5-sonnet-20240620-v1:0", CONVERSE_MESSAGES, stream=False
    )


def test_bedrock_converse_stream_on_fips_host_with_an_arn_model_id():
    arn = "arn:aws:bedrock:us-east-1:123456789012:inference-profile/us.amazon.nova-pro-v1:0"
    path = "/model/" + arn.replace(":", "%3A").replace("/", "%2F") + "/converse-stream"
    call = recognise("bedrock-runtime-fips.us-east-1.amazonaws.com", path, CONVERSE_BODY)
    assert call == LlmCall("bedrock", arn, CONVERSE_MESSAGES, stream=True)


@pytest.mark.parametrize(
    ("model", "body", "messages"),
    [
        (
            "anthropic.claude-3-haiku-20240307-v1:0",
            {
                "anthropic_version": "bedrock-2023-05-31",
                "max_tokens": 100,
                "system": "Sys",
                "messages": [{"role": "user", "content": [{"type": "text", "text": "Hi"}]}],
            },
            (("system", "Sys"), ("user", "Hi")),
        ),
        (
            "amazon.nova-lite-v1:0",
            {
                "schemaVersion": "messages-v1",
                "system": [{"text": "Nova sys"}],
                "messages": [{"role": "user", "content": [{"text": "Hi nova"}]}],
            },
            (("system", "Nova sys"), ("user", "Hi nova")),
        ),
        (
            "amazon.titan-text-express-v1",
            {"inputText": "Summarise this", "textGenerationConfig": {"maxTokenCount": 50}},
            (("user", "Summarise this"),),
        ),
        (
            "meta.llama3-8b-instruct-v1:0",
            {"prompt": "<|begin_of_text|>Hello", "max_gen_len": 512},
            (("user", "<|begin_of_text|>Hello"),),
        ),
        (
            "mistral.mistral-7b-instruct-v0:2",
            {"prompt": "<s>[INST] hi [/INST]"},
            (("user", "<s>[INST] hi [/INST]"),),
        ),
    ],
)
@pytest.mark.parametrize("action", ["invoke", "invoke-with-response-stream"])
def test_bedrock_invoke_bodies(model, body, messages, action):
    call = recognise(BEDROCK, f"/model/{model}/{action}", body)
    assert call == LlmCall("bedrock", model, messages, stream=action.endswith("-stream"))


# --- requests: not LLM calls --------------------------------------------------------------


@pytest.mark.parametrize(
    ("host", "path", "body"),
    [
        ("hooks.slack.com", "/services/T0/B0/XX", {"text": "deploy done", "channel": "#ops"}),
        ("api.anthropic.com", "/v1/messages", {"model": "claude", "prompt": "x"}),
        ("api.anthropic.com", "/v1/messages", {"model": "claude", "messages": "hi"}),
        ("api.openai.com", "/v1/chat/completions", {"model": "gpt-4o", "messages": None}),
        ("api.openai.com", "/v1/chat/completions", [{"role": "user", "content": "hi"}]),
        ("api.openai.com", "/v1/chat/completions", "messages"),
        ("api.openai.com", "/v1/chat/completions", None),
        ("api.openai.com", "/v1/embeddings", {"model": "text-embedding-3", "input": "x"}),
        ("api.openai.com", "/v1/completions", {"model": "m", "prompt": 42}),
        ("forms.example.com", "/api/forms/1/responses", {"input": "yes"}),
        ("api.example.com", "/v1/messages/count_tokens", {"messages": []}),
        ("generativelanguage.googleapis.com", "/v1beta/models/g:generateContent", {"x": 1}),
        ("api.example.com", "/model/m/converse", {"messages": [{"content": [{"text": "a"}]}]}),
        (BEDROCK, "/guardrail/g1/version/1/apply", {"content": [{"text": {"text": "hi"}}]}),
        (BEDROCK, "/model/cohere.embed-english-v3/invoke", {"texts": ["hi"]}),
        (BEDROCK, "/model/m/converse", {"messages": {"role": "user"}}),
    ],
)
def test_not_an_llm_call(host, path, body):
    assert recognise(host, path, body) is None


def test_deeply_nested_tool_input_does_not_break_recognition():
    deep: object = {}
    for _ in range(100_000):
        deep = [deep]
    body = {
        "messages": [
            {"role": "user", "content": "hi"},
            {"role": "assistant", "content": [{"type": "tool_use", "input": deep}]},
        ]
    }
    call = recognise("api.anthropic.com", "/v1/messages", body)
    assert call is not None
    assert call.messages == (("user", "hi"),)


# --- replies: JSON ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("provider", "body", "expected"),
    [
        (
            "openai",
            {
                "object": "chat.completion",
                "choices": [
                    {
                        "index": 0,
                        "message": {
                            "role": "assistant",
                            "content": "Sure.",
                            "tool_calls": [
                                {
                                    "type": "function",
                                    "function": {"name": "f", "arguments": '{"a": 1}'},
                                }
                            ],
                        },
                        "finish_reason": "tool_calls",
                    }
                ],
            },
            LlmReply('Sure.\n{"a": 1}', "tool_calls"),
        ),
        (
            "openai",
            {
                "object": "response",
                "status": "completed",
                "output": [
                    {"type": "reasoning", "summary": []},
                    {
                        "type": "message",
                        "role": "assistant",
                        "content": [
                            {"type": "output_text", "text": "Hello", "annotations": []},
                            {"type": "refusal", "refusal": "no"},
                            {"type": "output_text", "text": "World"},
                        ],
                    },
                    {"type": "function_call", "name": "f", "arguments": '{"x":1}'},
                ],
            },
            LlmReply('Hello\nWorld\n{"x":1}', "completed"),
        ),
        (
            "openai",
            {
                "object": "response",
                "status": "incomplete",
                "incomplete_details": {"reason": "max_output_tokens"},
                "output": [
                    {"type": "message", "content": [{"type": "output_text", "text": "Par"}]}
                ],
            },
            LlmReply("Par", "max_output_tokens"),
        ),
        (
            "openai",
            {"choices": [{"text": "This is a test", "index": 0, "finish_reason": "length"}]},
            LlmReply("This is a test", "length"),
        ),
        (
            "anthropic",
            {
                "type": "message",
                "role": "assistant",
                "content": [
                    {"type": "thinking", "thinking": "hmm", "signature": "s"},
                    {"type": "text", "text": "Let me look."},
                    {
                        "type": "tool_use",
                        "id": "t",
                        "name": "read",
                        "input": {"path": "/etc/passwd"},
                    },
                ],
                "stop_reason": "tool_use",
            },
            LlmReply('Let me look.\n{"path": "/etc/passwd"}', "tool_use"),
        ),
        (
            "gemini",
            {
                "candidates": [
                    {
                        "content": {
                            "role": "model",
                            "parts": [
                                {"text": "Hi "},
                                {"text": "there"},
                                {"functionCall": {"name": "f", "args": {"k": 1}}},
                            ],
                        },
                        "finishReason": "STOP",
                    }
                ]
            },
            LlmReply('Hi there\n{"k": 1}', "STOP"),
        ),
        (
            "gemini",
            [
                {"candidates": [{"content": {"parts": [{"text": "sk-ab"}]}}]},
                {"candidates": [{"content": {"parts": [{"text": "cd"}]}, "finishReason": "STOP"}]},
                {"usageMetadata": {"totalTokenCount": 9}},
            ],
            LlmReply("sk-abcd", "STOP"),
        ),
        (
            "bedrock",
            {
                "output": {
                    "message": {
                        "role": "assistant",
                        "content": [
                            {"text": "Hello"},
                            {"toolUse": {"toolUseId": "t", "name": "n", "input": {"k": "v"}}},
                        ],
                    }
                },
                "stopReason": "tool_use",
                "usage": {"inputTokens": 1, "outputTokens": 2},
            },
            LlmReply('Hello\n{"k": "v"}', "tool_use"),
        ),
        (
            "bedrock",
            {
                "type": "message",
                "role": "assistant",
                "content": [{"type": "text", "text": "Claude on Bedrock"}],
                "stop_reason": "end_turn",
            },
            LlmReply("Claude on Bedrock", "end_turn"),
        ),
        (
            "bedrock",
            {"results": [{"outputText": "Titan says hi", "completionReason": "FINISH"}]},
            LlmReply("Titan says hi", "FINISH"),
        ),
        (
            "bedrock",
            {"generation": "Llama says hi", "generation_token_count": 4, "stop_reason": "stop"},
            LlmReply("Llama says hi", "stop"),
        ),
        (
            "bedrock",
            {"outputs": [{"text": "Mistral says hi", "stop_reason": "length"}]},
            LlmReply("Mistral says hi", "length"),
        ),
    ],
)
def test_json_replies(provider, body, expected):
    content = json.dumps(body).encode()
    assert read_reply(provider, content, "application/json; charset=utf-8") == expected


@pytest.mark.parametrize(
    ("provider", "content", "content_type"),
    [
        ("openai", b'{"error": {"message": "bad key", "type": "invalid_request_error"}}', JSON),
        ("anthropic", b'{"type": "error", "error": {"type": "overloaded_error"}}', JSON),
        ("openai", b'{"choices": [{"message": {"content": "cut sho', JSON),
        ("openai", b"<html>502 Bad Gateway</html>", "text/html"),
        ("gemini", b"\xff\xfe\xfa not utf-8", JSON),
        ("anthropic", b"[" * 100_000, JSON),
        ("openai", b'["a", 1, null]', JSON),
        (
            "bedrock",
            b"\x00\x00\x00\x8f\x00\x00\x00Rbinary frame",
            "application/vnd.amazon.eventstream",
        ),
        ("openai", b"data: [DONE]\n\n", SSE),
        ("openai", b": keep-alive\n\n", SSE),
        ("openai", b"", SSE),
    ],
)
def test_no_reply_to_read(provider, content, content_type):
    assert read_reply(provider, content, content_type) is None


def test_the_provider_picks_the_shapes():
    openai_body = json.dumps({"choices": [{"message": {"content": "hi"}}]}).encode()
    assert read_reply("anthropic", openai_body, JSON) is None
    assert read_reply("openai", openai_body, JSON) == LlmReply("hi", None)
    assert read_reply("someone-else", openai_body, JSON) == LlmReply("hi", None)


# --- replies: SSE -------------------------------------------------------------------------

OPENAI_STREAM = [
    chat_chunk({"role": "assistant", "content": ""}),
    chat_chunk({"content": "Your key is sk-proj-Ab"}),
    chat_chunk({"content": "Cd1234567890"}),
    chat_chunk({}, finish="stop"),
    {"object": "chat.completion.chunk", "choices": [], "usage": {"total_tokens": 12}},
    "[DONE]",
]


@pytest.mark.parametrize("newline", ["\n", "\r\n", "\r"])
def test_openai_chat_stream_assembles_a_split_secret(newline):
    reply = read_reply("openai", sse(*OPENAI_STREAM, newline=newline), SSE)
    assert reply == LlmReply("Your key is sk-proj-AbCd1234567890", "stop")


def test_openai_chat_stream_tool_call_arguments_and_other_choices():
    def call_delta(arguments: str) -> dict[str, object]:
        return {"tool_calls": [{"index": 0, "function": {"arguments": arguments}}]}

    stream = sse(
        ": keep-alive comment",
        chat_chunk({"content": "Calling."}),
        chat_chunk({"tool_calls": [{"index": 0, "id": "c", "function": {"name": "f"}}]}),
        chat_chunk(call_delta('{"token": "ghp_ab')),
        chat_chunk({"content": "other choice"}, index=1),
        chat_chunk(call_delta('cd"}')),
        chat_chunk({}, finish="tool_calls"),
        "[DONE]",
    )
    reply = read_reply("openai", stream, SSE)
    assert reply == LlmReply('Calling.\n{"token": "ghp_abcd"}', "tool_calls")


def test_truncated_final_event_is_dropped():
    complete = sse(chat_chunk({"content": "kept"}))
    half_line = b'data: {"choices": [{"index": 0, "delta": {"content": "LEAK'
    whole_line = b'data: {"choices": [{"index": 0, "delta": {"content": "tail"}}]}\n'
    assert read_reply("openai", complete + half_line, SSE) == LlmReply("kept", None)
    assert read_reply("openai", complete + whole_line, SSE) == LlmReply("kept", None)


def test_multi_line_data_is_joined_with_newlines():
    stream = b'data: {"choices":\ndata: [{"index": 0, "delta": {"content": "x"}}]}\n\n'
    assert read_reply("openai", stream, SSE) == LlmReply("x", None)


def responses_event(kind: str, **fields: object) -> tuple[str, object]:
    return kind, {"type": kind, **fields}


def test_openai_responses_stream():
    stream = sse(
        responses_event("response.created", response={"status": "in_progress"}),
        responses_event(
            "response.output_text.delta", output_index=0, content_index=0, delta="AKIA"
        ),
        responses_event(
            "response.output_text.delta", output_index=0, content_index=0, delta="IOSFODNN7EXAMPLE"
        ),
        responses_event("response.output_text.done", output_index=0, text="AKIAIOSFODNN7EXAMPLE"),
        responses_event("response.function_call_arguments.delta", output_index=1, delta='{"a":'),
        responses_event("response.function_call_arguments.delta", output_index=1, delta="1}"),
        responses_event(
            "response.completed",
            response={
                "status": "completed",
                "output": [{"type": "message", "content": [{"type": "output_text", "text": "x"}]}],
            },
        ),
    )
    reply = read_reply("openai", stream, SSE)
    assert reply == LlmReply('AKIAIOSFODNN7EXAMPLE\n{"a":1}', "completed")


def test_openai_responses_stream_incomplete():
    stream = sse(
        responses_event("response.output_text.delta", output_index=0, content_index=0, delta="Par"),
        responses_event(
            "response.incomplete",
            response={
                "status": "incomplete",
                "incomplete_details": {"reason": "max_output_tokens"},
            },
        ),
    )
    assert read_reply("openai", stream, SSE) == LlmReply("Par", "max_output_tokens")


def anthropic_event(kind: str, **fields: object) -> tuple[str, object]:
    return kind, {"type": kind, **fields}


def test_anthropic_stream():
    def delta(index: int, **fields: object) -> tuple[str, object]:
        return anthropic_event("content_block_delta", index=index, delta=fields)

    stream = sse(
        anthropic_event(
            "message_start",
            message={"type": "message", "role": "assistant", "content": [], "stop_reason": None},
        ),
        anthropic_event("content_block_start", index=0, content_block={"type": "text", "text": ""}),
        anthropic_event("ping"),
        delta(0, type="thinking_delta", thinking="private"),
        delta(0, type="text_delta", text="token: xoxb-12"),
        delta(0, type="text_delta", text="34-5678"),
        anthropic_event("content_block_stop", index=0),
        anthropic_event(
            "content_block_start", index=1, content_block={"type": "tool_use", "input": {}}
        ),
        delta(1, type="input_json_delta", partial_json='{"cmd": '),
        delta(1, type="input_json_delta", partial_json='"ls"}'),
        anthropic_event("content_block_stop", index=1),
        anthropic_event("message_delta", delta={"stop_reason": "tool_use"}, usage={}),
        anthropic_event("message_stop"),
    )
    reply = read_reply("anthropic", stream, SSE)
    assert reply == LlmReply('token: xoxb-1234-5678\n{"cmd": "ls"}', "tool_use")


def test_event_field_stands_in_for_a_missing_type():
    data = {"index": 0, "delta": {"type": "text_delta", "text": "from the event name"}}
    stream = sse(("content_block_delta", data))
    assert read_reply("anthropic", stream, SSE) == LlmReply("from the event name", None)


def test_gemini_stream_with_crlf():
    def chunk(text: str, finish: str | None = None) -> dict[str, object]:
        candidate = {"content": {"role": "model", "parts": [{"text": text}]}}
        return {"candidates": [candidate | ({"finishReason": finish} if finish else {})]}

    stream = sse(
        chunk("The password is hunt"),
        chunk("er2"),
        chunk("", "STOP"),
        {"usageMetadata": {"totalTokenCount": 20}},
        newline="\r\n",
    )
    reply = read_reply("gemini", stream, "text/event-stream; charset=utf-8")
    assert reply == LlmReply("The password is hunter2", "STOP")


# --- properties ---------------------------------------------------------------------------

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=30,
)
KEYS = st.sampled_from(
    [
        "messages", "contents", "system", "systemInstruction", "input", "instructions", "prompt",
        "inputText", "model", "stream", "role", "content", "parts", "text", "type", "tool_calls",
        "function", "arguments", "toolUse", "toolResult", "functionCall", "functionResponse",
        "choices", "delta", "message", "candidates", "output", "results", "generation", "index",
    ]
)  # fmt: skip
SHAPED = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=10) | KEYS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(KEYS, inner, max_size=5),
    max_leaves=40,
)
ENDPOINTS = st.sampled_from(
    [
        ("api.openai.com", "/v1/chat/completions"),
        ("api.openai.com", "/v1/responses"),
        ("api.openai.com", "/v1/completions"),
        ("api.anthropic.com", "/v1/messages"),
        ("generativelanguage.googleapis.com", "/v1beta/models/g:streamGenerateContent"),
        (BEDROCK, "/model/m/converse"),
        (BEDROCK, "/model/m/invoke"),
    ]
)


def check_call(call: LlmCall | None) -> None:
    if call is not None:
        assert all(role in ROLES and text for role, text in call.messages)
        assert isinstance(call.prompt(), str)
        assert isinstance(call.context(), str)


@FAST
@given(ENDPOINTS, JSON_VALUES | SHAPED)
def test_recognise_never_raises_on_llm_endpoints(endpoint, body):
    check_call(recognise(*endpoint, body))


@FAST
@given(st.text(max_size=40), st.text(max_size=60), JSON_VALUES)
def test_recognise_never_raises_on_anything(host, path, body):
    check_call(recognise(host, path, body))


PROVIDERS = st.sampled_from(["openai", "anthropic", "gemini", "bedrock", "other"])
CONTENT_TYPES = st.sampled_from([JSON, SSE, "text/plain", ""]) | st.text(max_size=30)


@FAST
@given(PROVIDERS, st.binary(max_size=2048), CONTENT_TYPES)
def test_read_reply_never_raises_on_bytes(provider, content, content_type):
    reply = read_reply(provider, content, content_type)
    assert reply is None or isinstance(reply.text, str)


@FAST
@given(PROVIDERS, st.lists(SHAPED, max_size=6), st.sampled_from(["\n", "\r\n"]), st.booleans())
def test_read_reply_never_raises_on_shaped_json(provider, values, newline, as_sse):
    if as_sse:
        content, content_type = sse(*values, newline=newline), SSE
    else:
        content, content_type = json.dumps(values[0] if values else None).encode(), JSON
    reply = read_reply(provider, content, content_type)
    assert reply is None or isinstance(reply.text, str)


@FAST
@given(st.text(min_size=2, max_size=60), st.data())
def test_a_secret_split_anywhere_across_deltas_comes_out_whole(secret, data):
    cut = data.draw(st.integers(1, len(secret) - 1))
    stream = sse(
        chat_chunk({"content": secret[:cut]}), chat_chunk({"content": secret[cut:]}), "[DONE]"
    )
    reply = read_reply("openai", stream, SSE)
    assert reply is not None
    assert reply.text == secret
