"""The embedded scan engine: request in, verdict facts out. No I/O, no asyncio.

`Engine.decide()` finds secrets, personal data and risky destinations in a request,
asks the policy what to do, and prepares the redacted body for SANITIZE.
`Engine.observe_response()` fingerprints sensitive values an upstream returned, so a
later request carrying them somewhere else is flagged (read-then-write exfiltration).
Every scan works within a counted budget (`sidecar.engine.budget`): a request that
holds more candidates than its size allows is refused with `SCAN_LIMIT`.
"""

from __future__ import annotations

import hashlib
import re
import threading
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, NamedTuple
from urllib.parse import parse_qsl, unquote, urlsplit

from sidecar.engine import checks, destinations
from sidecar.engine.budget import Budget, ScanLimit
from sidecar.engine.detectors import BY_ID, FINANCIAL, PII, SECRETS, Detector
from sidecar.engine.fields import Field, decoded_layers, request_fields
from sidecar.engine.matcher import Hit, Matcher, value_hash
from sidecar.engine.policy import Facts, Policy, evaluate, evaluate_destination
from sidecar.engine.redact import Redaction, redact_body
from sidecar.verdict import Decision

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
# More candidates than the scan's budget (near-matches by the thousand): the scan stopped
# unfinished, so what the request carries is unknown and it is refused, whatever the policy.
SCAN_LIMIT = "SCAN_LIMIT"

_SECRET_KEY = Detector(
    "generic_secret", SECRETS, "", checks.generic_secret, severity=0.75, cost=5
)  # keyword context from a JSON/form key
_IP_ADDRESS = BY_ID["ip_address"]
_AUTH_HEADER = Detector("auth_header_credential", CREDENTIALS, "", severity=0.1)
_SECRET_KEY_WORDS = re.compile(
    r"(?i)api[_\-]?key|secret|token|passw(or)?d|access[_\-]?key|private[_\-]?key|credential|auth"
)


@lru_cache(maxsize=4096)
def _secret_key(key: str) -> bool:
    """Keys repeat across a document; the keyword test is cached per key."""
    return bool(_SECRET_KEY_WORDS.search(key))


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

    @property
    def approval_needed(self) -> bool:
        return self.decision is Decision.REQUIRE_APPROVAL


@dataclass(frozen=True, slots=True)
class ResponseObservation:
    data_classes: list[str]
    fields_redacted_count: int
    content_fingerprint: str
    # The scan's budget ran out: only what was found before it is fingerprinted.
    scan_limited: bool = False


_OVERRIDE_HEADERS = frozenset({"x-http-method-override", "x-http-method", "x-method-override"})


def method_overrides(headers: dict[str, str], query: str) -> frozenset[str]:
    """The methods a request asks to be treated as, which servers honour."""
    found = {v.strip().upper() for k, v in headers.items() if k.lower() in _OVERRIDE_HEADERS}
    found.update(v.strip().upper() for k, v in parse_qsl(query) if k.lower() == "_method")
    return frozenset(m for m in found if m)


def request_path(raw: str) -> str:
    """The path as servers resolve it, for policy `paths` rules: percent-decoded (layered
    encodings too), `;parameters` dropped, empty and dot segments resolved — so
    `/%61dmin`, `//admin`, `/x/../admin` and `/admin;v=1` are all `/admin`."""
    path = raw or "/"
    for _ in range(3):
        decoded = unquote(path)
        if decoded == path:
            break
        path = decoded
    segments: list[str] = []
    for segment in path.split("/"):
        segment = segment.split(";", 1)[0]
        if segment in ("", "."):
            continue
        if segment == "..":
            if segments:
                segments.pop()
            continue
        segments.append(segment)
    trailing = "/" if path.endswith("/") and segments else ""
    return "/" + "/".join(segments) + trailing


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


class FingerprintStore:
    """Bounded memory of sensitive values seen in responses: hash → host it came from."""

    def __init__(self, capacity: int = 50_000) -> None:
        self._capacity = capacity
        self._seen: OrderedDict[str, str] = OrderedDict()
        self._lock = threading.Lock()

    def remember(self, hashes: Iterable[str], host: str) -> None:
        with self._lock:
            for h in hashes:
                self._seen[h] = host
                self._seen.move_to_end(h)
            while len(self._seen) > self._capacity:
                self._seen.popitem(last=False)

    def source(self, value_hash: str) -> str | None:
        with self._lock:
            return self._seen.get(value_hash)

    def sources(self, hashes: Iterable[str]) -> list[str | None]:
        """`source()` of each, under one lock (a request can carry thousands)."""
        with self._lock:
            return [self._seen.get(h) for h in hashes]

    def __len__(self) -> int:
        return len(self._seen)


@dataclass
class Engine:
    """Detection + policy. Thread-safe: scans may run in worker threads."""

    policy: Policy
    internal_hosts: tuple[str, ...] = ()
    fingerprints: FingerprintStore = field(default_factory=FingerprintStore)
    matcher: Matcher = field(default_factory=Matcher)

    def decide(self, method: str, url: str, headers: dict[str, str], body: Any) -> LocalVerdict:
        try:
            parts = urlsplit(url)
            host = (parts.hostname or "").lower()
        except ValueError:  # e.g. an unclosed IPv6 literal
            host = ""
        if not host:
            return unparseable()
        path = request_path(parts.path)
        tool, operation = destinations.recognise_tool(method.upper(), host, path)
        findings, complete = self._scan(url, headers, body, host, method)
        if not complete:
            return scan_limited(tool, operation)

        reasons: set[str] = set()
        classes: set[str] = set()
        signals = [f.signal() for f in findings]
        risk = 0.05
        # Reasons and risk follow from a finding's class, ownership and risk, which the
        # findings of a large body share: each combination is judged once.
        judged = {(f.data_class, f.own_destination, f.high_risk, f.severity) for f in findings}
        for data_class, own, high_risk, severity in judged:
            if data_class in (SECRETS, CREDENTIALS) and own:
                reasons.add(OWN_CREDENTIAL)
                classes.add(CREDENTIALS)
                risk = max(risk, 0.2)
                continue
            classes.add(data_class)
            if data_class in (FINANCIAL, PII):
                classes.add(PII)
            if data_class == SECRETS:
                reasons.update((SECRETS, SECRET_EXFILTRATION))
            elif high_risk:
                reasons.add(PII)
                reasons.add(PII_HIGH_RISK)
            else:
                reasons.add(PII)
            risk = max(risk, severity)
        sources = self.fingerprints.sources(f.value_hash for f in findings)
        if any(
            source is not None and source != host
            for f, source in zip(findings, sources, strict=True)
            if not (f.data_class in (SECRETS, CREDENTIALS) and f.own_destination)
        ):
            reasons.add(READ_THEN_WRITE)
            risk = max(risk, 0.9)

        risk = max(risk, self._judge_host(host, reasons, signals))

        facts = Facts(
            method=method.upper(),
            host=host,
            path=path,
            tool=tool,
            data_classes=frozenset(classes),
            reasons=frozenset(reasons),
            findings=frozenset(f.kind for f in findings if not f.own_destination),
            risk=risk,
            method_overrides=method_overrides(headers, parts.query),
        )
        rule = evaluate(self.policy, facts)
        decision = rule.action if rule is not None else Decision.ALLOW
        reason_codes = sorted(reasons)
        sanitized: Any = None
        if decision is Decision.SANITIZE:
            sanitized = self._sanitized(body, findings)
            if sanitized is None:
                decision = Decision.DENY
                reason_codes.append(UNREDACTABLE)
        if rule is not None and decision is not Decision.ALLOW:
            reason_codes.append(f"POLICY:{rule.rule_id}")
        return LocalVerdict(
            decision=decision,
            risk_score=round(risk, 3),
            reason_codes=reason_codes,
            tool_name=tool,
            operation=operation,
            classifications=sorted(classes),
            signals=signals,
            findings=findings,
            sanitized_body=sanitized,
            policy_id=self.policy.policy_id if rule is not None else None,
            policy_name=self.policy.name if rule is not None else None,
            rule_id=rule.rule_id if rule is not None else None,
        )

    def judge_destination(self, host: str, port: int) -> LocalVerdict:
        """A tunnel's destination on its own (CONNECT, a redirected connection), before
        any request: SSRF, DNS exfiltration and the policy's rules that decide every
        request there (`evaluate_destination`). DENY or ALLOW; whatever else a rule wants
        is decided per request inside the tunnel."""
        host = host.lower().rstrip(".")
        if not host:
            return unparseable()
        reasons: set[str] = set()
        signals: list[dict[str, Any]] = []
        risk = max(0.05, self._judge_host(host, reasons, signals))
        rule = evaluate_destination(self.policy, host, frozenset(reasons), risk)
        deny = rule is not None
        reason_codes = sorted(reasons) + ([f"POLICY:{rule.rule_id}"] if rule else [])
        return LocalVerdict(
            decision=Decision.DENY if deny else Decision.ALLOW,
            risk_score=round(risk, 3),
            reason_codes=reason_codes,
            tool_name="custom_proxy",
            operation="connect",
            classifications=[],
            signals=signals,
            findings=[],
            policy_id=self.policy.policy_id if rule else None,
            policy_name=self.policy.name if rule else None,
            rule_id=rule.rule_id if rule else None,
        )

    def _judge_host(self, host: str, reasons: set[str], signals: list[dict[str, Any]]) -> float:
        """SSRF and DNS exfiltration facts about a host as written; returns the risk."""
        risk = 0.0
        if not destinations.host_matches(host, self.internal_hosts):
            target = destinations.ssrf(host)
            if target is not None:
                reasons.add(SSRF)
                signals.append({"engine": "local", "kind": "ssrf", "target": target.reason})
                risk = 0.9
        if destinations.dns_exfiltration(host):
            reasons.add(DNS_EXFILTRATION)
            signals.append({"engine": "local", "kind": "dns_exfiltration"})
            risk = max(risk, 0.8)
        return risk

    def findings(
        self, url: str, headers: dict[str, str], body: Any, host: str, method: str = ""
    ) -> list[Finding]:
        """What a request carries. Raises `ScanLimit` when it holds more candidates
        than its scan's budget (never for a URL or headers alone: the budget grows with
        the text and starts far above what they can hold)."""
        found, complete = self._scan(url, headers, body, host, method)
        if not complete:
            raise ScanLimit
        return found

    def _scan(
        self, url: str, headers: dict[str, str], body: Any, host: str, method: str = ""
    ) -> tuple[list[Finding], bool]:
        """The findings, and whether the scan finished within its budget (when it did
        not, the findings are those made before it ran out)."""
        # A text body's budget is known before it is parsed (multipart parsing is
        # charged); a JSON body's once walked (walking it is not).
        text = body if isinstance(body, str) else ""
        budget = Budget.for_chars(len(url) + sum(map(len, headers.values())) + len(text))
        try:
            fields = request_fields(url, headers, body, method, budget)
        except ScanLimit:  # JSON nested too deep to walk, or multipart too costly to parse
            return [], False
        size = sum(map(len, (f.text for f in fields)))
        if not isinstance(body, str):
            budget = Budget.for_chars(size)
        out: list[Finding] = []
        first: dict[tuple[str, int, str], tuple[int, int]] = {}  # -> (finding, field)
        repeats: dict[int, list[tuple[int, int]]] = {}
        hit_fields: set[int] = set()

        def add(hit: Hit, i: int, fld: Field) -> None:
            # One finding per value and field: a decoded layer of a field shares its
            # location, and its copy (base64 of the same card) must be redacted too.
            key = (hit.detector.id, i, hit.value)
            seen = first.get(key)
            if seen is None:
                budget.spend()  # a finding costs as much again as finding it
                first[key] = (len(out), i)
                out.append(self._finding(hit, fld, host))
            else:
                repeats.setdefault(seen[0], []).append((hit.start, hit.end))

        try:
            decode_chars = min(max(2 * size, 64 * 1024), 4 * 1024 * 1024)
            fields += decoded_layers(fields, decode_chars, budget)
            for i, hit in self.matcher.find_all([f.text for f in fields], budget):
                fld = fields[i]
                if hit.detector is _IP_ADDRESS and fld.location in ("url", "header:host"):
                    continue  # the destination itself is judged as a destination
                hit_fields.add(i)
                add(hit, i, fld)
            for i, fld in enumerate(fields):
                if i in hit_fields:
                    continue
                if len(fld.text) >= checks.MIN_SECRET and fld.key and _secret_key(fld.key):
                    budget.spend(_SECRET_KEY.cost)
                    if checks.generic_secret(fld.text):
                        add(Hit(_SECRET_KEY, 0, len(fld.text), fld.text), i, fld)
                        continue
                if fld.credential_header and fld.encoding is None and len(fld.text) >= 8:
                    add(Hit(_AUTH_HEADER, 0, len(fld.text), fld.text), i, fld)
        except ScanLimit:
            return out, False
        for at, more in repeats.items():
            out[at] = out[at]._replace(repeats=tuple(more))
        return out, True

    def hidden_secrets(self, sent: str, decoded: str) -> list[str]:
        """Kinds of secret found in an encoded body's bytes as sent (`sent`, read as
        latin-1) that its decoded content (`decoded`) does not hold: data riding in what
        decoders skip — brotli metadata blocks, container header fields — which no scan of
        the decoded content could see, while the server reads the bytes as sent.

        Bytes holding more secret candidates than their scan's budget give `[SCAN_LIMIT]`
        (lower-cased, as a kind: `scan_limit`): what they hide is unknown."""
        budget = Budget.for_chars(len(sent))
        fields = [Field("body", sent)]
        try:
            fields += decoded_layers(fields, 2 * len(sent) + 1024, budget)
            texts = [f.text for f in fields]
            hits = self.matcher.find_all(texts, budget, classes=(SECRETS, CREDENTIALS))
            return sorted({hit.detector.id for _, hit in hits if hit.value not in decoded})
        except ScanLimit:
            return [SCAN_LIMIT.lower()]

    def _finding(self, hit: Hit, fld: Field, host: str) -> Finding:
        d = hit.detector
        own = False
        if d.data_class in (SECRETS, CREDENTIALS):
            if d.providers:
                own = destinations.belongs_to(host, d.providers) and (
                    fld.credential_header
                    or fld.location == "url"
                    or fld.location.startswith("query:")
                )
            else:
                own = fld.credential_header
        # kind, data class, location, encoding, value hash, severity, own, high risk, span
        return Finding(
            d.id, d.data_class, fld.location, fld.encoding, value_hash(hit.value),
            d.severity, own, d.high_risk, hit.start, hit.end,
        )  # fmt: skip

    def _sanitized(self, body: Any, findings: list[Finding]) -> Any:
        """The redacted body, or None when a finding cannot be cut out of it."""
        redactions = []
        for f in findings:
            if f.own_destination:
                continue
            if not (f.location == "body" or f.location.startswith(("body.", "form:", "part:"))):
                if f.data_class == SECRETS or f.high_risk:
                    return None  # in the URL or a header: nothing to rewrite in the body
                continue  # low-risk personal data outside the body is tolerated
            redactions.append(Redaction(f.location, f.start, f.end, f.kind, f.encoding is not None))
            whole = f.encoding is not None
            redactions.extend(Redaction(f.location, s, e, f.kind, whole) for s, e in f.repeats)
        if not redactions or body is None:
            return None
        return redact_body(body, redactions)

    def observe_response(self, host: str, body: Any) -> ResponseObservation:
        """Fingerprint sensitive values a response carried (bounded memory). A response
        holding more candidates than its scan's budget is fingerprinted as far as the
        scan got (`scan_limited`): nothing is refused here, the requests are judged."""
        findings, complete = self._scan("", {}, body, host)
        sensitive = [f for f in findings if f.data_class != CREDENTIALS]
        self.fingerprints.remember((f.value_hash for f in sensitive), host)
        text = body if isinstance(body, str) else repr(body)
        return ResponseObservation(
            data_classes=sorted({f.data_class for f in sensitive}),
            fields_redacted_count=len(sensitive),
            content_fingerprint="sha256:" + hashlib.sha256(text.encode()).hexdigest(),
            scan_limited=not complete,
        )
