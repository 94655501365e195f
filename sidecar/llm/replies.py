"""Read the model's answer out of an LLM API response, whole or streamed.

A streamed answer arrives as many small deltas and a secret the model emits may be split
across them, so the deltas are assembled into one text before anything judges it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from sidecar.llm.requests import as_list, json_text, member

_LINE_END = re.compile(r"\r\n|\r|\n")  # SSE's line endings; str.splitlines() knows too many
_RESPONSE_DELTAS = ("response.output_text.delta", "response.function_call_arguments.delta")
_RESPONSE_ENDS = ("response.completed", "response.incomplete", "response.failed")
_ANTHROPIC_DELTAS = (("text_delta", "text"), ("input_json_delta", "partial_json"))


@dataclass(frozen=True, slots=True)
class LlmReply:
    """What the model answered (tool-call arguments included, as text) and why it stopped."""

    text: str
    finish_reason: str | None


class _Reply:
    """Pieces of one answer; each new block (the text, a tool call) starts on a new line."""

    __slots__ = ("block", "finish", "parts")

    def __init__(self) -> None:
        self.parts: list[str] = []
        self.block: object = None
        self.finish: str | None = None

    def add(self, block: object, piece: object) -> None:
        if not isinstance(piece, str) or not piece:
            return
        if self.parts and block != self.block:
            self.parts.append("\n")
        self.block = block
        self.parts.append(piece)

    def end(self, reason: object) -> None:
        if isinstance(reason, str):  # the last one given wins
            self.finish = reason


Reader = Callable[[dict[str, Any], _Reply], bool]


def read_reply(provider: str, content: bytes, content_type: str) -> LlmReply | None:
    """The answer in a response body, or None when there is none to read; never raises.

    `provider` (as `recognise` named it) picks the shapes to look for.
    """
    media = content_type.split(";", 1)[0].strip().lower()
    if media == "application/vnd.amazon.eventstream":  # binary frames, not read here
        return None
    readers = _READERS.get(provider, _ALL)
    reply, seen = _Reply(), False
    try:
        chunks = _sse_chunks(content) if media == "text/event-stream" else _json_chunks(content)
        for chunk in chunks:
            seen = any(read(chunk, reply) for read in readers) or seen
    except RecursionError:  # JSON nested deeper than the parser can follow
        return None
    return LlmReply("".join(reply.parts), reply.finish) if seen else None


def _json_chunks(content: bytes) -> list[dict[str, Any]]:
    """The body's JSON object, or each object of an array (Gemini's non-SSE stream)."""
    try:
        data = json.loads(content)
    except ValueError:  # not JSON, invalid UTF-8, or cut short
        return []
    chunks = data if isinstance(data, list) else [data]
    return [chunk for chunk in chunks if isinstance(chunk, dict)]


def _sse_chunks(content: bytes) -> Iterator[dict[str, Any]]:
    for event, data in _sse_events(content.decode("utf-8", "replace")):
        try:
            chunk = json.loads(data)
        except ValueError:  # "[DONE]" and other non-JSON data
            continue
        if isinstance(chunk, dict):
            if event and "type" not in chunk:
                chunk["type"] = event
            yield chunk


def _sse_events(text: str) -> Iterator[tuple[str, str]]:
    """(event, data) per the SSE spec; an event still open at the end (truncated) is dropped."""
    event, data = "", list[str]()
    for line in _LINE_END.split(text.removeprefix("\ufeff"))[:-1]:  # the last has no line end
        if not line:
            if data:
                yield event, "\n".join(data)
            event, data = "", list[str]()
            continue
        name, _, value = line.partition(":")  # a comment has the empty name
        value = value.removeprefix(" ")
        if name == "data":
            data.append(value)
        elif name == "event":
            event = value


def _openai_chat(chunk: dict[str, Any], reply: _Reply) -> bool:
    """A chat completion or one of its stream chunks; legacy completions share the shape."""
    choices = chunk.get("choices")
    if not isinstance(choices, list):
        return False
    choice = choices[0] if choices else None
    if not isinstance(choice, dict) or choice.get("index", 0) != 0:  # n > 1: the first only
        return True
    message = choice.get("message", choice.get("delta"))
    reply.add("text", member(message, "content"))
    reply.add("text", choice.get("text"))
    for i, call in enumerate(as_list(member(message, "tool_calls"))):
        index = call.get("index", i) if isinstance(call, dict) else i
        reply.add(("call", index), member(member(call, "function"), "arguments"))
    reply.add("function_call", member(member(message, "function_call"), "arguments"))
    reply.end(choice.get("finish_reason"))
    return True


def _openai_responses(chunk: dict[str, Any], reply: _Reply) -> bool:
    """A Responses API response, or one of its stream events."""
    kind = chunk.get("type")
    if kind in _RESPONSE_DELTAS:
        reply.add((chunk.get("output_index"), chunk.get("content_index")), chunk.get("delta"))
    elif kind in _RESPONSE_ENDS:
        _response_end(member(chunk, "response"), reply)
    elif not (isinstance(kind, str) and kind.startswith("response.")):
        output = chunk.get("output")
        if not isinstance(output, list):
            return False
        for i, item in enumerate(output):
            for j, part in enumerate(as_list(member(item, "content"))):
                if member(part, "type") == "output_text":
                    reply.add((i, j), member(part, "text"))
            if member(item, "type") == "function_call":
                reply.add((i, None), member(item, "arguments"))
        _response_end(chunk, reply)
    return True


def _response_end(response: object, reply: _Reply) -> None:
    reason = member(member(response, "incomplete_details"), "reason")
    reply.end(reason if isinstance(reason, str) else member(response, "status"))


def _anthropic(chunk: dict[str, Any], reply: _Reply) -> bool:
    """An Anthropic message (also Claude on Bedrock), or one of its stream events."""
    kind, delta = chunk.get("type"), chunk.get("delta")
    if kind == "content_block_delta":
        for delta_type, key in _ANTHROPIC_DELTAS:
            if member(delta, "type") == delta_type:
                reply.add(chunk.get("index"), member(delta, key))
    elif kind == "message_delta":
        reply.end(member(delta, "stop_reason"))
    elif kind not in ("message_start", "content_block_start", "content_block_stop", "message_stop"):
        content = chunk.get("content")
        if not isinstance(content, list):
            return False
        for i, block in enumerate(content):
            if member(block, "type") == "text":
                reply.add(i, member(block, "text"))
            elif member(block, "type") == "tool_use":
                reply.add(i, json_text(member(block, "input")))
        reply.end(chunk.get("stop_reason"))
    return True


def _gemini(chunk: dict[str, Any], reply: _Reply) -> bool:
    """A GenerateContentResponse: the whole answer, or one chunk of a stream."""
    candidates = chunk.get("candidates")
    if not isinstance(candidates, list):
        return False
    candidate = candidates[0] if candidates else None
    for part in as_list(member(member(candidate, "content"), "parts")):
        call = member(part, "functionCall")
        if isinstance(call, dict):  # calls arrive whole: each is its own block
            reply.add(("call", len(reply.parts)), json_text(call.get("args")))
        else:
            reply.add("text", member(part, "text"))
    reply.end(member(candidate, "finishReason"))
    return True


def _bedrock_converse(chunk: dict[str, Any], reply: _Reply) -> bool:
    """A Converse response; Amazon Nova's invoke response has the same shape."""
    message = member(chunk.get("output"), "message")
    if not isinstance(message, dict):
        return False
    for i, block in enumerate(as_list(message.get("content"))):
        reply.add(i, member(block, "text"))
        reply.add(i, json_text(member(member(block, "toolUse"), "input")))
    reply.end(chunk.get("stopReason"))
    return True


def _bedrock_text(chunk: dict[str, Any], reply: _Reply) -> bool:
    """Invoke responses of the text-in, text-out models: Titan, Llama, Mistral."""
    if isinstance(results := chunk.get("results"), list) and results:  # Titan
        first, text_key, reason_key = results[0], "outputText", "completionReason"
    elif isinstance(outputs := chunk.get("outputs"), list) and outputs:  # Mistral
        first, text_key, reason_key = outputs[0], "text", "stop_reason"
    elif "generation" in chunk:  # Llama
        first, text_key, reason_key = chunk, "generation", "stop_reason"
    else:
        return False
    reply.add("text", member(first, text_key))
    reply.end(member(first, reason_key))
    return True


_READERS: dict[str, tuple[Reader, ...]] = {
    "openai": (_openai_chat, _openai_responses),
    "anthropic": (_anthropic,),
    "gemini": (_gemini,),
    "bedrock": (_bedrock_converse, _anthropic, _bedrock_text),
}
_ALL: tuple[Reader, ...] = (_openai_chat, _openai_responses, _gemini, *_READERS["bedrock"])
