"""Everything the sidecar wrote during the suite, to prove no credential ever appears.

Log records (every logger), /metrics texts, admin answers, and what clients received
are collected here; `tests/e2e/test_zz_no_credential_leaked.py` runs last and greps it.
"""

from __future__ import annotations

import logging
import threading

# Every governance API key the suite gives a sidecar.
SIDECAR_KEYS = ("iv_live_TESTKEY_never_forward_3f9a1c", "iv_live_cli_test_key",
                "iv_live_lifecycle", "kt_live_TESTKEY_8d2e", "inv_live_TESTKEY_51b0",
                "vk_live_TESTKEY_c7a4")  # fmt: skip

_lock = threading.Lock()
_texts: list[str] = []
_brokered: list[str] = []  # real values of brokered credentials the suite used


def register_brokered(value: str) -> None:
    """A brokered credential's real value: the leak check greps for it too."""
    with _lock:
        _brokered.append(value)


def secrets() -> list[str]:
    with _lock:
        return [*SIDECAR_KEYS, *_brokered]


def record(text: str) -> None:
    with _lock:
        _texts.append(text)


def collected() -> list[str]:
    with _lock:
        return list(_texts)


class CollectingHandler(logging.Handler):
    def emit(self, record_: logging.LogRecord) -> None:
        try:
            text = self.format(record_)
        except Exception:
            text = str(record_.msg)
        record(text)
