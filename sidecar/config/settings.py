"""Every knob of the sidecar, its environment name and its default, in one place.

`SidecarSettings` reads `SIDECAR_<NAME>`; each backend's credentials are read from its
own variables by `sidecar.config.credentials`. CLI flags are passed as init values, so
they override the environment.

Each field also says how else it surfaces (`Surface`): a CLI flag, an `egress_<name>`
option of the mitmdump addon, mitmproxy's own options it maps onto. The flags, the addon
options and docs/configuration.md are generated from that (`sidecar.config.surface`,
`sidecar.config.reference`), so there is one text and one default per setting.
"""

from __future__ import annotations

import ipaddress
import ssl
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Literal

from pydantic import (
    AnyHttpUrl,
    BaseModel,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_serializer,
    model_validator,
)
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict
from pydantic_settings import SettingsError as EnvParseError

from sidecar.engine.destinations import check_host_patterns, parse_destination_pattern

SCAN_API_MAX_BODY_BYTES = 256 * 1024
REQUEST_BODY_MARGIN = 64 * 1024
# Headers that legitimately differ between retries of one request.
# Each must also have its usual shape (`request_surface.VOLATILE_FORMATS`) to be left out.
VOLATILE_HEADERS = (
    "date", "x-amz-date", "x-request-id", "x-correlation-id", "x-retry-count",
    "x-stainless-retry-count", "x-stainless-timeout", "traceparent", "x-amzn-trace-id",
    "x-b3-traceid", "x-b3-spanid", "x-b3-sampled", "x-datadog-trace-id",
    "x-datadog-parent-id", "sentry-trace", "idempotency-key",
)  # fmt: skip


class FailMode(StrEnum):
    """What happens to a request when no verdict can be had."""

    CLOSED = "closed"
    OPEN = "open"


class EnforcementMode(StrEnum):
    """enforce: verdicts are applied; shadow: everything is forwarded untouched and each
    would-be block, rewrite or hold is logged and counted (a safe roll-out)."""

    ENFORCE = "enforce"
    SHADOW = "shadow"


class ApprovalMode(StrEnum):
    """What REQUIRE_APPROVAL (Kirtonic: `review`) does to the request."""

    HOLD = "hold"
    REFUSE = "refuse"


BackendName = Literal["interven", "local", "kirtonic", "inviolet", "velerian"]


class Group(StrEnum):
    """Where a setting is listed in the configuration reference (in this order)."""

    PROXY = "Listening and tunnels"
    SCANNING = "Scanning"
    APPROVALS = "Approvals"
    TLS = "CA and upstream TLS"
    LIMITS = "Limits and timeouts"
    ADMIN = "Admin server"


@dataclass(frozen=True)
class Surface:
    """How a setting surfaces besides `SIDECAR_<NAME>` (which every setting has).

    flag: `egress-sidecar` takes `--<name>` (dashes for underscores); secrets are
    environment-only so they stay out of process listings.
    option: the mitmdump addon declares `egress_<name>` for it.
    mitmproxy: mitmproxy's own options it is carried by, `name` or `name=FORM`.
    run_only: only `egress-sidecar run` uses it; under plain mitmdump it does nothing.
    restart: the running proxy was built from it (the backend, its client, the admin
    server, the response queue); changing its option while it runs is refused.
    """

    group: Group
    flag: bool = True
    option: bool = False
    mitmproxy: tuple[str, ...] = ()
    run_only: bool = False
    restart: bool = False


def surface_of(name: str) -> Surface:
    """The `Surface` a settings field is annotated with."""
    found = [m for m in SidecarSettings.model_fields[name].metadata if isinstance(m, Surface)]
    if len(found) != 1:
        raise LookupError(f"settings field {name!r} needs exactly one Surface annotation")
    return found[0]


class HostPort(BaseModel):
    """A `HOST:PORT` listen address; IPv6 hosts are written `[::1]:8080`."""

    model_config = {"frozen": True}

    host: str
    port: int = Field(ge=0, le=65535)

    @classmethod
    def parse(cls, value: object) -> HostPort:
        if isinstance(value, HostPort):
            return value
        if not isinstance(value, str):
            raise ValueError("expected HOST:PORT")
        host, sep, port = value.rpartition(":")
        if not sep or not port.isdigit():
            raise ValueError(f"expected HOST:PORT, got {value!r}")
        host = host.removeprefix("[").removesuffix("]")
        if not host:
            raise ValueError(f"missing host in {value!r}")
        return cls(host=host, port=int(port))

    @property
    def is_loopback(self) -> bool:
        if self.host == "localhost":
            return True
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return False

    @model_serializer
    def _as_text(self) -> str:
        return str(self)

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


def _existing_file(value: Path | None) -> Path | None:
    if value is not None and not value.is_file():
        raise ValueError(f"no such file: {value}")
    return value


def _ca_bundle(value: Path | None) -> Path | None:
    """A file TLS can load as trusted CAs: caught at start, not at the first handshake."""
    if value is None:
        return None
    try:
        ssl.create_default_context().load_verify_locations(cafile=str(value))
    except (ssl.SSLError, OSError, ValueError):
        raise ValueError(f"{value}: not a PEM CA bundle") from None
    return value


def request_body_cap(max_body_bytes: int) -> int:
    """The most bytes of one request body ever held: the scan limit plus what framing and
    compression overhead could add to a body that decodes within it."""
    return max_body_bytes + max(REQUEST_BODY_MARGIN, max_body_bytes // 64)


class SidecarSettings(BaseSettings):
    """The sidecar's configuration; each field is also `SIDECAR_<FIELD>` in the environment."""

    model_config = SettingsConfigDict(
        env_prefix="SIDECAR_", extra="forbid", validate_default=True, frozen=True
    )

    # NoDecode: the environment gives "HOST:PORT", not JSON; the validators below parse it.
    listen: Annotated[
        HostPort, NoDecode, Surface(Group.PROXY, mitmproxy=("listen_host", "listen_port"))
    ] = Field(
        default=HostPort(host="127.0.0.1", port=8080),
        description="Proxy listen address HOST:PORT; port 0 picks a free port.",
    )
    admin: Annotated[HostPort | None, NoDecode, Surface(Group.ADMIN, option=True, restart=True)] = (
        Field(
            default=HostPort(host="127.0.0.1", port=9090),
            description="Admin server HOST:PORT (/metrics /healthz /readyz and the approval "
            "endpoints), or off (or empty) to disable it.",
        )
    )
    confdir: Annotated[Path, Surface(Group.TLS, mitmproxy=("confdir",))] = Field(
        default=Path("~/.egress-sidecar"),
        description="CA material and state (approvals, admin token); created 0700.",
    )
    backend: Annotated[BackendName | None, Surface(Group.SCANNING, option=True, restart=True)] = (
        Field(
            default=None,
            description="Scan backend: interven, local, kirtonic, inviolet or velerian; unset: "
            "interven when INTERVEN_API_KEY is set, else local (the embedded engine).",
        )
    )
    enforcement: Annotated[EnforcementMode, Surface(Group.SCANNING, option=True, restart=True)] = (
        Field(
            default=EnforcementMode.ENFORCE,
            description="enforce: apply verdicts; shadow: forward everything, log and count "
            "what would have been blocked, rewritten or held.",
        )
    )
    approval_mode: Annotated[ApprovalMode, Surface(Group.APPROVALS, option=True)] = Field(
        default=ApprovalMode.HOLD,
        description="hold: keep a request that needs approval until a human decides; "
        "refuse: answer 403 at once with the approval id.",
    )
    policy: Annotated[Path | None, Surface(Group.SCANNING, option=True, restart=True)] = Field(
        default=None,
        description="Policy file (YAML or JSON) for the local engine; unset: the built-in one.",
    )
    brokered_credentials: Annotated[
        Path | None, Surface(Group.SCANNING, option=True, restart=True)
    ] = Field(
        default=None,
        description="Brokered credentials file (YAML): the agent holds placeholders, the "
        "sidecar puts each real value on the wire only for its bound destinations "
        "(docs/brokering.md).",
    )
    internal_hosts: Annotated[
        list[str], NoDecode, Surface(Group.SCANNING, option=True, restart=True)
    ] = Field(
        default_factory=list,
        description="Internal destinations agents may reach (names, *.wildcards, CIDRs, "
        "e.g. git.corp,*.svc,10.0.0.0/8); not flagged as SSRF by the local engine. "
        "Comma-separated.",
    )
    passthrough_hosts: Annotated[list[str], NoDecode, Surface(Group.PROXY, option=True)] = Field(
        default_factory=list,
        description="Hosts tunnelled without inspection (e.g. package mirrors); each "
        "connection is logged and counted. Exact names or *.domain, comma-separated.",
    )
    raw_tcp_hosts: Annotated[list[str], NoDecode, Surface(Group.PROXY, option=True)] = Field(
        default_factory=list,
        description="Destinations allowed to carry raw TCP (not HTTP) through a tunnel or "
        "redirect: HOST[:PORT] with names, *.domain or CIDR blocks ([v6]:PORT), e.g. "
        "db.corp:5432. Each stream is logged, counted and scanned as it flows; any other "
        "raw TCP is refused.",
    )
    approval_volatile_headers: Annotated[
        list[str], NoDecode, Surface(Group.APPROVALS, flag=False, option=True, restart=True)
    ] = Field(
        default_factory=lambda: list(VOLATILE_HEADERS),
        description="Headers that may change between an agent's retries of a held request "
        "(retry counters, signing dates, trace ids): still scanned, but left out of the "
        "key that ties an approval to the request the reviewer saw — when their value has "
        "the header's usual shape (others: at most 64 token characters).",
    )
    proxy_auth: Annotated[
        SecretStr | None, Surface(Group.PROXY, flag=False, mitmproxy=("proxyauth",))
    ] = Field(default=None, description="USER:PASSWORD agents must present (Proxy-Authorization).")
    approval_expiry: Annotated[float, Surface(Group.APPROVALS, option=True, restart=True)] = Field(
        default=3600.0,
        gt=0,
        le=30 * 86400,
        description="Seconds an approval held at the sidecar stays open for a decision.",
    )
    admin_token: Annotated[SecretStr | None, Surface(Group.ADMIN, flag=False)] = Field(
        default=None,
        description="Bearer token the admin approval endpoints require, on every address; "
        "unset: one generated into <confdir>/admin-token (0600).",
    )
    ca_cert: Annotated[Path | None, Surface(Group.TLS, run_only=True)] = Field(
        default=None,
        description="CA certificate (PEM) to use instead of a generated one (e.g. from a "
        "Kubernetes Secret).",
    )
    ca_key: Annotated[Path | None, Surface(Group.TLS, run_only=True)] = Field(
        default=None, description="Private key (PEM) of ca_cert; the two go together."
    )
    ca_bundle_out: Annotated[Path | None, Surface(Group.TLS, option=True)] = Field(
        default=None,
        description="Also write the agents' CA bundle to this file (e.g. on a volume shared "
        "with agents).",
    )
    transparent_listen: Annotated[
        HostPort | None,
        NoDecode,
        Surface(Group.PROXY, mitmproxy=("mode=transparent@HOST:PORT",)),
    ] = Field(
        default=None,
        description="Also accept connections redirected by iptables (transparent mode) on "
        "this HOST:PORT.",
    )
    upstream_ca: Annotated[
        Path | None, Surface(Group.TLS, mitmproxy=("ssl_verify_upstream_trusted_ca",))
    ] = Field(default=None, description="Extra CA bundle to trust for upstream servers.")
    scan_api_ca: Annotated[Path | None, Surface(Group.TLS, option=True, restart=True)] = Field(
        default=None,
        description="Extra CA bundle to trust for the scan API (a self-hosted gateway).",
    )
    upstream_proxy: Annotated[
        AnyHttpUrl | None,
        Surface(Group.PROXY, option=True, restart=True, mitmproxy=("mode=upstream:URL",)),
    ] = Field(
        default=None,
        description="Chain outbound traffic through this HTTP proxy (http://host:port).",
    )
    fail_mode: Annotated[FailMode, Surface(Group.SCANNING, option=True)] = Field(
        default=FailMode.CLOSED,
        description="closed: block a request when no verdict can be had; open: forward it.",
    )
    scan_timeout: Annotated[float, Surface(Group.SCANNING, option=True, restart=True)] = Field(
        default=10.0, gt=0, le=300, description="Seconds one scan may take, retries included."
    )
    scan_retries: Annotated[int, Surface(Group.SCANNING, option=True, restart=True)] = Field(
        default=2, ge=0, le=10, description="Retries of a scan on 5xx and connection errors."
    )
    breaker_threshold: Annotated[int, Surface(Group.SCANNING, option=True, restart=True)] = Field(
        default=5, ge=1, le=1000, description="Scan API outages in a row that open the circuit."
    )
    breaker_cooldown: Annotated[float, Surface(Group.SCANNING, option=True, restart=True)] = Field(
        default=10.0,
        gt=0,
        le=3600,
        description="Seconds the circuit stays open before a trial scan.",
    )
    approval_timeout: Annotated[float, Surface(Group.APPROVALS, option=True, restart=True)] = Field(
        default=60.0, gt=0, le=86400, description="Seconds a request is held for approval."
    )
    approval_poll_interval: Annotated[
        float, Surface(Group.APPROVALS, option=True, restart=True)
    ] = Field(default=2.0, gt=0, le=60, description="Seconds between approval status polls.")
    max_pending_approvals: Annotated[int, Surface(Group.APPROVALS, option=True, restart=True)] = (
        Field(
            default=100,
            ge=1,
            le=10000,
            description="Requests held for approval at once; more are refused.",
        )
    )
    max_body_bytes: Annotated[int, Surface(Group.LIMITS, option=True)] = Field(
        default=SCAN_API_MAX_BODY_BYTES,
        ge=1024,
        le=64 * 1024 * 1024,
        description="Largest decoded request body that is scanned; larger ones are refused.",
    )
    max_buffered_bytes: Annotated[int, Surface(Group.LIMITS, mitmproxy=("body_size_limit",))] = (
        Field(
            default=64 * 1024 * 1024,
            ge=1024 * 1024,
            description="Request body bytes held at once, all requests together (each is "
            "refused past the scan limit; this bounds many at once, e.g. HTTP/2 streams); a "
            "body that would pass it gets 503 SIDECAR_BUSY.",
        )
    )
    max_connections: Annotated[int, Surface(Group.LIMITS, option=True)] = Field(
        default=1024,
        ge=1,
        le=1_000_000,
        description="Agent connections open at once (all agents together); at the cap a "
        "new one replaces the longest-idle one, or is refused when none is idle.",
    )
    idle_timeout: Annotated[float, Surface(Group.LIMITS, option=True)] = Field(
        default=120.0, gt=0, le=86400, description="Seconds an idle agent connection stays open."
    )
    head_timeout: Annotated[float, Surface(Group.LIMITS, option=True)] = Field(
        default=10.0,
        gt=0,
        le=3600,
        description="Seconds a new connection has to send its first request head, CONNECT "
        "or TLS hello.",
    )
    shutdown_grace: Annotated[float, Surface(Group.LIMITS, run_only=True)] = Field(
        default=20.0, ge=0, le=3600, description="Seconds SIGTERM waits for in-flight requests."
    )
    response_queue_size: Annotated[
        int, Surface(Group.SCANNING, flag=False, option=True, restart=True)
    ] = Field(
        default=256,
        ge=1,
        le=100_000,
        description="Response bodies waiting to be posted to the backend; more are dropped "
        "(and counted).",
    )
    response_workers: Annotated[
        int, Surface(Group.SCANNING, flag=False, option=True, restart=True)
    ] = Field(default=4, ge=1, le=64, description="Tasks posting response bodies to the backend.")
    runtime_type: Annotated[str, Surface(Group.SCANNING, flag=False, option=True)] = Field(
        default="custom", max_length=64, description="runtime_type sent to the scan API."
    )

    @field_validator("listen", mode="before")
    @classmethod
    def _parse_listen(cls, value: object) -> HostPort:
        return HostPort.parse(value)

    @field_validator("admin", mode="before")
    @classmethod
    def _parse_admin(cls, value: object) -> HostPort | None:
        if value is None or value == "" or value == "off":
            return None
        return HostPort.parse(value)

    @field_validator("passthrough_hosts", mode="after")
    @classmethod
    def _check_hosts(cls, value: list[str]) -> list[str]:
        for host in value:
            bare = host.removeprefix("*.")
            if not bare or any(c in bare for c in "*/: ") or "." not in bare:
                raise ValueError(f"{host!r}: expected a host name or *.domain")
        return value

    @field_validator("internal_hosts", mode="after")
    @classmethod
    def _check_internal(cls, value: list[str]) -> list[str]:
        return check_host_patterns(value)

    @field_validator("raw_tcp_hosts", mode="after")
    @classmethod
    def _check_raw_tcp(cls, value: list[str]) -> list[str]:
        for entry in value:
            parse_destination_pattern(entry)
        return value

    @field_validator("approval_volatile_headers", mode="after")
    @classmethod
    def _lower_headers(cls, value: list[str]) -> list[str]:
        for name in value:
            if not name or any(c in name for c in " :\t"):
                raise ValueError(f"{name!r}: expected a header name")
        return [name.lower() for name in value]

    @field_validator("admin_token", mode="after")
    @classmethod
    def _strong_token(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value().strip()) < 32:
            raise ValueError("must be at least 32 characters (e.g. `openssl rand -hex 16`)")
        return value

    @field_validator("proxy_auth", mode="after")
    @classmethod
    def _check_auth(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and ":" not in value.get_secret_value():
            raise ValueError("expected USER:PASSWORD")
        return value

    @field_validator(
        "internal_hosts",
        "passthrough_hosts",
        "raw_tcp_hosts",
        "approval_volatile_headers",
        mode="before",
    )
    @classmethod
    def _split_hosts(cls, value: object) -> object:
        if isinstance(value, str):
            return [h.strip() for h in value.split(",") if h.strip()]
        return value

    @field_validator("transparent_listen", mode="before")
    @classmethod
    def _parse_transparent(cls, value: object) -> HostPort | None:
        if value is None or value == "":
            return None
        return HostPort.parse(value)

    @model_validator(mode="after")
    def _consistent(self) -> SidecarSettings:
        if (self.ca_cert is None) != (self.ca_key is None):
            raise ValueError("--ca-cert and --ca-key go together")
        if self.transparent_listen == self.listen:
            raise ValueError("--transparent-listen must differ from --listen")
        if self.max_buffered_bytes < request_body_cap(self.max_body_bytes):
            raise ValueError(
                f"--max-buffered-bytes must hold at least one body of --max-body-bytes "
                f"(>= {request_body_cap(self.max_body_bytes)})"
            )
        return self

    @field_validator(
        "upstream_ca",
        "scan_api_ca",
        "policy",
        "ca_cert",
        "ca_key",
        "brokered_credentials",
        mode="after",
    )
    @classmethod
    def _check_file(cls, value: Path | None) -> Path | None:
        return _existing_file(value)

    @field_validator("upstream_ca", "scan_api_ca", mode="after")
    @classmethod
    def _check_ca_bundle(cls, value: Path | None) -> Path | None:
        return _ca_bundle(value)

    @field_validator("confdir", mode="after")
    @classmethod
    def _expand_confdir(cls, value: Path) -> Path:
        return value.expanduser()


class SettingsError(ValueError):
    """A setting has a bad value; the message is one line naming the setting."""


def describe_validation_error(
    error: ValidationError, env_prefix: str = "SIDECAR_", flags: bool = True
) -> str:
    """One line per bad field, naming the flag (when `flags` and the setting has one) and
    the variable."""
    parts = []
    for item in error.errors():
        message = str(item["msg"]).removeprefix("Value error, ")
        if not item["loc"]:  # a rule across fields: its message names them
            parts.append(message)
            continue
        field, *inner = [str(p) for p in item["loc"]]
        name = env_prefix + field.upper()
        if flags and field in SidecarSettings.model_fields and surface_of(field).flag:
            name = "--" + field.replace("_", "-") + " / " + name
        where = f"{'.'.join(inner)}: " if inner else ""
        parts.append(f"{name}: {where}{message}")
    return "; ".join(parts)


def load_settings(**overrides: object) -> SidecarSettings:
    """Build settings from the environment plus explicit overrides; raise SettingsError."""
    clean = {k: v for k, v in overrides.items() if v is not None}
    try:
        return SidecarSettings(**clean)  # type: ignore[arg-type]
    except ValidationError as e:
        raise SettingsError(describe_validation_error(e)) from None
    except EnvParseError as e:
        raise SettingsError(str(e)) from None
