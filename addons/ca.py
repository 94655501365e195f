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


def ensure_ca(
    confdir: Path, cert: Path | None = None, key: Path | None = None, bundle_out: Path | None = None
) -> CaFiles:
    """Install the given CA (a mounted Secret) or create one if missing, lock down its
    key, and write the agents' bundle (also to `bundle_out` when given)."""
    confdir.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(confdir, 0o700)
    if cert is not None and key is not None:
        install_ca(confdir, cert, key)
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
    if bundle_out is not None:
        bundle_out.parent.mkdir(parents=True, exist_ok=True)
        write_bundle(files.cert, bundle_out)
    return files


def install_ca(confdir: Path, cert: Path, key: Path) -> None:
    """Put a CA from separate PEM files where mitmproxy looks for it (key+cert, 0600)."""
    cert_pem, key_pem = cert.read_bytes(), key.read_bytes()
    if b"PRIVATE KEY" not in key_pem or b"BEGIN CERTIFICATE" not in cert_pem:
        raise ValueError(f"{cert} / {key}: expected a PEM certificate and a PEM private key")
    target = confdir / f"{CA_BASENAME}-ca.pem"
    fd = os.open(target.with_suffix(".tmp"), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(key_pem.rstrip(b"\n") + b"\n" + cert_pem)
    target.with_suffix(".tmp").replace(target)
    (confdir / f"{CA_BASENAME}-ca-cert.pem").write_bytes(cert_pem)
    for stale in (
        f"{CA_BASENAME}-ca.p12",
        f"{CA_BASENAME}-ca-cert.p12",
        f"{CA_BASENAME}-ca-cert.cer",
    ):
        (confdir / stale).unlink(missing_ok=True)


def new_ca_pem(common_name: str = "egress-sidecar CA") -> tuple[bytes, bytes]:
    """A fresh CA as (certificate PEM, private key PEM), made the way mitmproxy makes its own."""
    from cryptography.hazmat.primitives import serialization
    from mitmproxy.certs import create_ca

    key, cert = create_ca(organization="egress-sidecar", cn=common_name, key_size=CA_KEY_SIZE)
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return cert.public_bytes(serialization.Encoding.PEM), key_pem


def write_bundle(ca_cert: Path, bundle: Path) -> None:
    """Atomically write system roots + our CA so readers never see half a file."""
    roots = system_roots().read_bytes()
    ours = ca_cert.read_bytes()
    tmp = bundle.with_suffix(".tmp")
    tmp.write_bytes(roots.rstrip(b"\n") + b"\n" + ours)
    os.chmod(tmp, 0o644)
    tmp.replace(bundle)
