"""The remote scan API (`interven`), as documented in its API and SDK references."""

from __future__ import annotations

from urllib.parse import quote

from sidecar.backends.base import ObservedResponse
from sidecar.backends.contract import ApprovalState, ScanRequest, ScanVerdict
from sidecar.backends.http import Connection, bearer_client, parse_answer
from sidecar.config.credentials import IntervenCredentials


class IntervenBackend:
    """Scan API client: `POST /v1/scan`, `POST /v1/scan/response`, approval status."""

    name = "interven"

    def __init__(
        self,
        credentials: IntervenCredentials,
        conn: Connection,
    ) -> None:
        if credentials.api_key is None:
            raise ValueError("INTERVEN_API_KEY is not set")
        self._http = bearer_client(
            str(credentials.gateway_url), credentials.api_key, "INTERVEN_API_KEY", conn
        )

    async def scan(self, request: ScanRequest) -> ScanVerdict:
        payload = request.model_dump(exclude_none=True)
        data = await self._http.request_json("POST", "/v1/scan", "scan", json=payload)
        return parse_answer(ScanVerdict, data, "scan")

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
        return parse_answer(ApprovalState, data, "approval_status")

    async def aclose(self) -> None:
        await self._http.aclose()
