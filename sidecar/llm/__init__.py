"""Recognise LLM API traffic so a governance backend is given the conversation, not bytes.

Pure functions over already-parsed bodies (no I/O): `recognise` reads a request's
conversation, `read_reply` the model's answer, streamed or not.
"""

from sidecar.llm.replies import LlmReply, read_reply
from sidecar.llm.requests import LlmCall, recognise

__all__ = ["LlmCall", "LlmReply", "read_reply", "recognise"]
