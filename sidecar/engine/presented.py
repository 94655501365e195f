"""Where a credential is presented and who issued it: the rules that tell the agent's own
credential, sent to its issuer, from the same value carried out as content."""

from __future__ import annotations

import base64
import re
from functools import lru_cache
from urllib.parse import unquote

from sidecar.engine import checks, destinations
from sidecar.engine.detectors import SECRETS, Detector
from sidecar.engine.fields import (
    JOINED,
    REVERSED,
    ROT13,
    SWAPPED,
    UNWRAPPED,
    Field,
    rot13,
)
from sidecar.engine.matcher import Hit
from sidecar.engine.outcomes import Finding

_URL_PIECES = re.compile(r"[^/?&=;,]+")


_TOKEN = re.compile(r"^[A-Za-z0-9_\-+]{32,}={0,2}$")


def opaque_url_token(path: str, query: str) -> bool:
    """A URL piece that reads as random bytes in base64: 32+ characters of both cases
    and digits, high entropy (not hex, not a UUID, not words joined by dashes)."""
    for piece in _URL_PIECES.findall(unquote(path) + "?" + unquote(query)):
        if len(piece) < 32 or not _TOKEN.match(piece):
            continue
        if piece.islower() or piece.isupper() or not any(c.isdigit() for c in piece):
            continue
        if checks.entropy(piece) >= 4.5:
            return True
    return False


# Products also run on a company's own servers, and the names such servers go by.
_SELF_HOSTED = {
    "vault_": ("vault",), "gitlab_": ("gitlab", "git"), "jfrog_": ("jfrog", "artifactory"),
    "sonarqube_": ("sonar",), "sourcegraph_": ("sourcegraph",), "grafana_": ("grafana",),
    "terraform_": ("terraform", "tfe"), "okta_": ("okta", "sso"),
}  # fmt: skip


def self_hosted(kind: str, host: str) -> bool:
    """A self-hosted product's token sent to a server named for that product
    (`gitlab.acme.com`, `vault.corp.io`): its issuer is learnt by use there."""
    names = next((n for prefix, n in _SELF_HOSTED.items() if kind.startswith(prefix)), ())
    labels = host.lower().replace("-", ".").split(".")
    return any(name in labels for name in names)


_KEYWORD_KINDS = frozenset({"generic_secret", "password", "credential_reuse"})


def without_shadowed(findings: list[Finding]) -> list[Finding]:
    """Keyword-anchored findings (`token=...`) whose value a provider's family also found
    where it sits: the provider's finding (with its issuer) is the one that counts."""
    shaped: dict[tuple[str, str | None], list[tuple[int, int]]] = {}
    for f in findings:
        if f.kind not in _KEYWORD_KINDS and f.data_class == SECRETS:
            shaped.setdefault((f.location, f.encoding), []).append((f.start, f.end))
    if not shaped:
        return findings
    return [
        f
        for f in findings
        if f.kind not in _KEYWORD_KINDS
        or not any(a < f.end and f.start < b for a, b in shaped.get((f.location, f.encoding), ()))
    ]


_CREDENTIAL_KEY = re.compile(
    r"(?i)key|token|secret|auth|pass|pwd|credential|sig|session|code|assertion|access|bearer|"
    r"jwt|dsn|hook|private"
)


# Kinds a URL itself carries to the service that issued them.
_URL_BORNE = frozenset(
    {"slack_webhook", "discord_webhook", "telegram_bot_token", "teams_webhook",
     "zapier_webhook", "google_chat_webhook", "url_credentials", "auth_header_credential"}
)  # fmt: skip


_KEPT_KEY = re.compile(r"(?i)private|seed|mnemonic|wallet|secret[_\-\s]?key|signing|passphrase")


@lru_cache(maxsize=4096)
def _credential_key(name: str) -> bool:
    return bool(_CREDENTIAL_KEY.search(name))


# Text the scan put together from what was written (`fields.SECOND_LOOKS` but raw text).
PUT_TOGETHER = frozenset({JOINED, REVERSED, UNWRAPPED, SWAPPED, ROT13})


def is_presented(fld: Field, hit: Hit, host: str, login: bool = False) -> bool:
    """Whether the request presents the value as a credential to its destination: in an
    auth header; as the URL being called (a webhook's path, `/bot<token>/`, userinfo) or
    a query parameter named for one (`?key=`); as a body field named for one holding it
    whole (`client_secret=`, `{"api_key": ...}`); in any field of a login or token form.
    Anything else the scan put together (joined pieces, reversed, ROT13...) is never
    presented: an issuer reads a credential whole, as written; one sent in pieces is
    carried. (A credential header's value keyed by its name is that value whole.)"""
    if fld.encoding in PUT_TOGETHER and not (fld.encoding == JOINED and fld.credential_header):
        return False
    if fld.credential_header:
        return True
    if fld.location.startswith("query:"):
        return fld.key is not None and _credential_key(fld.key)
    if fld.location == "url":
        question = fld.text.find("?")
        if question < 0 or hit.start < question:  # the URL being called: a REST path names
            # the account it acts on; a tenant's path (a bucket's object) is content
            return hit.detector.id in _URL_BORNE or not destinations.tenant_host(host)
        start = max(fld.text.rfind("&", 0, hit.start), question) + 1
        return _credential_key(fld.text[start : hit.start].split("=", 1)[0])
    if not fld.in_body or fld.key is None or fld.encoding not in (None, "percent"):
        return False
    if login:
        return True
    if fld.location.count(".") > 2 or "[" in fld.key or "." in fld.key:
        return False  # nested (`metadata[api_key]`, `{"a": {"key": ...}}`): stored content
    if _KEPT_KEY.search(fld.key):
        return False  # what is named a private key, a seed or a signing secret is kept
    return _credential_key(fld.key) and (hit.end - hit.start) * 5 >= len(fld.text.strip()) * 4


def as_written(hit: Hit, fld: Field) -> tuple[str, ...]:
    """A second look's value as the request wrote it (reversed and case-swapped text
    undone), to be compared with what was found where it was written."""
    if fld.encoding == REVERSED:
        return (hit.value[::-1],)
    if fld.encoding == SWAPPED:
        return (hit.value.swapcase(),)
    if fld.encoding == ROT13:
        return (rot13(hit.value),)
    return (hit.value,)


def telling(detector: Detector) -> bool:
    """A kind whose shape alone is telling, even in text put together by the scan
    (joined pieces, reversed text): a provider's key, a private key."""
    return bool(detector.providers) or (detector.data_class == SECRETS and detector.checked)


_SCHEME = re.compile(r"(?i)^(?:bearer|basic|token|digest|bot|apikey|api-key|key|sso-key)\s+")


_COOKIE = re.compile(r"[^=;\s]+=\s*([^;]{16,})")


def credential_spans(fld: Field) -> list[tuple[int, int]]:
    """Where an auth header's credentials are: the value without its scheme (`Bearer x`
    -> `x`), or each cookie's value; only values random enough to be credentials (16+
    characters, letters and digits mixed), not preferences, dates or ids."""
    text = fld.text
    if fld.location == "header:cookie":
        spans = [m.span(1) for m in _COOKIE.finditer(text)]
    else:
        m = _SCHEME.match(text)
        spans = [(m.end() if m else 0, len(text.rstrip()))]
    return [(a, b) for a, b in spans if _credential_like(text[a:b])]


_TOKEN_USERS = frozenset({"api", "__token__", "x-access-token", "oauth2", "token", "apikey",
                          "x-token-auth", "pat", "bearer", ""})  # fmt: skip


def basic_password(fld: Field) -> str | None:
    """The password of `Basic` credentials when it reads as a person's (6-19 characters,
    see `checks.password`), not an API token."""
    scheme, _, encoded = fld.text.strip().partition(" ")
    if scheme.lower() != "basic" or fld.encoding is not None:
        return None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    except (ValueError, UnicodeDecodeError):
        return None
    user, _, password = decoded.partition(":")
    if user.lower() in _TOKEN_USERS or len(password) >= 24:
        return None  # an API token (`api:key-...`, `x-access-token:...`): judged by use
    return password if checks.password(password) else None


def _credential_like(value: str) -> bool:
    return (
        len(value) >= 16
        and any(c.isdigit() for c in value)
        and sum(c.isalpha() for c in value) >= 4  # not a date or a timestamp
        and checks.entropy(value) >= 3.0
    )


def credential_issuers(hit: Hit, fld: Field) -> tuple[str, ...]:
    """Hosts a value names as its own destination: a JWT's audience (with its issuer),
    the host of a URL carrying a password."""
    kind = hit.detector.id
    if kind == "jwt":
        return checks.jwt_destinations(hit.value)
    if kind == "url_credentials" and fld.location == "url":  # the URL being called
        # (a URL with a password anywhere else is content; a database URL has no HTTP
        # issuer at all)
        at = hit.value.rsplit("@", 1)[-1]
        return (at.split("/", 1)[0].split(":", 1)[0].lower(),)
    return ()
