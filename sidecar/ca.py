"""The sidecar's CA: created once in the confdir, shared with agents as a bundle.

The CA key stays in the confdir (0700, key files 0600). Agents get `ca-bundle.pem`:
the system's trusted roots plus the sidecar's certificate, never the key.
"""

from __future__ import annotations

import os
import ssl
from dataclasses import dataclass
from pathlib import Path

import certifi
from mitmproxy.certs import CertStore

CA_BASENAME = "mitmproxy"
CA_KEY_SIZE = 2048
BUNDLE_NAME = "ca-bundle.pem"


@dataclass(frozen=True)
class CaFiles:
    cert: Path  # the CA certificate alone (PEM)
    bundle: Path  # system roots + the CA certificate
    key: Path  # key + certificate: never leaves the confdir


def system_roots() -> Path:
    """The OS trust store when there is one, else certifi's bundle."""
    paths = ssl.get_default_verify_paths()
    for candidate in (paths.cafile, paths.openssl_cafile):
        if candidate and Path(candidate).is_file():
            return Path(candidate)
    return Path(certifi.where())


def ensure_ca(confdir: Path) -> CaFiles:
    """Create the CA if missing (as mitmproxy would), lock down its key, write the bundle."""
    confdir.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(confdir, 0o700)
    CertStore.from_store(str(confdir), CA_BASENAME, CA_KEY_SIZE)
    files = CaFiles(
        cert=confdir / f"{CA_BASENAME}-ca-cert.pem",
        bundle=confdir / BUNDLE_NAME,
        key=confdir / f"{CA_BASENAME}-ca.pem",
    )
    # mitmproxy writes these under a 077 umask; an older or copied confdir may not have.
    for secret in (files.key, confdir / f"{CA_BASENAME}-ca.p12"):
        if secret.exists():
            os.chmod(secret, 0o600)
    write_bundle(files.cert, files.bundle)
    return files


def write_bundle(ca_cert: Path, bundle: Path) -> None:
    """Atomically write system roots + our CA so readers never see half a file."""
    roots = system_roots().read_bytes()
    ours = ca_cert.read_bytes()
    tmp = bundle.with_suffix(".tmp")
    tmp.write_bytes(roots.rstrip(b"\n") + b"\n" + ours)
    os.chmod(tmp, 0o644)
    tmp.replace(bundle)
