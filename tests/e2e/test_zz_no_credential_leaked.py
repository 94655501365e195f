"""Runs last (see conftest): no sidecar credential in anything the whole suite produced.

Brokered credentials' real values are grepped for too (registered by the tests that
use them). Covers every log line of every sidecar (all loggers), every /metrics and admin answer,
everything real clients received (bodies, headers, stderr) and CLI output. It drives a
request of its own first — one carrying the sidecar's key, refused — so that even run
alone it greps real output, never an empty record.
"""

from __future__ import annotations

from tests.support import leaks
from tests.support.sidecar import API_KEY, run_client


def test_no_credential_leaked_anywhere(request, sidecar, upstream):
    body = f'{{"note": "{API_KEY}"}}'.encode()
    refused = run_client(sidecar, "requests", "POST", upstream.https + "/deny/own-key", body,
                         {"Content-Type": "application/json"})  # fmt: skip
    assert refused.status == 403
    assert upstream.requests_to("/deny/own-key") == []
    sidecar.metrics_text()
    texts = leaks.collected()
    trace = refused.headers["x-interven-trace-id"]
    assert any(trace in t for t in texts), "the refusal's decision line was not collected"
    others = [i for i in request.session.items if i.nodeid != request.node.nodeid]
    if any("/e2e/" in i.nodeid for i in others):
        # When the suite ran, there is a great deal to read; an empty record means the
        # collection itself broke, which must fail rather than pass vacuously.
        assert len(texts) > len(others)
    for key in leaks.secrets():  # brokered credentials' real values too
        offenders = [t[:200] for t in texts if key in t]
        assert not offenders, f"credential found in output: {offenders[:3]}"
