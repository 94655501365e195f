"""Class 10: only a human approves, and an approval covers exactly what was reviewed.

Rules: approving needs the admin token on every address (generated into the confdir,
0600, when none is configured; the agent does not have it); the sidecar's own listeners
are never a destination through the proxy, even when loopback is listed as internal;
and an approval is keyed on everything scanned but a named list of volatile headers,
plus what the engine found — so a retry that changes anything else, or carries a new
finding anywhere, needs a new approval.
"""

from __future__ import annotations

import json
import os
import stat
import threading

import httpx
import pytest

from tests.support.raw import exchange, proxy_socket, read_response
from tests.support.servers import UPSTREAM_HOST
from tests.support.waiting import eventually

POLICY = (
    "name: approve-reports\nrules:\n"
    "  - rule_id: approve-reports\n    match: {paths: ['/reports*']}\n"
    "    action: REQUIRE_APPROVAL\n    priority: 10\n"
)


@pytest.fixture
def held(make_sidecar, tmp_path):  # type: ignore[no-untyped-def]
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY)

    def make(**settings):  # type: ignore[no-untyped-def]
        return make_sidecar(backend="local", policy=str(policy), approval_mode="refuse",
                            confdir=tmp_path / "conf", **settings)  # fmt: skip

    return make


def _post(sidecar, upstream, path: str, headers: str = "", body: bytes = b"{}"):  # type: ignore[no-untyped-def]
    target = f"{UPSTREAM_HOST}:{upstream.http_port}"
    head = (
        f"POST http://{target}{path} HTTP/1.1\r\nHost: {target}\r\n"
        f"Content-Type: application/json\r\n{headers}"
    )
    return exchange(str(sidecar.info.proxy), head, body)


def _request_id(n: int) -> str:
    """A retry counter of the usual shape (a UUID): volatile, left out of the key."""
    return f"X-Request-Id: 0b1e4b7c-3f1a-4c47-9f2e-{n:012d}\r\n"


def test_a_free_form_volatile_header_is_part_of_the_key(held, upstream):
    sidecar = held()
    first = _post(sidecar, upstream, "/reports/redteam-q4", "X-Request-Id: 1\r\n")
    approval = _approval_id(first[2])
    with httpx.Client(trust_env=False, headers=sidecar.admin_headers()) as admin:
        admin.post(f"http://{sidecar.info.admin}/approvals/{approval}/approve")
    smuggled = _post(sidecar, upstream, "/reports/redteam-q4", "X-Request-Id: data-xyz\r\n")
    assert smuggled[0] == 403  # not a request id's shape: a different request
    assert upstream.requests_to("/reports/redteam-q4") == []


def _approval_id(payload: bytes) -> str:
    return str(json.loads(payload)["approval_id"])


def test_an_agent_cannot_approve_its_own_request(held, upstream):
    sidecar = held()
    status, _, payload = _post(sidecar, upstream, "/reports/redteam-q1")
    assert status == 403
    approval = _approval_id(payload)
    admin = f"http://{sidecar.info.admin}"
    with httpx.Client(trust_env=False) as direct:  # straight to the admin port, on loopback
        assert direct.post(f"{admin}/approvals/{approval}/approve").status_code == 401
        wrong = {"Authorization": "Bearer guessed"}
        assert (
            direct.post(f"{admin}/approvals/{approval}/approve", headers=wrong).status_code == 401
        )
        assert direct.get(f"{admin}/approvals").status_code == 401
    # Through the proxy, in every spelling of its address: never a destination.
    for host in ("127.0.0.1", "[::ffff:127.0.0.1]", "localhost", "0x7f.1", "[::1]"):
        sock = proxy_socket(str(sidecar.info.proxy))
        target = f"{host}:{sidecar.info.admin.port}"
        sock.sendall(f"POST http://{target}/approvals/{approval}/approve HTTP/1.1\r\n"
                     f"Host: {target}\r\nContent-Length: 0\r\n\r\n".encode())  # fmt: skip
        status, _, _ = read_response(sock)
        sock.close()
        assert status == 403, host
    pending = sidecar.admin_get("/approvals").json()["approvals"]
    assert [a["id"] for a in pending] == [approval]  # still waiting for a human
    token_file = sidecar.confdir / "admin-token"
    assert stat.S_IMODE(os.stat(token_file).st_mode) == 0o600


def test_the_admin_port_is_refused_even_when_loopback_is_internal(held, upstream):
    sidecar = held(internal_hosts=f"127.0.0.0/8,{UPSTREAM_HOST}")
    status, _, payload = _post(sidecar, upstream, "/reports/redteam-q2")
    approval = _approval_id(payload)
    sock = proxy_socket(str(sidecar.info.proxy))
    target = f"127.0.0.1:{sidecar.info.admin.port}"
    sock.sendall(f"POST http://{target}/approvals/{approval}/approve HTTP/1.1\r\n"
                 f"Host: {target}\r\nContent-Length: 0\r\n\r\n".encode())  # fmt: skip
    status, _, body = read_response(sock)
    sock.close()
    assert status == 403
    assert b"SIDECAR_ENDPOINT" in body
    assert sidecar.admin_get("/approvals").json()["approvals"][0]["status"] == "pending"


def test_an_approval_covers_exactly_the_request_reviewed(held, upstream):
    sidecar = held()
    first = _post(sidecar, upstream, "/reports/redteam-q3", _request_id(1), b'{"q": 3}')
    approval = _approval_id(first[2])
    (record,) = sidecar.admin_get("/approvals").json()["approvals"]
    assert (
        record["destination"] == f"http://{UPSTREAM_HOST}:{upstream.http_port}/reports/redteam-q3"
    )
    with httpx.Client(trust_env=False, headers=sidecar.admin_headers()) as admin:
        r = admin.post(f"http://{sidecar.info.admin}/approvals/{approval}/approve")
    assert r.status_code == 200
    # Another header (not a volatile one) rides along: a new request, a new approval.
    note = _request_id(2) + "X-Note: extra\r\n"
    rider = _post(sidecar, upstream, "/reports/redteam-q3", note, b'{"q": 3}')
    assert rider[0] == 403
    assert _approval_id(rider[2]) != approval
    # A volatile header carrying a new finding: also a new request.
    email = "X-Request-Id: grace.hopper@navy.example.org\r\n"  # not a request id's shape
    found = _post(sidecar, upstream, "/reports/redteam-q3", email, b'{"q": 3}')
    assert found[0] == 403
    assert _approval_id(found[2]) != approval
    assert upstream.requests_to("/reports/redteam-q3") == []
    # The retry the reviewer approved (only its retry counter changed) goes through, once.
    retry = _post(sidecar, upstream, "/reports/redteam-q3", _request_id(3), b'{"q": 3}')
    assert retry[0] == 200
    assert len(upstream.requests_to("/reports/redteam-q3")) == 1
    again = _post(sidecar, upstream, "/reports/redteam-q3", _request_id(4), b'{"q": 3}')
    assert again[0] == 403


@pytest.mark.parametrize(
    ("reviewed", "rider"),
    [(b'{"q": 5, "to": "a"}', b'{"to": "a", "q": 5}'),  # the same document, other bytes
     (b'{"q": 5}', b'{"q": 5, "q": 5}'),  # a duplicate key: parses the same
     (b"\xff\xfe data", b"\xfe\xff data")],  # not UTF-8: scanned alike, sent differently
    ids=["key-order", "duplicate-key", "binary"],
)  # fmt: skip
def test_an_approval_is_tied_to_the_bytes_sent(held, upstream, reviewed, rider):
    sidecar = held()
    path = f"/reports/redteam-bytes-{len(reviewed)}-{rider[:2].hex()}"
    first = _post(sidecar, upstream, path, body=reviewed)
    approval = _approval_id(first[2])
    with httpx.Client(trust_env=False, headers=sidecar.admin_headers()) as admin:
        admin.post(f"http://{sidecar.info.admin}/approvals/{approval}/approve")
    other = _post(sidecar, upstream, path, body=rider)
    assert other[0] == 403  # not the request the reviewer saw
    assert upstream.requests_to(path) == []


def test_one_approval_releases_one_of_several_identical_held_requests(make_sidecar, tmp_path,
                                                                       upstream):  # fmt: skip
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY)
    sidecar = make_sidecar(backend="local", policy=str(policy), approval_timeout=30,
                           confdir=tmp_path / "conf")  # fmt: skip
    results: list[int] = []

    def send() -> None:
        results.append(_post(sidecar, upstream, "/reports/redteam-held")[0])

    threads = [threading.Thread(target=send) for _ in range(3)]
    for t in threads:
        t.start()
    eventually(lambda: sidecar.metric("egress_sidecar_approvals_pending") == 3)
    (record,) = sidecar.admin_get("/approvals").json()["approvals"]  # one review for all
    with httpx.Client(trust_env=False, headers=sidecar.admin_headers()) as admin:
        admin.post(f"http://{sidecar.info.admin}/approvals/{record['id']}/approve")
    for t in threads:
        t.join()
    assert sorted(results) == [200, 403, 403]
    assert len(upstream.requests_to("/reports/redteam-held")) == 1
