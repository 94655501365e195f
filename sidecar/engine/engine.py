"""The embedded scan engine: request in, verdict facts out. No I/O, no asyncio.

`Engine.decide()` finds secrets, personal data and risky destinations in a request,
asks the policy what to do, and prepares the redacted body for SANITIZE.
`Engine.observe_response()` fingerprints sensitive values an upstream returned, so a
later request carrying them somewhere else is flagged (read-then-write exfiltration).
Every scan works within a counted budget (`sidecar.engine.budget`): a request that
holds more candidates than its size allows is refused with `SCAN_LIMIT`.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from sidecar.engine import checks, destinations
from sidecar.engine.budget import Budget, ScanLimit
from sidecar.engine.decisions import Decision
from sidecar.engine.detectors import BY_ID, FINANCIAL, PII, SECRETS, Detector
from sidecar.engine.fields import (
    RAW,
    SECOND_LOOKS,
    Field,
    decoded_layers,
    request_fields,
    reversed_fields,
    variant_fields,
)
from sidecar.engine.matcher import Hit, Matcher, assess, value_hash
from sidecar.engine.memory import (
    MAX_NEW_USES,
    CredentialUses,
    FingerprintStore,
    SubdomainBudget,
)
from sidecar.engine.outcomes import (
    CREDENTIAL_REUSE,
    CREDENTIALS,
    DNS_EXFILTRATION,
    EXAMPLE_CREDENTIAL,
    EXAMPLE_DATA,
    OPAQUE_URL_TOKEN,
    OWN_CREDENTIAL,
    PII_HIGH_RISK,
    READ_THEN_WRITE,
    SCAN_LIMIT,
    SECRET_EXFILTRATION,
    SSRF,
    UNREDACTABLE,
    Finding,
    LocalVerdict,
    ResponseObservation,
    scan_limited,
    unparseable,
)
from sidecar.engine.policy import Facts, Policy, evaluate, evaluate_destination
from sidecar.engine.presented import (
    PUT_TOGETHER,
    as_written,
    basic_password,
    credential_issuers,
    credential_spans,
    is_presented,
    opaque_url_token,
    self_hosted,
    telling,
    without_shadowed,
)
from sidecar.engine.redact import Redaction, redact_body

_SECRET_KEY = Detector(
    "generic_secret", SECRETS, "", checks.generic_secret, severity=0.75, cost=5
)  # keyword context from a JSON/form key
_IP_ADDRESS = BY_ID["ip_address"]
_AUTH_HEADER = Detector("auth_header_credential", CREDENTIALS, "", severity=0.1, graded=False)
_REUSED = Detector("credential_reuse", SECRETS, "", severity=0.85, graded=False)
_PASSWORD_KEY = Detector("password", SECRETS, "", checks.password, severity=0.8, cost=3)
_SSN = BY_ID["us_ssn"]
_SSN_KEY = re.compile(r"(?i)^(?:ssn|social[_\-\s]?security(?:[_\-\s]?(?:number|no))?|tax[_\-]?id)$")
# Kinds whose issuer is learnt from use: opaque tokens presented in auth headers or as a
# URL's parameters (`?key=`, a presigned URL's `X-Amz-Security-Token`), and credentials
# typed into a login or token form.
_BY_USE_PRESENTED = frozenset({"auth_header_credential", "jwt", "generic_secret"})
_BY_USE_AT_LOGIN = frozenset({"password", "generic_secret", "jwt", "auth_header_credential"})
_PASSWORD_WORDS = re.compile(r"(?i)passw(or)?d|passwd|passphrase|^pwd$|^pass$")
_SECRET_KEY_WORDS = re.compile(
    r"(?i)api[_\-]?key|secret|token|passw(or)?d|passwd|passphrase|^pwd$|^pass$|access[_\-]?key|"
    r"private[_\-\s]?key|priv[_\-]?key|credential|auth|mnemonic|seed[_\-\s]?phrase"
)
# Keys that say the value is a key: a hex string there is one, not a digest.
_KEY_KEY_WORDS = re.compile(
    r"(?i)secret|private[_\-\s]?key|priv[_\-]?key|api[_\-]?key|access[_\-]?key|signing|seed"
)


@lru_cache(maxsize=4096)
def _key_says_key(key: str) -> bool:
    return bool(_KEY_KEY_WORDS.search(key))


@lru_cache(maxsize=4096)
def _secret_key(key: str) -> bool:
    """Keys repeat across a document; the keyword test is cached per key."""
    return bool(_SECRET_KEY_WORDS.search(key))


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


# Text the scan put together (joined, reversed, case-swapped, ROT13, unwrapped): searched
# for secrets only, since personal data was found as written.
_PARSED = ("form:", "part:")
MAX_OWNER_SEARCHES = 32
# Encodings whose text is not a substring of any one value the redaction can rewrite.
_UNCUTTABLE = SECOND_LOOKS | {"char-codes"}


@dataclass
class Engine:
    """Detection + policy. Thread-safe: scans may run in worker threads."""

    policy: Policy
    internal_hosts: tuple[str, ...] = ()
    fingerprints: FingerprintStore = field(default_factory=FingerprintStore)
    uses: CredentialUses = field(default_factory=CredentialUses)
    subdomains: SubdomainBudget = field(default_factory=lambda: SubdomainBudget())
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
        findings, complete = self._scan(url, headers, body, host, method, path)
        if not complete:
            return scan_limited(tool, operation)

        reasons: set[str] = set()
        classes: set[str] = set()
        signals = [f.signal() for f in findings]
        risk = 0.05
        recognised = destinations.recognised_service(host)
        # What the policy's `has_finding` sees: not credentials at their issuer, not
        # documented examples at a recognised service (they are flagged instead).
        counted: list[Finding] = []
        # Reasons and risk follow from a finding's class, ownership, grade and risk, which
        # the findings of a large body share: each combination is judged once.
        judged: dict[tuple[str, bool, bool, float, bool], bool] = {}
        for f in findings:
            example = f.confidence == checks.EXAMPLE
            key = (f.data_class, f.own_destination, f.high_risk, f.severity, example)
            tolerated = judged.get(key)
            if tolerated is None:
                tolerated = judged[key] = self._judge_finding(key, recognised, reasons, classes)
            if not tolerated:
                counted.append(f)
        for data_class, own, _, severity, example in judged:
            if data_class in (SECRETS, CREDENTIALS) and own:
                risk = max(risk, 0.2)
            elif example and recognised:
                risk = max(risk, 0.3)
            else:
                risk = max(risk, severity)
        if any(f.kind == _REUSED.id for f in counted):
            reasons.add(CREDENTIAL_REUSE)
        if not recognised and opaque_url_token(parts.path, parts.query):
            reasons.add(OPAQUE_URL_TOKEN)  # a fact for policies; no default rule denies it
        sources = self.fingerprints.sources(f.value_hash for f in counted)
        if any(source is not None and source != host for source in sources):
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
            findings=frozenset(f.kind for f in counted),
            risk=risk,
            method_overrides=method_overrides(headers, parts.query),
        )
        rule = evaluate(self.policy, facts)
        decision = rule.action if rule is not None else Decision.ALLOW
        reason_codes = sorted(reasons)
        sanitized: Any = None
        if decision is Decision.SANITIZE:
            sanitized = self._sanitized(body, counted)
            if sanitized is not None and self._still_holds(url, headers, sanitized, counted):
                sanitized = None  # a copy sits where no redaction reached (a form's name)
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

    @staticmethod
    def _judge_finding(
        key: tuple[str, bool, bool, float, bool],
        recognised: bool,
        reasons: set[str],
        classes: set[str],
    ) -> bool:
        """Add the reasons one kind of finding gives (the default policy's table in the
        README); True when it is tolerated: a credential at its issuer, or a documented
        example at a recognised service."""
        data_class, own, high_risk, _, example = key
        if data_class in (SECRETS, CREDENTIALS) and own:
            reasons.add(OWN_CREDENTIAL)
            classes.add(CREDENTIALS)
            return True
        if own:  # card or bank data sent to a payment processor: what it is for
            classes.update((data_class, PII))
            return True
        classes.add(data_class)
        if data_class in (FINANCIAL, PII):
            classes.add(PII)
        if example:
            reasons.add(EXAMPLE_CREDENTIAL if data_class == SECRETS else EXAMPLE_DATA)
            if recognised:
                return True
        if data_class == SECRETS:
            reasons.update((SECRETS, SECRET_EXFILTRATION))
        elif high_risk:
            reasons.update((PII, PII_HIGH_RISK))
        else:
            reasons.add(PII)
        return False

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
        if destinations.dns_exfiltration(host) or self.subdomains.over_budget(host):
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
        self,
        url: str,
        headers: dict[str, str],
        body: Any,
        host: str,
        method: str = "",
        path: str = "",
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

        login = destinations.auth_endpoint(method, path) if method else False
        first_fields: set[int] = set()  # fields with a finding
        room = [MAX_NEW_USES]  # credentials this request may newly bind to an issuer
        values: set[tuple[str, str]] = set()  # (kind, value) found in a field as parsed

        def add(hit: Hit, i: int, fld: Field) -> None:
            # One finding per value and field: a decoded layer of a field shares its
            # location, and its copy (base64 of the same card) must be redacted too.
            if fld.encoding in SECOND_LOOKS and (hit.detector.id, hit.value) in values:
                return  # the raw text or a join repeats what a parsed field holds
            key = (hit.detector.id, i, hit.value)
            seen = first.get(key)
            first_fields.add(i)
            if seen is None:
                budget.spend()  # a finding costs as much again as finding it
                first[key] = (len(out), i)
                values.add((hit.detector.id, hit.value))
                out.append(self._finding(hit, fld, host, login, room))
            else:
                repeats.setdefault(seen[0], []).append((hit.start, hit.end))

        try:
            decode_chars = min(max(2 * size, 64 * 1024), 4 * 1024 * 1024)
            fields += reversed_fields(fields)
            fields += decoded_layers(fields, decode_chars, budget)
            fields += variant_fields(fields)
            # Second looks (raw text, joined pieces) are judged last, so a value a parsed
            # field holds is known by then and not reported twice.
            second: list[tuple[int, Hit]] = []
            # Text the scan put together (joined pieces, reversed text) is searched for
            # secrets only: personal data found there was found in its pieces already.
            wide = [i for i, f in enumerate(fields) if f.encoding not in PUT_TOGETHER]
            narrow = [i for i, f in enumerate(fields) if f.encoding in PUT_TOGETHER]
            texts = [fields[i].text for i in wide]
            found: Iterable[tuple[int, Hit]] = (
                (wide[j], hit) for j, hit in self.matcher.find_all(texts, budget)
            )
            if narrow:
                joined = [fields[i].text for i in narrow]
                found = itertools.chain(
                    found,
                    (
                        (narrow[j], hit)
                        for j, hit in self.matcher.find_all(joined, budget, classes=(SECRETS,))
                    ),
                )
            for i, hit in found:
                fld = fields[i]
                if hit.detector is _IP_ADDRESS and fld.location in ("url", "header:host"):
                    continue  # the destination itself is judged as a destination
                if fld.encoding in SECOND_LOOKS:
                    if fld.encoding == RAW or telling(hit.detector):
                        second.append((i, hit))  # joined or reversed: only a shaped key
                    continue
                hit_fields.add(i)
                add(hit, i, fld)
            for i, fld in enumerate(fields):
                if i in hit_fields or fld.encoding in SECOND_LOOKS:
                    continue
                if (
                    fld.key
                    and fld.encoding in (None, "percent")
                    and checks.MIN_PASSWORD <= len(fld.text) <= 4096
                    and _secret_key(fld.key)
                ):
                    budget.spend(_SECRET_KEY.cost)
                    if _PASSWORD_WORDS.search(fld.key) and checks.password(fld.text):
                        hit = Hit(_PASSWORD_KEY, 0, len(fld.text), fld.text)
                        grade = assess(_PASSWORD_KEY, fld.text) or checks.SHAPED
                        add(hit._replace(confidence=grade), i, fld)
                        continue
                    if checks.generic_secret(fld.text, hex_is_key=_key_says_key(fld.key)):
                        grade = assess(_SECRET_KEY, fld.text) or checks.SHAPED
                        add(Hit(_SECRET_KEY, 0, len(fld.text), fld.text, grade), i, fld)
                        continue
                if fld.key and fld.encoding is None and _SSN_KEY.search(fld.key):
                    digits = re.sub(r"[ .\-]", "", fld.text)
                    if len(digits) == 9 and digits.isdigit():
                        ssn = f"{digits[:3]}-{digits[3:5]}-{digits[5:]}"
                        if checks.us_ssn(ssn):
                            add(Hit(_SSN, 0, len(fld.text), fld.text), i, fld)
                            continue
                if fld.location == "header:authorization" and (secret := basic_password(fld)):
                    # A person's password in Basic credentials is judged as a password
                    # (API tokens there are long and random, and judged by use).
                    hit = Hit(_PASSWORD_KEY, 0, len(fld.text), secret, checks.SHAPED)
                    add(hit, i, fld)
                    continue
                if fld.credential_header and fld.encoding is None and len(fld.text) >= 8:
                    for start, end in credential_spans(fld):
                        add(Hit(_AUTH_HEADER, start, end, fld.text[start:end]), i, fld)
            if second:
                found_values = {value for _, value in values}
                # An opaque value in an auth header is judged by use, not by shape: pieces
                # of a provider's key found that way do not stand for the key put together.
                whole = {value for kind, value in values if kind != _AUTH_HEADER.id}
                self._second_looks(fields, second, first_fields, found_values, whole, add)
            if len(self.uses):
                self._reused(fields, hit_fields, host, add)
        except ScanLimit:
            return out, False
        for at, more in repeats.items():
            out[at] = out[at]._replace(repeats=tuple(more))
        return without_shadowed(out), True

    @staticmethod
    def _second_looks(
        fields: list[Field],
        second: list[tuple[int, Hit]],
        first_fields: set[int],
        found_values: set[str],
        judged_whole: set[str],
        add: Callable[[Hit, int, Field], None],
    ) -> None:
        """Hits in the raw text and in text the scan put together. A raw hit inside one
        parsed value is that value's (its key gives it meaning, `routing=...`; its
        location lets SANITIZE cut it), and dropped when that value had a finding; what
        lies outside every parsed value (names, part headers) keeps its raw location."""
        parsed = [
            j for j, f in enumerate(fields) if f.encoding is None and f.location.startswith(_PARSED)
        ]
        whole = {fields[j].text: j for j in reversed(parsed)}
        searches = MAX_OWNER_SEARCHES  # a substring search is a pass over every value
        overlaps = MAX_OWNER_SEARCHES if len(judged_whole) <= 256 else 0
        for i, hit in second:
            if fields[i].encoding == RAW:
                if hit.value in found_values:
                    continue  # found (and judged) in a parsed value already
                owner = whole.get(hit.value)
                if owner is None and searches > 0:
                    searches -= 1
                    owner = next((j for j in parsed if hit.value in fields[j].text), None)
                if owner is not None:
                    if owner in first_fields:
                        continue
                    start = fields[owner].text.find(hit.value)
                    hit = hit._replace(start=start, end=start + len(hit.value))
                    add(hit, owner, fields[owner])
                    continue
            elif overlaps > 0 and any(
                v in seen or seen in v for v in judged_whole for seen in as_written(hit, fields[i])
            ):
                overlaps -= 1
                continue  # put together from pieces that were found (and judged) whole
            add(hit, i, fields[i])

    def _reused(
        self,
        fields: list[Field],
        hit_fields: set[int],
        host: str,
        add: Callable[[Hit, int, Field], None],
    ) -> None:
        """Opaque credentials presented to one party (`CredentialUses`), now anywhere in
        a request to another: each whole value of 16-512 characters is looked up."""
        party = destinations.registrable_domain(host)
        candidates = [
            (i, fld)
            for i, fld in enumerate(fields)
            if i not in hit_fields and 8 <= len(fld.text) <= 512 and not fld.credential_header
        ]
        texts: list[tuple[int, Field, str]] = []
        for i, fld in candidates:
            texts.append((i, fld, fld.text))
            bare = fld.text.rsplit(None, 1)[-1]  # `Bearer <token>` copied whole
            if bare != fld.text and len(bare) >= 16:
                texts.append((i, fld, bare))
        issuers = self.uses.issuers(value_hash(t) for _, _, t in texts)
        for (i, fld, text), issuer in zip(texts, issuers, strict=True):
            if issuer is not None and issuer != party:
                start = fld.text.find(text)
                add(Hit(_REUSED, start, start + len(text), text), i, fld)

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

    def _finding(
        self, hit: Hit, fld: Field, host: str, login: bool = False, room: list[int] | None = None
    ) -> Finding:
        """A hit judged by its issuer: a credential is `own_destination` when the request
        presents it (`is_presented`) to the party that issued it — from the detector's table,
        a JWT's audience, the host in a URL's userinfo — or, for a value nobody's shape
        names, to the party it was first presented to (issuer by use). The same key in
        free text (an issue body, a prompt, a file uploaded to the provider's storage) is
        content, published or stored: a leak even there."""
        d = hit.detector
        own = False
        if d.data_class in (SECRETS, CREDENTIALS):
            issuers = credential_issuers(hit, fld)
            presented = is_presented(fld, hit, host, login)
            if d.providers:
                own = presented and destinations.issued_by(host, d.providers)
                if own:
                    self.uses.present(hit.value_hash, host, room)  # (a look-alike later: reuse)
                if not own and presented and fld.credential_header and self_hosted(d.id, host):
                    # a self-hosted product's token (Vault, GitLab, JFrog, ...) presented to
                    # a server named for that product: the company's own, learnt by use
                    own = self.uses.present(hit.value_hash, host, room)
            elif issuers:
                own = presented and any(destinations.same_party(host, i) for i in issuers)
            elif (
                presented
                and hit.confidence != checks.EXAMPLE  # an example is nobody's credential
                and (
                    d.id in _BY_USE_PRESENTED
                    or (login and fld.in_body and d.id in _BY_USE_AT_LOGIN)
                )
            ):
                # Presented as a credential (an opaque token in an auth header; a password
                # in a login or token form): its first destination becomes its issuer.
                # A private key, a seed phrase, a password in a header: never presented.
                own = self.uses.present(hit.value_hash, host, room)
                if not own:
                    d = _REUSED
        elif d.data_class == FINANCIAL and d.high_risk:
            own = destinations.host_matches(host, destinations.PAYMENT_PROCESSORS)
        # kind, data class, location, encoding, value hash, severity, own, high risk, span
        return Finding(
            d.id, d.data_class, fld.location, fld.encoding, value_hash(hit.value),
            d.severity, own, d.high_risk, hit.start, hit.end, (), hit.confidence,
        )  # fmt: skip

    def _sanitized(self, body: Any, findings: list[Finding]) -> Any:
        """The redacted body, or None when a finding cannot be cut out of it."""
        redactions = []
        for f in findings:
            if f.own_destination:
                continue
            if f.encoding in _UNCUTTABLE or not (
                f.location == "body" or f.location.startswith(("body.", "form:", "part:"))
            ):
                if f.data_class == SECRETS or f.high_risk:
                    return None  # in the URL or a header: nothing to rewrite in the body
                continue  # low-risk personal data outside the body is tolerated
            redactions.append(Redaction(f.location, f.start, f.end, f.kind, f.encoding is not None))
            whole = f.encoding is not None
            redactions.extend(Redaction(f.location, s, e, f.kind, whole) for s, e in f.repeats)
        if not redactions or body is None:
            return None
        return redact_body(body, redactions)

    def _still_holds(
        self, url: str, headers: dict[str, str], sanitized: Any, counted: list[Finding]
    ) -> bool:
        """Whether the redacted body still carries a value that was to be removed: the
        body is scanned again (SANITIZE only), and refused if any such value is left."""
        wanted = {f.value_hash for f in counted}
        found, complete = self._scan("", {}, sanitized, "")
        return not complete or any(f.value_hash in wanted for f in found)

    def observe_response(self, host: str, body: Any) -> ResponseObservation:
        """Fingerprint sensitive values a response carried (bounded memory). A response
        holding more candidates than its scan's budget is fingerprinted as far as the
        scan got (`scan_limited`): nothing is refused here, the requests are judged."""
        findings, complete = self._scan("", {}, body, host)
        # Documented examples are nobody's data: read in docs, sent to an LLM, no leak.
        sensitive = [
            f for f in findings if f.data_class != CREDENTIALS and f.confidence != checks.EXAMPLE
        ]
        self.fingerprints.remember((f.value_hash for f in sensitive), host)
        return ResponseObservation(
            data_classes=sorted({f.data_class for f in sensitive}), scan_limited=not complete
        )
