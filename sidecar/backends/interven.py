"""The remote scan API (`interven`), as documented in its API and SDK references."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import quote

import httpx
from pydantic import ValidationError

from sidecar import __version__
from sidecar.backends.base import ObservedResponse
from sidecar.backends.breaker import CircuitBreaker
from sidecar.backends.errors import MalformedVerdict
from sidecar.backends.http import RetryingHttpClient, trust_with
from sidecar.credentials import IntervenCredentials
from sidecar.verdict import ApprovalState, ScanRequest, ScanVerdict


class IntervenBackend:
    """Scan API client: `POST /v1/scan`, `POST /v1/scan/response`, approval status."""

    name = "interven"

    def __init__(
        self,
        credentials: IntervenCredentials,
        timeout: float,
        retries: int,
        transport: httpx.AsyncBaseTransport | None = None,
        breaker: CircuitBreaker | None = None,
        extra_ca: Path | None = None,
    ) -> None:
        if credentials.api_key is None:
            raise ValueError("INTERVEN_API_KEY is not set")
        self._http = RetryingHttpClient(
            base_url=str(credentials.gateway_url).rstrip("/"),
            headers={
                "Authorization": f"Bearer {credentials.api_key.get_secret_value()}",
                "User-Agent": f"egress-sidecar/{__version__}",
            },
            timeout=timeout,
            retries=retries,
            transport=transport,
            breaker=breaker,
            verify=trust_with(extra_ca),
        )

    async def scan(self, request: ScanRequest) -> ScanVerdict:
        payload = request.model_dump(exclude_none=True)
        data = await self._http.request_json("POST", "/v1/scan", "scan", json=payload)
        try:
            return ScanVerdict.model_validate(data)
        except ValidationError as e:
            raise MalformedVerdict(f"scan: {_first_problem(e)}") from None

    async def scan_response(self, response: ObservedResponse) -> None:
        payload = {
            "trace_id": response.trace_id,
            "response_body": response.body,
            "response_status": response.status,
        }
        await self._http.request_json("POST", "/v1/scan/response", "scan_response", json=payload)

    async def approval_status(self, approval_id: str) -> ApprovalState:
        path = f"/v1/approvals/{quote(approval_id, safe='')}/status"
        data = await self._http.request_json("GET", path, "approval_status")
        try:
            return ApprovalState.model_validate(data)
        except ValidationError as e:
            raise MalformedVerdict(f"approval_status: {_first_problem(e)}") from None

    async def aclose(self) -> None:
        await self._http.aclose()


def _first_problem(error: ValidationError) -> str:
    """Field and message only: pydantic's default text would echo the input values."""
    item = error.errors()[0]
    where = ".".join(str(p) for p in item["loc"]) or "verdict"
    return f"{where}: {item['msg']}"
