"""Runs last (see conftest): no sidecar credential in anything the whole suite produced.

Covers every log line of every sidecar (all loggers), every /metrics and admin answer,
everything real clients received (bodies, headers, stderr) and CLI output.
"""

from __future__ import annotations

from tests.support import leaks


def test_no_credential_leaked_anywhere(request):
    texts = leaks.collected()
    others = [i for i in request.session.items if i.nodeid != request.node.nodeid]
    if any("/e2e/" in i.nodeid for i in others):
        # When the suite ran, there is a great deal to read; an empty record means the
        # collection itself broke, which must fail rather than pass vacuously.
        assert len(texts) > len(others)
    for key in leaks.SIDECAR_KEYS:
        offenders = [t[:200] for t in texts if key in t]
        assert not offenders, f"credential found in output: {offenders[:3]}"
