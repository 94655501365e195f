"""The mitmproxy master `egress-sidecar run` builds: only the addons it uses."""

from __future__ import annotations

from mitmproxy.addons import default_addons

from addons.serve import UNUSED_ADDONS


def test_every_addon_left_out_is_one_of_mitmproxys_and_the_needed_ones_stay():
    names = {type(a).__name__ for a in default_addons()}
    assert names >= UNUSED_ADDONS  # a renamed addon would otherwise stay in silently
    kept = names - UNUSED_ADDONS
    assert {"Core", "Proxyserver", "NextLayer", "TlsConfig", "ProxyAuth", "DisableH2C",
            "Block", "BlockList", "StripDnsHttpsRecords", "DnsResolver"} <= kept  # fmt: skip
