"""Why a backend could not give a verdict.

A shallow hierarchy in the manner of httpx: the fail-mode logic catches `ScanError`
and reads `kind`, a short stable label used in metrics, logs and error bodies.
Messages never carry the API key, request bodies or response bodies.
"""

from __future__ import annotations


class ScanError(Exception):
    """No verdict could be obtained."""

    kind = "error"


class ScanUnavailable(ScanError):
    """The scan API could not be reached (refused, reset, DNS)."""

    kind = "unavailable"


class ScanTimeout(ScanError):
    """The scan did not finish within its deadline."""

    kind = "timeout"


class ScanOverloaded(ScanError):
    """No connection to the scan API was free in time: local congestion, not an outage."""

    kind = "overloaded"


class ScanRateLimited(ScanError):
    """HTTP 429; `retry_after` is in seconds when the server said."""

    kind = "rate_limited"

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class ScanServerError(ScanError):
    """HTTP 5xx from the scan API."""

    kind = "server_error"

    def __init__(self, message: str, status_code: int) -> None:
        super().__init__(message)
        self.status_code = status_code


class ScanRejected(ScanError):
    """A 4xx other than 429: bad request, bad credentials, body too large."""

    kind = "rejected"

    def __init__(self, message: str, status_code: int) -> None:
        super().__init__(message)
        self.status_code = status_code


class ScanAuthError(ScanRejected):
    """HTTP 401/403: the API key is missing, invalid or revoked."""

    kind = "auth"


class MalformedVerdict(ScanError):
    """The answer was not a valid verdict (bad JSON, unknown decision, missing field)."""

    kind = "malformed_verdict"


INTERNAL_ERROR_KIND = "internal"  # a bug in the sidecar itself; always fails closed
