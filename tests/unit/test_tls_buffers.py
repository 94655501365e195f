from __future__ import annotations

from mitmproxy import tls
from mitmproxy.proxy.context import Context
from mitmproxy.test.taddons import context as addon_context
from mitmproxy.test.tflow import tclient_conn
from OpenSSL import SSL

from addons.tls_buffers import ReleaseTlsBuffers


def _mode(ctx: SSL.Context) -> int:
    return ctx.set_mode(0)  # SSL_CTX_set_mode ORs in nothing and returns the mode


def _tls_data(ssl_ctx: SSL.Context | None) -> tls.TlsData:
    client = tclient_conn()
    with addon_context() as tctx:
        ctx = Context(client, tctx.options)
    ssl_conn = SSL.Connection(ssl_ctx) if ssl_ctx is not None else None
    return tls.TlsData(client, ctx, ssl_conn)


def test_contexts_of_both_sides_release_idle_buffers():
    addon = ReleaseTlsBuffers()
    for hook in (addon.tls_start_client, addon.tls_start_server):
        ssl_ctx = SSL.Context(SSL.TLS_METHOD)
        assert not _mode(ssl_ctx) & SSL.MODE_RELEASE_BUFFERS
        hook(_tls_data(ssl_ctx))
        assert _mode(ssl_ctx) & SSL.MODE_RELEASE_BUFFERS
        # Connections made from the (cached) context from now on inherit the mode.
