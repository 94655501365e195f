"""Policies in the scan API's shape (`name`, `env_name`, `rules[]`), and their evaluation.

A rule applies when its `match` selects the request and every key of its `condition`
holds; list-valued conditions hold when any listed value is present. Rules are tried
by descending `priority` (file order breaks ties); the first that applies decides.
No rule applying means ALLOW.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable
from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from sidecar.engine.decisions import Decision
from sidecar.engine.destinations import check_host_patterns, host_matches


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RuleMatch(_Strict):
    """Which requests a rule looks at; empty lists select everything."""

    hosts: list[str] = Field(default_factory=list)
    methods: list[str] = Field(default_factory=list)
    paths: list[str] = Field(default_factory=list)
    tools: list[str] = Field(default_factory=list)

    @field_validator("methods")
    @classmethod
    def _upper(cls, value: list[str]) -> list[str]:
        return [m.upper() for m in value]

    _hosts = field_validator("hosts")(check_host_patterns)


class RuleCondition(_Strict):
    """What must have been found; every key given must hold."""

    has_data_class: list[str] = Field(default_factory=list)
    has_reason: list[str] = Field(default_factory=list)
    has_finding: list[str] = Field(default_factory=list)
    risk_at_least: float | None = Field(default=None, ge=0, le=1)
    destination_in: list[str] = Field(default_factory=list)
    destination_not_in: list[str] = Field(default_factory=list)

    _destinations = field_validator("destination_in", "destination_not_in")(check_host_patterns)


class PolicyRule(_Strict):
    rule_id: str = Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_.:\-]+$")
    description: str | None = None
    match: RuleMatch = Field(default_factory=RuleMatch)
    condition: RuleCondition = Field(default_factory=RuleCondition)
    action: Decision
    priority: int = 0


class Policy(_Strict):
    name: str = Field(min_length=1, max_length=128)
    description: str | None = None
    env_name: str = "default"
    rules: list[PolicyRule] = Field(default_factory=list)

    @model_validator(mode="after")
    def _unique_rule_ids(self) -> Policy:
        seen: set[str] = set()
        for rule in self.rules:
            if rule.rule_id in seen:
                raise ValueError(f"duplicate rule_id {rule.rule_id!r}")
            seen.add(rule.rule_id)
        return self

    @property
    def policy_id(self) -> str:
        return f"local:{self.env_name}:{self.name}"

    def ordered(self) -> list[PolicyRule]:
        return sorted(self.rules, key=lambda r: -r.priority)  # stable: file order on ties


@dataclass(frozen=True, slots=True)
class Facts:
    """What the engine established about a request, in the terms rules speak."""

    method: str
    host: str
    path: str
    tool: str
    data_classes: frozenset[str]
    reasons: frozenset[str]
    findings: frozenset[str]
    risk: float
    # Methods the request asks the server to treat it as (X-HTTP-Method-Override, ...):
    # a `methods` rule applies to those too.
    method_overrides: frozenset[str] = frozenset()


def _any(wanted: Iterable[str], present: frozenset[str]) -> bool:
    return any(w in present for w in wanted)


def rule_applies(rule: PolicyRule, facts: Facts) -> bool:
    m, c = rule.match, rule.condition
    if m.hosts and not host_matches(facts.host, m.hosts):
        return False
    if m.methods and not ({facts.method.upper(), *facts.method_overrides} & set(m.methods)):
        return False
    if m.paths and not any(fnmatch.fnmatchcase(facts.path, p) for p in m.paths):
        return False
    if m.tools and facts.tool not in m.tools:
        return False
    if c.has_data_class and not _any(c.has_data_class, facts.data_classes):
        return False
    if c.has_reason and not _any(c.has_reason, facts.reasons):
        return False
    if c.has_finding and not _any(c.has_finding, facts.findings):
        return False
    if c.risk_at_least is not None and facts.risk < c.risk_at_least:
        return False
    if c.destination_in and not host_matches(facts.host, c.destination_in):
        return False
    return not (c.destination_not_in and host_matches(facts.host, c.destination_not_in))


def evaluate(policy: Policy, facts: Facts) -> PolicyRule | None:
    """The first applicable rule by priority, or None (ALLOW)."""
    return next((r for r in policy.ordered() if rule_applies(r, facts)), None)


# What a destination alone can establish; every other reason comes from a request's content.
DESTINATION_REASONS = frozenset({"SSRF", "DNS_EXFILTRATION"})


def _destination_applies(
    rule: PolicyRule, host: str, reasons: frozenset[str], risk: float
) -> bool | None:
    """Whether `rule` applies to every request to `host` (True), to none (False), or
    depends on the request (None)."""
    m, c = rule.match, rule.condition
    if m.hosts and not host_matches(host, m.hosts):
        return False
    if c.destination_in and not host_matches(host, c.destination_in):
        return False
    if c.destination_not_in and host_matches(host, c.destination_not_in):
        return False
    unknown = bool(m.methods or m.paths or m.tools or c.has_data_class or c.has_finding)
    if c.has_reason and not _any(c.has_reason, reasons):
        if all(r in DESTINATION_REASONS for r in c.has_reason):
            return False
        unknown = True
    if c.risk_at_least is not None and risk < c.risk_at_least:
        unknown = True
    return None if unknown else True


def evaluate_destination(
    policy: Policy, host: str, reasons: frozenset[str], risk: float
) -> PolicyRule | None:
    """The rule that denies every request to `host` whatever it carries, or None.

    A tunnel (CONNECT, a redirected connection) is judged before any request exists: it
    is refused only when the first rule that could apply to a request there is sure to
    apply and denies. A rule that depends on the request and does not deny means some
    request could pass, so the tunnel opens and each request is judged inside it.
    """
    for rule in policy.ordered():
        applies = _destination_applies(rule, host, reasons, risk)
        if applies is False:
            continue
        if applies is True:
            return rule if rule.action is Decision.DENY else None
        if rule.action is not Decision.DENY:
            return None
    return None
