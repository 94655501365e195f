"""Raw sockets through the proxy, for what ordinary clients never send."""

from __future__ import annotations

import json
import socket
from typing import Any

from tests.support.servers import WAIT


def proxy_socket(proxy: str) -> socket.socket:
    host, port = proxy.rsplit(":", 1)
    return socket.create_connection((host.strip("[]"), int(port)), timeout=WAIT)


def read_head(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    """Status, headers and whatever body bytes arrived with them."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1]) if lines and lines[0] else 0
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return status, headers, rest


def read_response(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    """A whole HTTP/1.1 response with a Content-Length body (the sidecar's refusals)."""
    status, headers, body = read_head(sock)
    length = int(headers.get("content-length", "0"))
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    return status, headers, body


def exchange(proxy: str, head: str, body: bytes = b"") -> tuple[int, dict[str, str], bytes]:
    """One request written by hand (`head`: request line and headers, no blank line; a
    Content-Length is added for `body`), sent through the proxy: status (0 when the proxy
    closed instead of answering), headers and body of the answer."""
    sock = proxy_socket(proxy)
    length = f"Content-Length: {len(body)}\r\n" if body else ""
    sock.sendall(f"{head}{length}\r\n".encode("latin-1") + body)
    try:
        return read_response(sock)
    finally:
        sock.close()


def connect(proxy: str, authority: str) -> tuple[int, Any, socket.socket]:
    """Send CONNECT; (status, JSON body or None, the socket for what comes next)."""
    sock = proxy_socket(proxy)
    sock.sendall(f"CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n\r\n".encode())
    status, headers, body = read_response(sock)
    doc = json.loads(body) if body and "json" in headers.get("content-type", "") else None
    return status, doc, sock


def closed_by_peer(sock: socket.socket) -> bool:
    """Waits for the proxy to close the connection (reading to EOF, discarding what
    comes); False if it is still open after the suite's wait."""
    sock.settimeout(WAIT)
    try:
        while sock.recv(65536):
            pass
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False
    return True
