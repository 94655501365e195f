"""The environment an agent's shell needs to send its traffic through the sidecar."""

from __future__ import annotations

import ipaddress
import shlex
from pathlib import Path
from urllib.parse import quote

from sidecar.config.settings import HostPort

NO_PROXY = "localhost,127.0.0.1,::1"
CA_VARIABLES = (
    "SSL_CERT_FILE",  # OpenSSL-based runtimes, httpx, Go, Ruby
    "REQUESTS_CA_BUNDLE",  # Python requests
    "CURL_CA_BUNDLE",  # curl
    "NODE_EXTRA_CA_CERTS",  # Node.js (added to its built-in roots)
    "GIT_SSL_CAINFO",  # git over HTTPS
)


def proxy_url(listen: HostPort, auth: str | None = None) -> str:
    """The URL agents use; a wildcard listen address is reached on loopback."""
    host = listen.host
    try:
        if ipaddress.ip_address(host).is_unspecified:
            host = "127.0.0.1" if ipaddress.ip_address(host).version == 4 else "::1"
    except ValueError:
        pass
    userinfo = ""
    if auth:
        user, _, password = auth.partition(":")
        userinfo = f"{quote(user, safe='')}:{quote(password, safe='')}@"
    return f"http://{userinfo}{HostPort(host=host, port=listen.port)}"


def agent_environment(listen: HostPort, ca_bundle: Path, auth: str | None = None) -> dict[str, str]:
    url = proxy_url(listen, auth)
    env = {
        "HTTPS_PROXY": url,
        "https_proxy": url,
        "HTTP_PROXY": url,
        "http_proxy": url,
        "NO_PROXY": NO_PROXY,
        "no_proxy": NO_PROXY,
        # Node 22.21+/24.5+ honour the proxy variables themselves when this is set.
        "NODE_USE_ENV_PROXY": "1",
    }
    env.update({name: str(ca_bundle) for name in CA_VARIABLES})
    return env


def export_lines(env: dict[str, str]) -> str:
    return "".join(f"export {name}={shlex.quote(value)}\n" for name, value in env.items())
