"""Redirected (transparent-mode) connections: the name asked for becomes the destination.

A redirected connection arrives with only the address the agent dialled. The sidecar
takes the name the agent asked for (TLS SNI, else Host) as the destination — judged,
then resolved and connected to by the sidecar — and refuses a request whose names
disagree. (No iptables here: mitmproxy's own flow objects, as its layers build them.)
"""

from __future__ import annotations

from mitmproxy.proxy.mode_specs import ProxyMode
from mitmproxy.test import tflow

from addons.request_rules import refuse_before_scan


def _redirected(sni: str | None, host_header: str | None, scheme: str = "https"):  # type: ignore[no-untyped-def]
    flow = tflow.tflow()
    flow.client_conn.proxy_mode = ProxyMode.parse("transparent")
    flow.client_conn.tls = sni is not None
    flow.client_conn.sni = sni
    flow.request.scheme = scheme
    flow.request.host = "93.184.216.34"  # what SO_ORIGINAL_DST said
    flow.request.port = 443 if scheme == "https" else 80
    flow.request.headers.pop("host", None)
    if host_header is not None:
        flow.request.headers["Host"] = host_header
    return flow


def test_the_sni_becomes_the_destination():
    flow = _redirected("api.example.com", "api.example.com")
    assert refuse_before_scan(flow) is None
    assert flow.request.host == "api.example.com"
    assert flow.request.port == 443


def test_the_host_header_names_a_plain_http_destination():
    flow = _redirected(None, "api.example.com:80", scheme="http")
    assert refuse_before_scan(flow) is None
    assert flow.request.host == "api.example.com"


def test_names_that_disagree_are_refused():
    flow = _redirected("api.example.com", "evil.example")
    refused = refuse_before_scan(flow)
    assert refused is not None
    refusal, reason = refused
    assert refusal.status == 421
    assert refusal.reasons == ["DESTINATION_MISMATCH"]
    assert reason == "destination_mismatch"


def test_without_a_name_the_address_dialled_is_the_destination():
    flow = _redirected(None, None, scheme="http")
    assert refuse_before_scan(flow) is None
    assert flow.request.host == "93.184.216.34"


def test_an_international_host_is_judged_in_the_form_it_resolves_as():
    full_width = "".join(chr(ord(c) + 0xFEE0) for c in "pastebin")
    flow = _redirected(None, full_width + ".example", scheme="http")
    assert refuse_before_scan(flow) is None
    assert flow.request.host == "pastebin.example"
