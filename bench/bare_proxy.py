"""Bare mitmproxy for the benchmark: the sidecar's own mitmproxy options, no addon.

    python -m bench.bare_proxy --confdir DIR --upstream-ca FILE

The options come from `addons.serve.mitmproxy_option_values`, so the only difference
from `egress-sidecar run` is the egress addon itself. Prints `ready HOST:PORT`.
"""

from __future__ import annotations

import argparse
import asyncio

from mitmproxy import ctx
from mitmproxy.options import Options
from mitmproxy.tools.dump import DumpMaster

from addons.ca import ensure_ca
from addons.serve import mitmproxy_option_values
from sidecar.config.settings import load_settings


class _Announce:
    def running(self) -> None:
        host, port = ctx.master.addons.get("proxyserver").listen_addrs()[0][:2]
        print(f"ready {host}:{port}", flush=True)


async def run(confdir: str, upstream_ca: str) -> None:
    settings = load_settings(listen="127.0.0.1:0", confdir=confdir, upstream_ca=upstream_ca)
    ensure_ca(settings.confdir)
    master = DumpMaster(
        Options(confdir=str(settings.confdir)), with_termlog=False, with_dumper=False
    )
    master.addons.add(_Announce())
    master.options.update(**mitmproxy_option_values(settings))
    await master.run()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.bare_proxy")
    parser.add_argument("--confdir", required=True)
    parser.add_argument("--upstream-ca", required=True)
    args = parser.parse_args()
    asyncio.run(run(args.confdir, args.upstream_ca))


if __name__ == "__main__":
    main()
