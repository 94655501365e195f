"""A Python agent: sends one request with requests or httpx, configured only by env.

Reads {method, url, headers, body} as JSON on stdin; prints {status, headers, body}.
"""

import json
import sys

spec = json.load(sys.stdin)
body = None if spec["body"] is None else spec["body"].encode("latin-1")

if sys.argv[1] == "requests":
    import requests

    r = requests.request(
        spec["method"], spec["url"], headers=spec["headers"], data=body, timeout=60
    )
    status, headers, content = r.status_code, dict(r.headers), r.content
else:
    import httpx

    with httpx.Client(timeout=60) as client:
        r = client.request(spec["method"], spec["url"], headers=spec["headers"], content=body)
        status, headers, content = r.status_code, dict(r.headers), r.content

json.dump({"status": status, "headers": headers, "body": content.decode("latin-1")}, sys.stdout)
