"""What the engine concludes: reason codes, findings and the local verdict."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple

from sidecar.engine import checks
from sidecar.engine.decisions import Decision

CREDENTIALS = "CREDENTIALS"


# Reason codes the engine can give (policies match on them).
SECRET_EXFILTRATION = "SECRET_EXFILTRATION"


OWN_CREDENTIAL = "OWN_CREDENTIAL"


PII_HIGH_RISK = "PII_HIGH_RISK"


SSRF = "SSRF"


DNS_EXFILTRATION = "DNS_EXFILTRATION"


READ_THEN_WRITE = "READ_THEN_WRITE"


UNREDACTABLE = "UNREDACTABLE"


# No host that parses: nothing can be judged, so whatever the policy says it is refused.
DESTINATION_UNPARSEABLE = "DESTINATION_UNPARSEABLE"


# A documented example or test value of a credential (or of a card number, an IBAN) going
# to a recognised service: flagged, allowed by the default policy (coding agents send docs
# and fixtures). Elsewhere it is SECRET_EXFILTRATION (or the PII rules) as well.
EXAMPLE_CREDENTIAL = "EXAMPLE_CREDENTIAL"


EXAMPLE_DATA = "EXAMPLE_DATA"


# A credential first used at one party, now sent to another (issuer by use).
CREDENTIAL_REUSE = "CREDENTIAL_REUSE"


# A long random token in the URL to a destination the sidecar does not recognise: a fact
# for policies; the default does not refuse it (document ids, CDN keys look the same).
OPAQUE_URL_TOKEN = "OPAQUE_URL_TOKEN"


# More candidates than the scan's budget (near-matches by the thousand): the scan stopped
# unfinished, so what the request carries is unknown and it is refused, whatever the policy.
SCAN_LIMIT = "SCAN_LIMIT"


class Finding(NamedTuple):
    """One value found (a named tuple: a body can hold thousands, each built cheaply)."""

    kind: str
    data_class: str
    location: str
    encoding: str | None
    value_hash: str
    severity: float
    own_destination: bool
    high_risk: bool
    start: int
    end: int
    # Where else the same value sits in the same text (start, end): one finding per
    # value and location, but SANITIZE must cut every copy.
    repeats: tuple[tuple[int, int], ...] = ()
    confidence: str = checks.SHAPED  # verified, shaped or example (`checks.confidence`)

    def signal(self) -> dict[str, Any]:
        """What may be exported about a finding: never the value."""
        return {
            "engine": "local",
            "kind": self.kind,
            "data_class": self.data_class,
            "location": self.location,
            "encoding": self.encoding,
            "value_hash": self.value_hash,
            "own_destination": self.own_destination,
            "confidence": self.confidence,
        }


@dataclass(frozen=True, slots=True)
class LocalVerdict:
    decision: Decision
    risk_score: float
    reason_codes: list[str]
    tool_name: str
    operation: str
    classifications: list[str]
    signals: list[dict[str, Any]]
    findings: list[Finding]
    sanitized_body: Any = None
    policy_id: str | None = None
    policy_name: str | None = None
    rule_id: str | None = None

    @property
    def risk_band(self) -> str:
        return risk_band(self.risk_score)


@dataclass(frozen=True, slots=True)
class ResponseObservation:
    data_classes: list[str]
    # The scan's budget ran out: only what was found before it is fingerprinted.
    scan_limited: bool = False


def unparseable() -> LocalVerdict:
    """The verdict for a request whose destination cannot be read: always a refusal."""
    return LocalVerdict(
        decision=Decision.DENY,
        risk_score=1.0,
        reason_codes=[DESTINATION_UNPARSEABLE],
        tool_name="custom_proxy",
        operation="unknown",
        classifications=[],
        signals=[{"engine": "local", "kind": "destination_unparseable"}],
        findings=[],
    )


def scan_limited(tool: str, operation: str) -> LocalVerdict:
    """The verdict for a request whose scan ran out of budget (`ScanLimit`): what it
    carries is unknown, so it is refused, whatever the policy, and nothing is reported
    as found."""
    return LocalVerdict(
        decision=Decision.DENY,
        risk_score=1.0,
        reason_codes=[SCAN_LIMIT],
        tool_name=tool,
        operation=operation,
        classifications=[],
        signals=[{"engine": "local", "kind": "scan_limit"}],
        findings=[],
    )


def risk_band(score: float) -> str:
    if score >= 0.85:
        return "CRITICAL"
    if score >= 0.6:
        return "HIGH"
    if score >= 0.3:
        return "MEDIUM"
    return "LOW"
