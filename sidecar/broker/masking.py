"""What a scan backend is shown of a bound placeholder: `[brokered:NAME]`.

A placeholder keeps a provider's shape, so a backend would read one sent to its bound
destination (a gateway, a webhook) as a credential going to a non-issuer. Masked, the
backend sees which credential was bound instead, and never anything resembling a key.
"""

from __future__ import annotations

from sidecar.broker.carry import basic_credentials
from sidecar.broker.state import BrokerState
from sidecar.judge.enforce import Enforcement


def marker(name: str) -> str:
    return f"[brokered:{name}]"


def mask_text(text: str, state: BrokerState, names: frozenset[str]) -> str:
    for name in names:
        text = text.replace(state.placeholders[name], marker(name))
    return text


def mask_headers(
    headers: dict[str, str], state: BrokerState, names: frozenset[str]
) -> dict[str, str]:
    out = {}
    for key, value in headers.items():
        value = mask_text(value, state, names)
        if (decoded := basic_credentials(value)) is not None:
            masked = mask_text(decoded, state, names)
            if masked != decoded:
                value = f"Basic {masked}"
        out[key] = value
    return out


def unmask(enforcement: Enforcement, state: BrokerState, names: frozenset[str]) -> None:
    """A body the backend rewrote (SANITIZE) holds the markers it was shown: the
    placeholders go back in, for the real values to replace them."""
    body = enforcement.replacement_body
    if body is None:
        return
    for name in names:
        body = body.replace(marker(name).encode(), state.placeholders[name].encode())
    enforcement.replacement_body = body
