"""`egress-sidecar scan`: one request through the same `Judge` the proxy uses, with the
embedded engine and the configured policy, and nothing sent anywhere.

What differs from the running proxy is only what a description of a request cannot
carry: wire-level framing checks (control bytes, header sizes, the Host header agreeing
with the TLS SNI) apply at the proxy alone, and a request that needs approval is
reported as held, never recorded as pending (`approval_mode=refuse` semantics, with a
scratch approval store).
"""

from __future__ import annotations

import base64
import tempfile
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from sidecar.approvals.store import ApprovalStore
from sidecar.backends.local import LocalBackend
from sidecar.config.credentials import Credentials
from sidecar.config.settings import ApprovalMode, SidecarSettings
from sidecar.engine import Engine, Policy
from sidecar.engine.decisions import Decision
from sidecar.engine.known_secrets import KnownSecrets
from sidecar.judge.authority import DEFAULT_PORTS, AuthorityError, absolute_url, normalise_host
from sidecar.judge.destination import Destinations
from sidecar.judge.enforce import (
    DESTINATION_UNPARSEABLE,
    Enforcement,
    local_block,
    method_and_upgrade,
)
from sidecar.judge.judge import Judge, Judgement, Outbound
from sidecar.judge.request_surface import scannable
from sidecar.judge.resolver import Resolver


def describe(
    method: str, url: str, headers: list[tuple[str, str]], body: bytes
) -> tuple[Outbound, str | None]:
    """The `Outbound` the proxy would build for this request, and the local refusal kind
    the proxy's request rules would give it (or None)."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    try:
        host = normalise_host(parts.hostname or "")
        port = parts.port or DEFAULT_PORTS.get(scheme, 443)
    except (AuthorityError, ValueError):
        host, port = "", 0

    def get(name: str) -> str:
        return next((v for k, v in headers if k.lower() == name), "")

    if parts.username is not None and not any(k.lower() == "authorization" for k, _ in headers):
        # Clients send a URL's user and password as Basic credentials, never in the URL.
        pair = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
        basic = base64.b64encode(pair.encode()).decode()
        headers = [*headers, ("Authorization", f"Basic {basic}")]
    path = parts.path or "/"
    if parts.query:
        path += f"?{parts.query}"
    refusal = _request_rules(method, host, headers)
    netloc = parts.netloc.rsplit("@", 1)[-1]
    written, colon, digits = netloc.rpartition(":")
    if not (colon and digits.isdigit()):
        written = netloc  # no port (an IPv6 literal's colons are inside its brackets)
    target = absolute_url(scheme or "https", written, port, scannable(path)) if host else url
    out = Outbound(
        method=scannable(method),
        url=target,
        url_as_sent=scannable(url),
        headers=tuple(headers),
        body=body,
        content_encoding=get("content-encoding"),
        transfer_encoding=get("transfer-encoding"),
        content_type=get("content-type"),
        llm_at=(host, path),
        refusal=refusal,
        destination=(host, port) if host else None,
    )
    return out, refusal[1] if refusal else None


def _request_rules(
    method: str, host: str, headers: list[tuple[str, str]]
) -> tuple[Enforcement, str] | None:
    """The proxy's request rules that a description of a request can break."""
    if not host:
        message = "Blocked by egress-sidecar: the request names no destination it can read."
        return local_block(DESTINATION_UNPARSEABLE, message, 400), "destination_unparseable"
    upgrades = [v for k, v in headers if k.lower() == "upgrade"]
    versions = [v for k, v in headers if k.lower() == "sec-websocket-version"]
    return method_and_upgrade(method, "HTTP/1.1", upgrades, versions)[1]


async def dry_run(
    settings: SidecarSettings,
    policy: Policy,
    credentials: Credentials,
    outbound: Outbound,
    resolver: Resolver | None,
) -> Judgement:
    """The judgement the proxy would give `outbound` (`resolver` None: the destination
    is judged as written, never resolved)."""
    settings = settings.model_copy(update={"approval_mode": ApprovalMode.REFUSE})
    engine = Engine(policy, internal_hosts=tuple(settings.internal_hosts))
    with tempfile.TemporaryDirectory(prefix="egress-sidecar-scan-") as scratch:
        backend = LocalBackend(engine, ApprovalStore(Path(scratch), settings.approval_expiry))
        known = KnownSecrets(s.decode() for s in credentials.secrets())
        destinations = Destinations(settings, engine, resolver, known)
        judge = Judge(settings, backend, destinations, known, credentials.interven)
        try:
            return await judge.judge(outbound)
        finally:
            await backend.aclose()


def report(judgement: Judgement) -> dict[str, Any]:
    """What `egress-sidecar scan` prints: the enforcement, and the verdict behind it."""
    e, verdict = judgement.enforcement, judgement.verdict
    doc: dict[str, Any] = {
        "decision": e.decision.value,
        "forwarded": e.forward,
        "status": None if e.forward else e.status,
        "reason_codes": e.reasons,
        "trace_id": e.trace_id,
        "tool_name": e.tool,
        "operation": e.operation,
        "policy_name": e.policy_name,
        "approval": e.approval,
        "would": e.would.value if e.would is not None else None,
        "message": e.message or None,
    }
    if verdict is not None:
        extra = verdict.model_dump(mode="json", exclude_none=True)
        for name in ("risk_score", "risk_band", "classifications", "signals", "approval_id"):
            if name in extra:
                doc[name] = extra[name]
        if verdict.decision is Decision.SANITIZE:
            doc["sanitized_body"] = extra.get("sanitized_body")
    return {k: v for k, v in doc.items() if v is not None}
