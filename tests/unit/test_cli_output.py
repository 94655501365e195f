"""What the CLI prints of a request is escaped: the agent shaped it, a human reads it."""

from __future__ import annotations

from sidecar.cli.main import _print_approvals


def test_approvals_list_escapes_what_the_agent_wrote(capsys):
    record = {
        "id": "a1", "status": "pending", "created": 0, "method": "POST",
        "destination": "https://127.0.0.2/x\x1b[2K\x1b[1G\x08\x08GET https://api.github.com/",
        "host": "127.0.0.2", "tool": "custom_proxy", "operation": "write",
        "reasons": ["POLICY:r"], "findings": [{"kind": "aws\x1b[31m", "location": "body"}],
    }  # fmt: skip
    _print_approvals([record])
    out = capsys.readouterr().out
    assert "\x1b" not in out
    assert "\x08" not in out
    assert "\\x1b[2K" in out  # shown, as text
