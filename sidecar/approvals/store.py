"""Approvals decided at the sidecar (the embedded engine, and backends whose reviews
cannot be polled), persisted in the confdir.

Every change is written atomically (0600), so a restart loses no pending approval and no
decision. An agent that retries a request after a restart finds the approval it already
asked for: an identical request reuses a pending approval, and uses an approved one once.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
import time
import uuid
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from sidecar.backends.contract import ScanRequest
from sidecar.engine.decisions import ApprovalStatus
from sidecar.judge.request_surface import volatile_free

FILE_NAME = "approvals.json"
MAX_RECORDS = 5000


def request_hash(
    request: ScanRequest,
    volatile: Iterable[str] = (),
    findings: Iterable[tuple[str, str, str]] = (),
) -> str:
    """Identifies exactly the request a reviewer saw (never stored in clear): method, URL,
    every header but the `volatile` ones (retry counters, signing dates), the body — the
    bytes as sent when the proxy digested them (`sent_digest`), else as scanned — and what
    the engine found (kind, location, value hash): a retry that differs in any byte, or
    carries a new finding, is a different request."""
    doc = {
        "method": request.method,
        "url": request.url,
        "headers": sorted(
            (k.lower(), v) for k, v in volatile_free(request.headers, volatile).items()
        ),
        "body": request.body,
        "sent": request.sent_digest,
        "findings": sorted(set(findings)),
    }
    raw = json.dumps(doc, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(raw.encode("utf-8", "surrogateescape")).hexdigest()


def coarse_location(location: str) -> str:
    """Where a finding was, without the names the agent chose (JSON keys, header names,
    form fields can carry data themselves): `body`, `url`, `header`, `query`..."""
    return location.split(":", 1)[0].split(".", 1)[0].split("[", 1)[0]


def reviewed_destination(request: ScanRequest) -> str:
    """What the reviewer is shown of where the request goes: scheme, host, port, path
    (the query string is left out)."""
    parts = urlsplit(request.url)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))[:512]


class ApprovalNotFound(KeyError):
    pass


class ApprovalReused(ValueError):
    pass


class ApprovalAlreadyDecided(ValueError):
    pass


@dataclass
class ApprovalRecord:
    id: str
    status: str
    created: float
    expires: float
    request_hash: str
    method: str
    host: str
    tool: str
    operation: str
    reasons: list[str]
    trace_id: str
    rule_id: str | None = None
    decided: float | None = None
    used: bool = False
    # What the reviewer decides on (records from before these fields load with defaults).
    destination: str = ""
    findings: list[dict[str, str | None]] = field(default_factory=list)

    def current_status(self, now: float) -> ApprovalStatus:
        if self.status == ApprovalStatus.PENDING and now >= self.expires:
            return ApprovalStatus.EXPIRED
        return ApprovalStatus(self.status)

    def public(self, now: float) -> dict[str, Any]:
        """What the CLI and admin API show: no request content, only its shape."""
        doc = asdict(self)
        doc["status"] = self.current_status(now).value
        del doc["request_hash"]
        return doc


class ApprovalStore:
    def __init__(
        self,
        confdir: Path,
        expiry: float,
        clock: Any = time.time,
        volatile_headers: Iterable[str] = (),
    ) -> None:
        self._path = confdir / FILE_NAME
        self._expiry = expiry
        self.volatile_headers = tuple(volatile_headers)
        self._clock = clock
        self._lock = threading.Lock()
        self._records: dict[str, ApprovalRecord] = {}
        self._load()

    def _load(self) -> None:
        if not self._path.exists():
            return
        try:
            data = json.loads(self._path.read_text())
            self._records = {r["id"]: ApprovalRecord(**r) for r in data.get("approvals", [])}
        except (OSError, ValueError, TypeError, KeyError) as e:
            raise ValueError(
                f"{self._path}: unreadable approvals file ({type(e).__name__})"
            ) from None

    def _save(self) -> None:
        records = sorted(self._records.values(), key=lambda r: r.created)[-MAX_RECORDS:]
        self._records = {r.id: r for r in records}
        tmp = self._path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump({"approvals": [asdict(r) for r in records]}, f)
        tmp.replace(self._path)

    def request(self, request_hash: str, **summary: Any) -> str:
        """The approval for this request: an open one it already has, or a new one."""
        now = self._clock()
        with self._lock:
            for r in self._records.values():
                if r.request_hash != request_hash or r.used:
                    continue
                status = r.current_status(now)
                if status in (ApprovalStatus.PENDING, ApprovalStatus.APPROVED):
                    return r.id  # an approved one is used up by the request it lets through
            record = ApprovalRecord(
                id=str(uuid.uuid4()),
                status=ApprovalStatus.PENDING.value,
                created=now,
                expires=now + self._expiry,
                request_hash=request_hash,
                **summary,
            )
            self._records[record.id] = record
            self._save()
            return record.id

    def track(self, approval_id: str, request_hash: str, **summary: Any) -> str:
        """Hold under a backend's own approval id (a review that backend cannot be polled
        for): it is decided here, with `approvals approve|deny` or the admin endpoint."""
        now = self._clock()
        with self._lock:
            known = self._records.get(approval_id)
            if known is not None and (known.used or known.request_hash != request_hash):
                # One approval lets one request through, the one it was asked for.
                raise ApprovalReused(f"approval {approval_id} was already used or is another's")
            if known is None:
                self._records[approval_id] = ApprovalRecord(
                    id=approval_id,
                    status=ApprovalStatus.PENDING.value,
                    created=now,
                    expires=now + self._expiry,
                    request_hash=request_hash,
                    **summary,
                )
                self._save()
            return approval_id

    def status(self, approval_id: str) -> ApprovalStatus:
        with self._lock:
            record = self._records.get(approval_id)
            if record is None:
                raise ApprovalNotFound(approval_id)
            return record.current_status(self._clock())

    def decide(self, approval_id: str, approve: bool) -> dict[str, Any]:
        now = self._clock()
        with self._lock:
            record = self._records.get(approval_id)
            if record is None:
                raise ApprovalNotFound(approval_id)
            status = record.current_status(now)
            if status is not ApprovalStatus.PENDING:
                raise ApprovalAlreadyDecided(f"approval {approval_id} is already {status.value}")
            record.status = (ApprovalStatus.APPROVED if approve else ApprovalStatus.DENIED).value
            record.decided = now
            self._save()
            return record.public(now)

    def consume(self, approval_id: str) -> ApprovalStatus:
        """The status a held request acts on. An approval lets one request through: the
        first to read it as approved uses it up; for any other it has expired."""
        with self._lock:
            record = self._records.get(approval_id)
            if record is None:
                raise ApprovalNotFound(approval_id)
            status = record.current_status(self._clock())
            if status is ApprovalStatus.APPROVED:
                if record.used:
                    return ApprovalStatus.EXPIRED
                record.used = True
                self._save()
            return status

    def listing(self, pending_only: bool = True) -> list[dict[str, Any]]:
        now = self._clock()
        with self._lock:
            records = sorted(self._records.values(), key=lambda r: r.created)
            return [
                r.public(now)
                for r in records
                if not pending_only or r.current_status(now) is ApprovalStatus.PENDING
            ]
