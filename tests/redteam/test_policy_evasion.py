"""Beyond the issue's list (found by the independent red-team pass): rules written for a
path or a method must hold against the other spellings servers accept.

Rule: `paths` rules see the path as servers resolve it (percent-decoded, empty and dot
segments resolved, `;parameters` dropped); `methods` rules also see the method a request
asks to be treated as (`X-HTTP-Method-Override` and friends, `?_method=`).
"""

from __future__ import annotations

import pytest

from tests.support.raw import proxy_socket, read_response
from tests.support.servers import UPSTREAM_HOST

POLICY = """name: team
rules:
  - {rule_id: no-admin, match: {paths: ["/admin/*", "/admin"]}, action: DENY, priority: 20}
  - {rule_id: no-deletes, match: {methods: [DELETE]}, action: DENY, priority: 10}
"""


@pytest.fixture
def team(make_sidecar, tmp_path):  # type: ignore[no-untyped-def]
    policy = tmp_path / "team.yaml"
    policy.write_text(POLICY)
    return make_sidecar(backend="local", policy=str(policy))


def _send(sidecar, upstream, method: str, path: str, extra: str = "") -> int:  # type: ignore[no-untyped-def]
    target = f"{UPSTREAM_HOST}:{upstream.http_port}"
    sock = proxy_socket(str(sidecar.info.proxy))
    sock.sendall(f"{method} http://{target}{path} HTTP/1.1\r\nHost: {target}\r\n{extra}"
                 "Content-Length: 0\r\n\r\n".encode())  # fmt: skip
    status, _, _ = read_response(sock)
    sock.close()
    return status


@pytest.mark.parametrize(
    "path", ["/%61dmin/users", "//admin/users", "/x/../admin/users", "/./admin/users",
             "/admin;v=1/users", "/%2561dmin/users", "/admin"],
)  # fmt: skip
def test_path_rules_hold_against_other_spellings(team, upstream, path):
    assert _send(team, upstream, "GET", path) == 403


@pytest.mark.parametrize(
    ("method", "extra", "path"),
    [("POST", "X-HTTP-Method-Override: DELETE\r\n", "/items/1"),
     ("POST", "X-Method-Override: delete\r\n", "/items/2"),
     ("POST", "", "/items/3?_method=DELETE")],
)  # fmt: skip
def test_method_rules_hold_against_overrides(team, upstream, method, extra, path):
    assert _send(team, upstream, method, path, extra) == 403


def test_other_paths_and_methods_pass(team, upstream):
    assert _send(team, upstream, "GET", "/administrator") == 200
    assert _send(team, upstream, "POST", "/items/4") == 200
