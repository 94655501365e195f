"""Idle TLS connections give their buffers back.

OpenSSL keeps a read and a write buffer (about 17 KB each) on every connection for its
whole life unless SSL_MODE_RELEASE_BUFFERS is set, and neither pyOpenSSL nor mitmproxy 11
sets it. An agent's keep-alive connection is two TLS connections in the proxy (agent side
and upstream side), so this is most of what an idle or held connection costs: with the
mode set, `bench/` measured 149 -> 104 KB per idle connection and 22 -> 16 KB per held
approval, at unchanged CPU.

mitmproxy makes every connection from a context it caches (`mitmproxy.net.tls`); setting
the mode on that context covers each later connection made from it. The first connection
per context keeps its buffers: pyOpenSSL has no public per-connection switch.
"""

from __future__ import annotations

from mitmproxy import tls
from OpenSSL import SSL


class ReleaseTlsBuffers:
    """Works on the connection mitmproxy's TlsConfig built: under `egress-sidecar run` it
    runs after TlsConfig. Under `mitmdump -s`, script addons run before mitmproxy's own,
    so it finds no connection yet and leaves the buffers as they are."""

    def tls_start_client(self, data: tls.TlsData) -> None:
        _release_buffers(data)

    def tls_start_server(self, data: tls.TlsData) -> None:
        _release_buffers(data)


def _release_buffers(data: tls.TlsData) -> None:
    if data.ssl_conn is None:
        return
    data.ssl_conn.get_context().set_mode(SSL.MODE_RELEASE_BUFFERS)
