"""The scan API's policy endpoints: `POST /v1/policies/apply` (an idempotent upsert that
adds a version) and `GET /v1/policies/by-name/{name}?env=` (the latest version).

One policy file serves both engines: the embedded one loads it, `egress-sidecar policy
push` upserts it here, `policy pull` fetches what the scan API holds into a file the
embedded engine loads. Rule features beyond the API reference's documented schema are
reported before anything is sent, never dropped.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from pydantic import BaseModel, ConfigDict

from sidecar.backends.http import Connection, bearer_client, parse_answer
from sidecar.config.credentials import IntervenCredentials
from sidecar.engine.policy import Policy

# What the API reference documents of a rule (`match` is shown empty; its keys are ours).
DOCUMENTED_RULE = frozenset({"rule_id", "description", "match", "condition", "action", "priority"})
DOCUMENTED_CONDITION = frozenset({"has_data_class"})


class AppliedPolicy(BaseModel):
    """`{ policy_id, name, env_name, version, rules }` as the API answers."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    policy_id: str
    name: str
    env_name: str
    version: int | str
    rules: list[dict[str, Any]] = []
    description: str | None = None

    def as_policy(self) -> Policy:
        """The embedded engine's policy (raises pydantic's ValidationError if a rule uses
        what the embedded engine does not know)."""
        doc: dict[str, Any] = {"name": self.name, "env_name": self.env_name, "rules": self.rules}
        if self.description:
            doc["description"] = self.description
        return Policy.model_validate(doc)


def api_document(policy: Policy) -> dict[str, Any]:
    """The request body of `POST /v1/policies/apply`: what the file says (defaults left
    out, as written), with the fields of the reference's example always present."""
    doc = policy.model_dump(mode="json", exclude_defaults=True)
    doc["env_name"] = policy.env_name
    for rule, model in zip(doc.get("rules", []), policy.rules, strict=True):
        rule.setdefault("match", {})
        rule.setdefault("condition", {})
        rule["priority"] = model.priority
    doc.setdefault("rules", [])
    return doc


def undocumented(policy: Policy) -> list[str]:
    """The rule features the API reference does not document: sent as they are, and
    listed so nobody assumes the scan API enforces them."""
    found = []
    for rule in policy.rules:
        data = rule.model_dump(exclude_defaults=True)
        for key in sorted(set(data) - DOCUMENTED_RULE):
            found.append(f"{rule.rule_id}: {key}")
        for key in sorted(data.get("match", {})):
            found.append(f"{rule.rule_id}: match.{key}")
        for key in sorted(set(data.get("condition", {})) - DOCUMENTED_CONDITION):
            found.append(f"{rule.rule_id}: condition.{key}")
    return found


class PolicyApi:
    """Client for the two policy endpoints (one `httpx.AsyncClient`, typed errors,
    retries on 429/5xx with the scan client's backoff)."""

    def __init__(self, credentials: IntervenCredentials, conn: Connection) -> None:
        if credentials.api_key is None:
            raise ValueError("INTERVEN_API_KEY is not set")
        self._http = bearer_client(
            str(credentials.gateway_url), credentials.api_key, "INTERVEN_API_KEY", conn
        )

    async def apply(self, policy: Policy) -> AppliedPolicy:
        payload = api_document(policy)
        data = await self._http.request_json(
            "POST", "/v1/policies/apply", "policy apply", json=payload, detail=True
        )
        return parse_answer(AppliedPolicy, data, "policy apply")

    async def by_name(self, name: str, env: str) -> AppliedPolicy:
        path = f"/v1/policies/by-name/{quote(name, safe='')}?env={quote(env, safe='')}"
        data = await self._http.request_json("GET", path, "policy fetch", detail=True)
        return parse_answer(AppliedPolicy, data, "policy fetch")

    async def aclose(self) -> None:
        await self._http.aclose()
