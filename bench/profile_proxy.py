"""Where the sidecar spends its CPU under one workload: py-spy on the live process.

    python -m bench.profile_proxy [--kind sidecar|interven|bare] [--size 262144] [--concurrency 4]
                                  [--requests 150] [--top 25] [--blocking]

Starts the same lab as `proxy_bench` (HTTPS upstream on loopback, curl as the client),
samples the proxy with py-spy (all threads, 200 Hz) while curl posts the workload, and
prints the frames with the most samples, self and inclusive. The raw collapsed stacks
are kept next to the results for a flame graph (`flamegraph.pl`, speedscope).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

from bench.proxy_bench import ROOT, Curl, Lab, Proxy, body_for


def summarise(raw: Path, top: int) -> str:
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        samples = int(count)
        total += samples
        frames = stack.split(";")
        own[frames[-1]] += samples
        for frame in set(frames):
            inclusive[frame] += samples
    out = [f"{total} samples"]
    out += [f"{n / total:6.1%} self  {f[:120]}" for f, n in own.most_common(top)]
    out += [""] + [f"{n / total:6.1%} incl  {f[:120]}" for f, n in inclusive.most_common(top)]
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.profile_proxy")
    parser.add_argument("--kind", choices=["sidecar", "interven", "bare"], default="sidecar",
                        help="interven: the sidecar with the scan-API double")  # fmt: skip
    parser.add_argument("--size", type=int, default=256 * 1024)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--requests", type=int, default=150)
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument(
        "--blocking", action="store_true", help="pause the proxy per sample: exact stacks, slower"
    )
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    raw = args.out / f"profile-{args.kind}-{args.size}.txt"
    with tempfile.TemporaryDirectory() as tmp:
        lab = Lab(Path(tmp))
        try:
            proxy = Proxy(lab, args.kind)
            curl = Curl(lab, proxy)
            url = f"{lab.upstream_url}/allow/profile"
            curl.run(url, body_for(2048, False, 0), 8, 100, 200)
            spy = subprocess.Popen(
                [str(Path(sys.executable).parent / "py-spy"), "record", "--pid",
                 str(proxy.child.proc.pid), "--format", "raw", "--output", str(raw),
                 "--rate", "200", "--threads",
                 *([] if args.blocking else ["--nonblocking"])],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )  # fmt: skip
            cpu = proxy.child.cpu()
            _, errors, wall = curl.run(
                url, body_for(args.size, False, 1), args.concurrency, args.requests, 200
            )
            cpu_ms = (proxy.child.cpu() - cpu) / args.requests * 1000
            spy.send_signal(2)  # SIGINT: py-spy writes its output and exits
            spy.wait()
            proxy.stop()
        finally:
            lab.stop()
    print(f"{args.kind}: {args.requests / wall:.0f} req/s, {cpu_ms:.2f} CPU ms/request, "
          f"{errors} errors; raw stacks: {raw}")  # fmt: skip
    print(summarise(raw, args.top))


if __name__ == "__main__":
    main()
