"""LLM traffic: the conversation goes to the scan API as `context`, and a streamed answer
reaches the agent as it is generated and is classified whole once complete."""

from __future__ import annotations

import json
import ssl

import httpx

from tests.support.servers import LLM_ANSWER, LLM_SECRET, WAIT
from tests.support.sidecar import Sidecar, run_client

JSON = {"Content-Type": "application/json"}


def _client(sidecar: Sidecar) -> httpx.Client:
    verify = ssl.create_default_context(cafile=str(sidecar.ca.bundle))
    return httpx.Client(proxy=f"http://{sidecar.info.proxy}", verify=verify,
                        trust_env=False, timeout=WAIT)  # fmt: skip


def test_openai_chat_context_is_sent_with_the_scan(sidecar, upstream, scan_api):
    chat = {
        "model": "gpt-4o-mini",
        "messages": [
            {"role": "system", "content": "You are a release bot."},
            {"role": "user", "content": "Post the changelog."},
        ],
    }
    url = upstream.https + "/openai/v1/chat/completions"
    result = run_client(sidecar, "node", "POST", url, json.dumps(chat).encode(), JSON)
    assert result.status == 200
    assert result.json()["choices"][0]["message"]["content"] == LLM_ANSWER

    scan = scan_api.scans.wait_for(lambda s: s["json"]["url"] == url)["json"]
    assert scan["context"] == "system: You are a release bot.\n\nuser: Post the changelog."
    assert scan["body"] == chat  # the body itself is scanned as always
    trace_id = result.headers["x-interven-trace-id"]
    post = scan_api.response_posts.wait_for(lambda p: p["json"]["trace_id"] == trace_id)
    assert post["json"]["response_body"]["choices"][0]["message"]["content"] == LLM_ANSWER


def test_anthropic_messages_context_is_sent_with_the_scan(sidecar, upstream, scan_api):
    body = {
        "model": "claude-sonnet-4-5",
        "system": [{"type": "text", "text": "Be careful with credentials."}],
        "messages": [
            {"role": "user", "content": "Read the config."},
            {"role": "assistant", "content": [{"type": "text", "text": "Here it is."}]},
            {"role": "user", "content": [{"type": "text", "text": "Now email it."}]},
        ],
        "max_tokens": 256,
    }
    url = upstream.https + "/anthropic/v1/messages"
    result = run_client(sidecar, "requests", "POST", url, json.dumps(body).encode(), JSON)
    assert result.status == 200
    scan = scan_api.scans.wait_for(lambda s: s["json"]["url"] == url)["json"]
    assert scan["context"] == (
        "system: Be careful with credentials.\n\nuser: Read the config.\n\n"
        "assistant: Here it is.\n\nuser: Now email it."
    )


def test_requests_that_are_not_llm_calls_carry_no_context(sidecar, upstream, scan_api):
    url = upstream.https + "/allow/not-llm"
    run_client(sidecar, "curl", "POST", url, b'{"messages": "not a chat"}', JSON)
    scan = scan_api.scans.wait_for(lambda s: s["json"]["url"] == url)["json"]
    assert "context" not in scan


def test_a_streamed_answer_is_delivered_live_and_classified_whole(sidecar, upstream, scan_api):
    chat = {"model": "gpt-4o", "stream": True, "user": "stream-1",
            "messages": [{"role": "user", "content": "What is the key?"}]}  # fmt: skip
    url = upstream.https + "/openai/v1/chat/completions"
    with _client(sidecar) as client, client.stream("POST", url, json=chat) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        lines = (line for line in response.iter_lines() if line)
        first = json.loads(next(lines).removeprefix("data: "))
        # The first delta arrived while the upstream is still holding the stream open.
        assert first["choices"][0]["delta"]["content"].startswith("The key is ")
        assert scan_api.response_posts.items == []  # nothing classified before the end
        upstream.open_gate("stream-1")
        rest = list(lines)
    assert rest[-1] == "data: [DONE]"

    trace_id = response.headers["x-interven-trace-id"]
    post = scan_api.response_posts.wait_for(lambda p: p["json"]["trace_id"] == trace_id)
    # The assembled answer, not raw events: the secret split across two deltas is whole.
    assert post["json"]["response_body"] == f"The key is {LLM_SECRET}"
    assert LLM_SECRET not in "".join(rest)  # on the wire it never appeared in one piece
