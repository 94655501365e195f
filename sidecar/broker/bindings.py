"""The brokered-credentials file: which real value goes where, and how it is carried.

```yaml
credentials:
  - name: openai                       # metrics and log lines name it (never the value)
    value: {file: /var/run/secrets/openai/api-key}   # or {env: REAL_OPENAI_KEY}
    agent_env: OPENAI_API_KEY          # `egress-sidecar env` exports the placeholder
    shape: openai                      # or {prefix: "sk-", length: 48, alphabet: base62}
    destinations:
      - url: https://api.openai.com/v1/
        methods: [GET, POST]           # optional: any method
    carry: bearer                      # see `Carry`
```

Refused at load, one line naming the file, credential and field: an `http://`
destination (the value would cross the network in clear), a destination the sidecar
tunnels without inspection (it could not substitute), and a credential that signs
requests (AWS SigV4, HMAC: a substituted placeholder cannot sign).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal
from urllib.parse import unquote, urlsplit

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from sidecar.broker.placeholders import (
    ALPHABETS,
    PRESETS,
    Checksum,
    Shape,
    placeholder_for,
    shortest,
)
from sidecar.engine.destinations import host_matches
from sidecar.engine.policy_file import describe_invalid

NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
TOKEN = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")  # an HTTP header name
SIGNING = ("aws_sigv4", "sigv4", "hmac")
# What `egress-sidecar env` sets for the proxy: a placeholder never replaces one.
RESERVED_ENV = frozenset(
    {"HTTPS_PROXY", "HTTP_PROXY", "NO_PROXY", "ALL_PROXY", "SSL_CERT_FILE", "REQUESTS_CA_BUNDLE",
     "CURL_CA_BUNDLE", "NODE_EXTRA_CA_CERTS", "GIT_SSL_CAINFO", "NODE_USE_ENV_PROXY"}
)  # fmt: skip  # carries that sign: refused, with the reason
Simple = Literal["bearer", "basic", "path", "anywhere"]


_SIGNS = (
    "a credential that signs requests (AWS SigV4, HMAC) cannot be brokered: a substituted "
    "placeholder cannot sign; give the agent a short-lived scoped credential instead "
    "(see docs/brokering.md)"
)


class BindingsError(ValueError):
    """A bindings file is unreadable or invalid; the message is one line."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ValueSource(_Strict):
    """Where the real value is read, by the sidecar only."""

    file: Path | None = None
    env: str | None = None

    @model_validator(mode="after")
    def _one(self) -> ValueSource:
        if (self.file is None) == (self.env is None):
            raise ValueError("give exactly one of file or env")
        if self.env is not None and not ENV_NAME.match(self.env):
            raise ValueError(f"{self.env!r} is not an environment variable name")
        return self

    def describe(self) -> str:
        return f"file {self.file}" if self.file is not None else f"env {self.env}"


class Destination(_Strict):
    url: str = Field(description="https://HOST[:PORT][/path-prefix]; HOST may be *.domain")
    methods: list[str] | None = None

    @field_validator("url")
    @classmethod
    def _https(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme != "https":
            raise ValueError(
                f"{value}: only https:// destinations (over http:// the real value would "
                "cross the network in clear)"
            )
        if (
            not parts.hostname
            or parts.query
            or parts.fragment
            or "#" in value
            or parts.username is not None
            or parts.password is not None
        ):
            raise ValueError(f"{value}: want https://HOST[:PORT][/path-prefix]")
        host = parts.hostname
        label = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
        name = rf"\*\.{label}(?:\.{label})+|{label}(?:\.{label})*"
        if not re.fullmatch(rf"{name}|[0-9a-f:.]+", host):
            raise ValueError(
                f"{value}: the host is a name (or `*.` and a domain of two labels or more, "
                "e.g. *.example.com), or an IP address; no other wildcard"
            )
        try:
            parts.port  # noqa: B018 (validates it)
        except ValueError:
            raise ValueError(f"{value}: bad port") from None
        return value

    @field_validator("methods")
    @classmethod
    def _methods(cls, value: list[str] | None) -> list[str] | None:
        if value is None:
            return None
        if not value or not all(TOKEN.match(m) for m in value):
            raise ValueError("methods are HTTP method names")
        return [m.upper() for m in value]

    @property
    def host(self) -> str:
        return (urlsplit(self.url).hostname or "").rstrip(".")

    @property
    def port(self) -> int:
        return urlsplit(self.url).port or 443

    @property
    def path_prefix(self) -> str:
        return urlsplit(self.url).path or "/"

    def serves(self, host: str) -> bool:
        return host_matches(host.lower().rstrip("."), [self.host])

    def matches(self, method: str, host: str, port: int, path: str) -> bool:
        if self.methods is not None and method.upper() not in self.methods:
            return False
        if port != self.port or not self.serves(host):
            return False
        return _path_within(path, self.path_prefix)


def _path_within(path: str, prefix: str) -> bool:
    """The path as written, under the prefix in whole segments, and with nothing an
    upstream could read as climbing out of it: after percent-decoding (up to three
    times), no segment that is `.` or begins with `..` (`;params` and all: `..;/` as Java
    servers read it), no `\\`, `#`, control byte, `%u` escape or overlong UTF-8."""
    path = path.split("?", 1)[0] or "/"
    if _SUSPECT_ESCAPES.search(path):
        return False
    decoded = path
    for _ in range(3):
        decoded = unquote(decoded, errors="surrogateescape")
        if _SUSPECT_DECODED.search(decoded):
            return False
        for segment in decoded.split("/"):
            bare = segment.split(";", 1)[0]
            if bare == "." or bare.startswith(".."):
                return False
    base = prefix.rstrip("/")
    return not base or path == base or path.startswith(base + "/")


_SUSPECT_ESCAPES = re.compile(r"%u|%c[01]|%e0%80", re.IGNORECASE)  # IIS, overlong UTF-8
_SUSPECT_DECODED = re.compile(r"[\x00-\x1f\x7f\\#]|[\udc80-\udcff]")


class CustomShape(_Strict):
    prefix: str = ""
    length: int = Field(default=40, ge=16, le=512)
    alphabet: Literal["base62", "base64url", "hex", "digits"] = "base62"

    @field_validator("prefix")
    @classmethod
    def _prefix(cls, value: str) -> str:
        if not re.fullmatch(r"[A-Za-z0-9_.-]{0,40}", value):
            raise ValueError("a prefix is up to 40 letters, digits, '_', '-' or '.'")
        return value


class Credential(_Strict):
    name: str
    value: ValueSource
    agent_env: str | None = None
    shape: str | CustomShape = "generic"
    destinations: list[Destination] = Field(min_length=1)
    carry: Simple | dict[str, str]  # no default: `anywhere` must be chosen, knowingly

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not NAME.match(value):
            raise ValueError("a name is lower-case letters, digits, '-' or '_' (up to 63)")
        return value

    @field_validator("agent_env")
    @classmethod
    def _agent_env(cls, value: str | None) -> str | None:
        if value is not None and not ENV_NAME.match(value):
            raise ValueError(f"{value!r} is not an environment variable name")
        if value is not None and value.upper() in RESERVED_ENV:
            raise ValueError(f"{value} is set by `egress-sidecar env` for the proxy itself")
        return value

    @field_validator("shape")
    @classmethod
    def _shape(cls, value: str | CustomShape) -> str | CustomShape:
        if isinstance(value, str) and value not in PRESETS:
            if value in ("aws", "aws-secret-key", "aws_sigv4"):
                raise ValueError(_SIGNS)
            raise ValueError(f"unknown shape {value!r} (one of {', '.join(PRESETS)}, or a mapping)")
        return value

    @field_validator("carry", mode="before")
    @classmethod
    def _carry(cls, value: Any) -> Any:
        kind = next(iter(value), None) if isinstance(value, dict) else value
        if isinstance(kind, str) and kind.lower() in SIGNING:
            raise ValueError(_SIGNS)
        if isinstance(value, dict):
            if len(value) != 1 or kind not in ("header", "query", "form", "json"):
                raise ValueError(
                    "carry is bearer, basic, path, anywhere, or one of {header: NAME}, "
                    "{query: NAME}, {form: FIELD}, {json: FIELD.PATH}"
                )
            arg = value[kind]
            if not isinstance(arg, str) or not arg or (kind == "header" and not TOKEN.match(arg)):
                raise ValueError(f"carry {kind}: needs a name")
            if kind == "header" and arg.lower() in ("host", "content-length", "transfer-encoding"):
                raise ValueError(f"carry header: {arg} cannot carry a credential")
        return value

    @property
    def shape_spec(self) -> Shape:
        if isinstance(self.shape, str):
            return PRESETS[self.shape]
        return Shape(self.shape.prefix, self.shape.length, self.shape.alphabet, Checksum.NONE)

    @property
    def placeholder(self) -> str:
        return placeholder_for(self.name, self.shape_spec)

    @property
    def carry_kind(self) -> str:
        return self.carry if isinstance(self.carry, str) else next(iter(self.carry))

    @property
    def carry_arg(self) -> str:
        return "" if isinstance(self.carry, str) else next(iter(self.carry.values()))

    def describe_carry(self) -> str:
        return self.carry_kind + (f" {self.carry_arg}" if self.carry_arg else "")

    def bound(self, method: str, host: str, port: int, path: str) -> bool:
        """May the real value go to this destination?"""
        return any(d.matches(method, host, port, path) for d in self.destinations)

    def serves_host(self, host: str) -> bool:
        """Is any destination of it on this host (what comes back from there is scrubbed)?"""
        return any(d.serves(host) for d in self.destinations)


class Bindings(_Strict):
    credentials: list[Credential] = Field(default_factory=list)

    @model_validator(mode="after")
    def _unique(self) -> Bindings:
        seen: set[str] = set()
        envs: set[str] = set()
        for c in self.credentials:
            if c.name in seen:
                raise ValueError(f"credential {c.name!r} is declared twice")
            seen.add(c.name)
            if c.agent_env is not None:
                if c.agent_env in envs:
                    raise ValueError(f"agent_env {c.agent_env} is given to two credentials")
                envs.add(c.agent_env)
            spec = c.shape_spec
            if spec.length < shortest(spec) or spec.alphabet not in ALPHABETS:
                raise ValueError(f"credential {c.name!r}: shape too short for a placeholder")
        return self

    def check_passthrough(self, passthrough_hosts: list[str], source: str) -> None:
        """A destination tunnelled without inspection can never receive a substitution."""
        for c in self.credentials:
            for d in c.destinations:
                if host_matches(d.host, passthrough_hosts) or (
                    d.host.startswith("*.") and host_matches("x" + d.host[1:], passthrough_hosts)
                ):
                    raise BindingsError(
                        f"{source}: credential {c.name!r} destination {d.url}: the host is "
                        "tunnelled without inspection (--passthrough-hosts), so the value "
                        "could never be substituted there"
                    )

    def by_name(self) -> dict[str, Credential]:
        return {c.name: c for c in self.credentials}


def load_bindings(path: Path, passthrough_hosts: list[str] | None = None) -> Bindings:
    try:
        text = path.read_text()
    except OSError as e:
        raise BindingsError(f"{path}: {e.strerror}") from None
    return parse_bindings(text, str(path), passthrough_hosts or [])


def parse_bindings(text: str, source: str, passthrough_hosts: list[str]) -> Bindings:
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        where = getattr(e, "problem_mark", None)
        line = f" line {where.line + 1}" if where is not None else ""
        raise BindingsError(f"{source}:{line} not valid YAML") from None
    if not isinstance(data, dict):
        raise BindingsError(f"{source}: a bindings file is a mapping with `credentials`")
    try:
        bindings = Bindings.model_validate(data)
    except ValidationError as e:
        problem = describe_invalid(e, data, "credentials", "name", "bindings")
        raise BindingsError(f"{source}: {problem}") from None
    bindings.check_passthrough(passthrough_hosts, source)
    return bindings
