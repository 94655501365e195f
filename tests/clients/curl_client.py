"""Runs the real curl binary (configured only by env) and reports its result as JSON."""

import json
import subprocess
import sys
import tempfile
from pathlib import Path

spec = json.load(sys.stdin)
with tempfile.TemporaryDirectory() as tmp:
    head, out = f"{tmp}/head", f"{tmp}/out"
    cmd = [
        "curl",
        "-sS",
        "--suppress-connect-headers",
        "-X",
        spec["method"],
        "-D",
        head,
        "-o",
        out,
        "-w",
        "%{http_version}",
        spec["url"],
    ]
    if spec["http2"]:
        cmd.append("--http2")
    for k, v in spec["headers"].items():
        cmd += ["-H", f"{k}: {v}"]
    if spec["body"] is not None:
        cmd += ["--data-binary", "@-"]
    data = None if spec["body"] is None else spec["body"].encode("latin-1")
    version = subprocess.run(cmd, input=data, check=True, capture_output=True).stdout.decode()
    lines = Path(head).read_text(encoding="latin-1").splitlines()
    status = int(lines[0].split()[1])
    headers = dict(line.split(": ", 1) for line in lines[1:] if ": " in line)
    body = Path(out).read_bytes()
json.dump(
    {"status": status, "headers": headers, "body": body.decode("latin-1"), "http_version": version},
    sys.stdout,
)
