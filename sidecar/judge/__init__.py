"""Judging one outbound request: decoding, the sidecar's own keys, the scan request, the
backend's verdict, fail mode, shadow mode and approvals. No mitmproxy in here."""
