"""Recognise LLM API requests and read the conversation out of them.

A governance backend judges what an agent says to a model, not transport bytes: each
provider's request shape is reduced to one flat list of (role, text) so policy is written
once. Content blocks are read by shape rather than per provider, because gateways and
Bedrock reuse each other's shapes (Anthropic and Nova bodies on Bedrock, for instance).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

Message = tuple[str, str]

# Unknown roles count as "user": their text then stays in the prompt a reviewer judges.
_ROLES = {
    "system": "system",
    "developer": "system",
    "user": "user",
    "assistant": "assistant",
    "model": "assistant",
    "tool": "tool",
    "function": "tool",
}
_BEDROCK_HOST = re.compile(r"bedrock-runtime(?:-fips)?\.[a-z0-9-]+\.amazonaws\.com")
_BEDROCK_PATH = re.compile(r"/model/(.+)/(converse(?:-stream)?|invoke(?:-with-response-stream)?)")
_GEMINI_MODEL = re.compile(r"(?:^|/)models/([^/:]+):")
_AZURE_DEPLOYMENT = re.compile(r"/deployments/([^/]+)/")


@dataclass(frozen=True, slots=True)
class LlmCall:
    """One request to a model, reduced to what a reviewer needs to judge it."""

    provider: str
    model: str | None
    messages: tuple[Message, ...]
    stream: bool

    def prompt(self) -> str:
        """What the caller wrote (system and user turns): Kirtonic's prompt-extraction rule."""
        return "\n\n".join(text for role, text in self.messages if role in ("system", "user"))

    def context(self) -> str:
        """The whole conversation, so a reviewer sees what the prompt is answering."""
        return "\n\n".join(f"{role}: {text}" for role, text in self.messages)


def recognise(host: str, path: str, body: object) -> LlmCall | None:
    """The LLM call a request makes, or None; never raises, whatever the body holds."""
    try:
        return _recognise(host.lower().rstrip("."), path.split("?", 1)[0], body)
    except RecursionError:  # JSON nested deeper than the walk can follow
        return None


def member(value: object, key: str) -> object:
    """`value[key]` when `value` is a JSON object; lets untrusted shapes be walked safely."""
    return value.get(key) if isinstance(value, dict) else None


def as_list(value: object) -> list[Any]:
    return value if isinstance(value, list) else []


def json_text(value: object) -> str:
    """Structured tool input as text, so it is judged like any other text."""
    if value is None:
        return ""
    try:
        return json.dumps(value, ensure_ascii=False)
    except (TypeError, ValueError, RecursionError):
        return ""


def _str(value: object) -> str | None:
    return value if isinstance(value, str) else None


def _recognise(host: str, path: str, body: object) -> LlmCall | None:
    if not isinstance(body, dict):
        return None
    if _BEDROCK_HOST.fullmatch(host):
        return _bedrock(path, body)
    if ":generateContent" in path or ":streamGenerateContent" in path:
        return _gemini(path, body)
    stream = body.get("stream") is True
    if path.endswith("/v1/messages"):
        messages = _chat(body.get("system"), body.get("messages"))
        return _call("anthropic", _str(body.get("model")), messages, stream)
    model = _str(body.get("model"))
    if model is None and (deployment := _AZURE_DEPLOYMENT.search(path)):
        model = unquote(deployment.group(1))  # Azure OpenAI names the model in the path
    if path.endswith("/chat/completions"):
        return _call("openai", model, _chat(None, body.get("messages")), stream)
    if model is None:  # bare `/responses` and `/completions` paths need more evidence
        return None
    if path.endswith("/responses"):
        return _call("openai", model, _responses(body), stream)
    if path.endswith("/completions") and isinstance(body.get("prompt"), str | list):
        return _call("openai", model, _segments("user", body["prompt"]), stream)
    return None


def _call(
    provider: str, model: str | None, messages: list[Message] | None, stream: bool
) -> LlmCall | None:
    if messages is None:
        return None
    return LlmCall(provider, model, tuple(messages), stream)


def _gemini(path: str, body: dict[str, Any]) -> LlmCall | None:
    system = body.get("systemInstruction", body.get("system_instruction"))
    parts = system.get("parts") if isinstance(system, dict) else system
    match = _GEMINI_MODEL.search(path)
    model = unquote(match.group(1)) if match else None
    stream = ":streamGenerateContent" in path
    return _call("gemini", model, _chat(parts, body.get("contents")), stream)


def _bedrock(path: str, body: dict[str, Any]) -> LlmCall | None:
    match = _BEDROCK_PATH.fullmatch(path)
    if match is None:
        return None
    model, action = unquote(match.group(1)), match.group(2)
    if action.startswith("converse") or "messages" in body:  # Converse, Anthropic, Nova
        messages = _chat(body.get("system"), body.get("messages"))
    else:  # Titan, Llama, Mistral: one raw prompt string
        prompt = _str(body.get("inputText", body.get("prompt")))
        messages = None if prompt is None else _segments("user", prompt)
    return _call("bedrock", model, messages, action.endswith("-stream"))


def _chat(system: object, messages: object) -> list[Message] | None:
    """System prompt(s) first, then each turn; None when there is no list of turns."""
    if not isinstance(messages, list):
        return None
    out = _segments("system", system)
    for message in messages:
        out += _turn(message)
    return out


def _responses(body: dict[str, Any]) -> list[Message] | None:
    items = body.get("input")
    if isinstance(items, str):
        items = [{"role": "user", "content": items}]
    if not isinstance(items, list):
        return None
    out = _segments("system", body.get("instructions"))
    for item in items:
        kind = member(item, "type")
        if kind == "function_call":
            out += _segments("assistant", member(item, "arguments"))
        elif kind == "function_call_output":
            out += _segments("tool", member(item, "output"))
        else:
            out += _turn(item)
    return out


def _turn(message: object) -> list[Message]:
    """One message's text; tool calls become text, tool results become "tool" turns."""
    if not isinstance(message, dict):
        return []
    role = message.get("role")
    role = _ROLES.get(role, "user") if isinstance(role, str) else "user"
    content = message["content"] if "content" in message else message.get("parts")
    blocks = [content] if isinstance(content, str) else as_list(content)
    calls = [member(call, "function") for call in as_list(message.get("tool_calls"))]
    calls.append(message.get("function_call"))
    for call in calls:
        arguments = member(call, "arguments")
        blocks.append(arguments if isinstance(arguments, str) else json_text(arguments))
    return _segments(role, blocks)


def _segments(role: str, content: object) -> list[Message]:
    """The text of a content value; adjacent blocks of one role join into one message."""
    blocks = [content] if isinstance(content, str) else as_list(content)
    out: list[Message] = []
    for block in blocks:
        override, text = _block(block)
        here = override or role
        if not text:
            continue
        if out and out[-1][0] == here:
            out[-1] = (here, f"{out[-1][1]}\n{text}")
        else:
            out.append((here, text))
    return out


def _block(block: object) -> tuple[str | None, str]:
    """(role override, text) of a content block in any provider's shape; images give none."""
    if isinstance(block, str):
        return None, block
    if not isinstance(block, dict):
        return None, ""
    kind = block.get("type")
    if kind == "tool_use":
        return None, json_text(block.get("input"))
    if kind == "tool_result":
        return "tool", _joined(block.get("content"))
    if isinstance(use := block.get("toolUse"), dict):
        return None, json_text(use.get("input"))
    if isinstance(result := block.get("toolResult"), dict):
        return "tool", _joined(result.get("content"))
    if isinstance(call := block.get("functionCall", block.get("function_call")), dict):
        return None, json_text(call.get("args"))
    if isinstance(reply := block.get("functionResponse", block.get("function_response")), dict):
        return "tool", json_text(reply.get("response"))
    return None, _str(block.get("text")) or ""


def _joined(content: object) -> str:
    """A tool result's text; one level only, so nesting cannot drive deep recursion."""
    blocks = [content] if isinstance(content, str) else as_list(content)
    texts = (_str(b) or _str(member(b, "text")) or json_text(member(b, "json")) for b in blocks)
    return "\n".join(text for text in texts if text)
