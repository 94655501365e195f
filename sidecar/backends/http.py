"""HTTP plumbing shared by remote backends: one client, typed errors, one retry policy.

A circuit breaker (see `breaker.py`) sits in front of every call when given.

Retry policy, stated once: connection errors, timeouts of a single attempt and 5xx are
retried up to `retries` times with full-jitter exponential backoff; 429 is retried
after `Retry-After` when the server gives it (full jitter otherwise); 4xx other than
429 is never retried. No retry starts if it would end past the call's deadline, and
the whole call, retries included, is bounded by that deadline.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import ssl
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import certifi
import httpx
from pydantic import BaseModel, SecretStr, ValidationError
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception_type,
    stop_after_attempt,
    stop_before_delay,
    wait_random_exponential,
)

from sidecar import __version__
from sidecar.backends.breaker import CircuitBreaker
from sidecar.backends.errors import (
    MalformedVerdict,
    ScanAuthError,
    ScanError,
    ScanOverloaded,
    ScanRateLimited,
    ScanRejected,
    ScanServerError,
    ScanTimeout,
    ScanUnavailable,
)
from sidecar.observability.decision_log import loggable

T = TypeVar("T")
M = TypeVar("M", bound=BaseModel)

BACKOFF_INITIAL = 0.1
BACKOFF_MAX = 2.0


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or HTTP-date)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    current = time.time() if now is None else now
    return max(0.0, when.timestamp() - current)


def raise_for_status(
    response: httpx.Response, what: str, key_name: str = "INTERVEN_API_KEY", detail: bool = False
) -> None:
    """Turn a non-2xx answer into the typed error the fail mode switches on. `detail`:
    a 4xx names what the API said was wrong (for calls that send our own documents, such
    as a policy; never for scans, whose answers could echo what an agent sent)."""
    status = response.status_code
    if status < 300:
        return
    if detail and 400 <= status < 500 and status not in (401, 403, 429):
        raise ScanRejected(f"{what}: HTTP {status}: {_problem(response)}", status)
    if status == 429:
        retry_after = parse_retry_after(response.headers.get("retry-after"))
        raise ScanRateLimited(f"{what}: HTTP 429", retry_after=retry_after)
    if status in (401, 403):
        raise ScanAuthError(f"{what}: HTTP {status} (check {key_name})", status)
    if status >= 500:
        raise ScanServerError(f"{what}: HTTP {status}", status)
    raise ScanRejected(f"{what}: HTTP {status}", status)


def _problem(response: httpx.Response) -> str:
    """The API's own words for a rejected document, bounded and made printable."""
    try:
        body = response.json()
    except ValueError:
        body = None
    text = ""
    if isinstance(body, dict):
        for key in ("error", "detail", "message"):
            if isinstance(body.get(key), (str, list, dict)):
                text = body[key] if isinstance(body[key], str) else json.dumps(body[key])
                break
    return loggable(text or response.text, 300) or "no detail"


class _RetryAfterOrFullJitter:
    """Wait as long as a 429's Retry-After says, else full-jitter exponential backoff."""

    def __init__(self) -> None:
        self._jitter = wait_random_exponential(multiplier=BACKOFF_INITIAL, max=BACKOFF_MAX)

    def __call__(self, state: RetryCallState) -> float:
        outcome = state.outcome
        error = outcome.exception() if outcome is not None else None
        if isinstance(error, ScanRateLimited) and error.retry_after is not None:
            return error.retry_after
        return float(self._jitter(state))


RETRYABLE = (ScanUnavailable, ScanTimeout, ScanServerError, ScanRateLimited)


def trust_with(extra_ca: Path | None) -> ssl.SSLContext:
    """Public roots (certifi, as httpx uses), plus a private CA when a gateway has one."""
    context = ssl.create_default_context(cafile=certifi.where())
    if extra_ca is not None:
        context.load_verify_locations(cafile=str(extra_ca))
    return context


class RetryingHttpClient:
    """One `httpx.AsyncClient` per backend, with the retry policy and typed errors."""

    def __init__(
        self,
        base_url: str,
        headers: dict[str, str],
        timeout: float,
        retries: int,
        transport: httpx.AsyncBaseTransport | None = None,
        max_connections: int = 100,
        breaker: CircuitBreaker | None = None,
        verify: ssl.SSLContext | bool = True,
        key_name: str = "INTERVEN_API_KEY",
    ) -> None:
        self.timeout = timeout
        self.key_name = key_name
        self.retries = retries
        self.breaker = breaker
        self._client = httpx.AsyncClient(
            base_url=base_url,
            headers=headers,
            timeout=httpx.Timeout(timeout),
            limits=httpx.Limits(
                max_connections=max_connections, max_keepalive_connections=max_connections
            ),
            # Never read HTTPS_PROXY: our own calls must not loop through the sidecar.
            trust_env=False,
            follow_redirects=False,
            transport=transport,
            verify=verify,
        )

    async def request_json(
        self,
        method: str,
        path: str,
        what: str,
        json: Any = None,
        deadline: float | None = None,
        detail: bool = False,
    ) -> Any:
        """Send with retries within `deadline` seconds; return the decoded JSON body."""
        budget = self.timeout if deadline is None else deadline

        async def attempt() -> Any:
            response = await self._send(method, path, what, json)
            raise_for_status(response, what, self.key_name, detail)
            if response.status_code == 204 or not response.content:
                return None  # e.g. an outcome recorded; a verdict call then finds no verdict
            try:
                return response.json()
            except ValueError:
                raise MalformedVerdict(f"{what}: answer is not JSON") from None

        breaker = self.breaker
        if breaker is None:
            return await self._with_retries(attempt, budget, what)
        breaker.before_call(what)
        try:
            result = await self._with_retries(attempt, budget, what)
        except ScanError as e:
            breaker.record(e)
            raise
        except BaseException:
            breaker.release()
            raise
        breaker.record(None)
        return result

    async def _send(self, method: str, path: str, what: str, json: Any) -> httpx.Response:
        try:
            return await self._client.request(method, path, json=json)
        except httpx.PoolTimeout:
            raise ScanOverloaded(f"{what}: no free connection to the scan API") from None
        except httpx.TimeoutException:
            raise ScanTimeout(f"{what}: timed out") from None
        except httpx.TransportError as e:
            raise ScanUnavailable(f"{what}: {type(e).__name__}") from None
        except httpx.DecodingError:
            raise MalformedVerdict(f"{what}: answer could not be decoded") from None
        except httpx.HTTPError as e:  # anything else httpx raises is still a typed error
            raise ScanUnavailable(f"{what}: {type(e).__name__}") from None

    async def _with_retries(
        self, attempt: Callable[[], Awaitable[T]], budget: float, what: str
    ) -> T:
        retrying = AsyncRetrying(
            retry=retry_if_exception_type(RETRYABLE),
            wait=_RetryAfterOrFullJitter(),
            stop=stop_after_attempt(self.retries + 1) | stop_before_delay(budget),
            reraise=True,
        )
        try:
            async with asyncio.timeout(budget):
                return await retrying(attempt)
        except TimeoutError:
            raise ScanTimeout(f"{what}: no answer within {budget:g}s") from None

    async def aclose(self) -> None:
        await self._client.aclose()


@dataclass(frozen=True)
class Connection:
    """How a backend reaches its API: the deadline and retries of a call, the circuit
    breaker, extra trust for a private gateway, and (in tests) the transport."""

    timeout: float
    retries: int
    breaker: CircuitBreaker | None = None
    extra_ca: Path | None = None
    transport: httpx.AsyncBaseTransport | None = None


def bearer_client(
    base_url: str, api_key: SecretStr, key_name: str, conn: Connection
) -> RetryingHttpClient:
    """A governance API client: `Authorization: Bearer <key>`, our User-Agent, our trust."""
    return RetryingHttpClient(
        base_url=base_url.rstrip("/"),
        headers={
            "Authorization": f"Bearer {api_key.get_secret_value()}",
            "Accept": "application/json",
            "User-Agent": f"egress-sidecar/{__version__}",
        },
        timeout=conn.timeout,
        retries=conn.retries,
        transport=conn.transport,
        breaker=conn.breaker,
        verify=trust_with(conn.extra_ca),
        key_name=key_name,
    )


def parse_answer(model: type[M], data: Any, what: str) -> M:
    """Validate an API's answer; a bad one is a MalformedVerdict naming the field only
    (pydantic's default text would echo the input values)."""
    try:
        return model.model_validate(data)
    except ValidationError as e:
        item = e.errors()[0]
        where = ".".join(str(p) for p in item["loc"]) or "answer"
        raise MalformedVerdict(f"{what}: {where}: {item['msg']}") from None
