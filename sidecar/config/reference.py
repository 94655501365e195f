"""The configuration reference (docs/configuration.md), generated from the settings model.

    python -m sidecar.config.reference > docs/configuration.md

tests/unit/test_config_reference.py fails when the file and this output differ.
"""

from __future__ import annotations

import inspect
import sys
import typing

from sidecar.config.credentials import Credentials
from sidecar.config.settings import Group, surface_of
from sidecar.config.surface import (
    SETTINGS,
    default_text,
    default_value,
    description,
    env_name,
    flag_name,
    option_name,
)

COMMAND = "python -m sidecar.config.reference > docs/configuration.md"

# What each backend credential variable does (credentials.py has the names and defaults;
# a test checks this covers exactly its variables).
CREDENTIAL_NOTES = {
    "INTERVEN_API_KEY": "API key of the scan API. Set, with no backend chosen, it makes "
    "interven the backend.",
    "INTERVEN_GATEWAY_URL": "Scan API base URL (a self-hosted gateway: see scan_api_ca).",
    "INTERVEN_AGENT_ID": "Agent id reported with each scan.",
    "INTERVEN_AGENT_NAME": "Agent name reported with each scan.",
    "KIRTONIC_API_KEY": "API key; required by the kirtonic backend.",
    "KIRTONIC_ENDPOINT": "Kirtonic API base URL.",
    "KIRTONIC_CATEGORY": "Workload category sent for requests that are not LLM calls "
    "(LLM calls are sent as chat).",
    "KIRTONIC_USER_ID": "user_id sent with each check, when set.",
    "INVIOLET_API_KEY": "API key; required by the inviolet backend.",
    "INVIOLET_BASE_URL": "Inviolet API base URL; required by the inviolet backend (there "
    "is no public default).",
    "INVIOLET_USER_ID": "user_id sent with each check, when set.",
    "INVIOLET_DATA_SOURCE_ID": "data_source_id sent with each check; unset: the destination host.",
    "VELERIAN_API_KEY": "API key; required by the velerian backend.",
    "VELERIAN_BASE_URL": "Velerian API base URL.",
    "VELERIAN_ABP_ID": "The deployed package (ABP) whose endpoint judges requests; required "
    "by the velerian backend.",
}

_INTRO = f"""\
# Configuration reference

<!-- Generated from sidecar/config/settings.py by `{COMMAND}`;
     do not edit: tests/unit/test_config_reference.py fails when the two differ. -->

Every setting is one field of `SidecarSettings` (`sidecar/config/settings.py`). Its
command-line flag, its environment variable, its mitmdump option and this page are all
generated from that field, with the same description and default.

## Where a value comes from

`egress-sidecar` takes each setting from, first found:

1. its command-line flag: `egress-sidecar run --fail-mode open`;
2. its environment variable, `SIDECAR_<NAME>`: `SIDECAR_FAIL_MODE=open`;
3. its default.

Settings with no flag (—) are set in the environment only: secrets, so they stay out of
process listings, and rarely changed tuning. Lists are comma-separated. An empty value
leaves a setting that is unset by default unset; for `admin` it means off.

With plain mitmdump (`mitmdump -s addons/egress_guard.py`) the addon declares an
`egress_<name>` option for most settings (`--set egress_fail_mode=open`). Their defaults
are read from `SIDECAR_*` when the addon loads, so an option given to mitmdump wins over
the environment. Settings carried by mitmproxy's own options (`listen_host`, `mode`,
`confdir`...) are set with those options under mitmdump. "environment" means the addon
reads the variable; "run only" settings have no effect under mitmdump. An option marked
"(restart)" is read when the proxy starts (the backend, its client, the admin server and
the response queue are built from it): changing it while mitmdump runs is refused. The
others may change while it runs and apply to the next request.

The backends' credentials are separate variables, listed after the settings.
"""

_CREDENTIALS_INTRO = """\
## Backend credentials

Each backend reads its credentials from the variables its own SDK reads; they have no
flags and no mitmdump options (the addon reads them from its environment). An empty value
counts as unset. Every API key set here is one of the sidecar's own secrets: a request
that carries one is refused.
"""


def render_reference() -> str:
    """docs/configuration.md."""
    parts = [_INTRO]
    for group in Group:
        names = [n for n in SETTINGS if surface_of(n).group is group]
        if not names:
            continue
        rows = [_setting_row(n) for n in names]
        parts.append(f"## {group.value}\n\n" + _table(_SETTING_COLUMNS, rows))
    parts.append(_CREDENTIALS_INTRO)
    for backend, cls in typing.get_type_hints(Credentials).items():
        prefix = cls.model_config.get("env_prefix", "")
        doc = (inspect.getdoc(cls) or "").splitlines()[0]
        rows = []
        for field_name, field in cls.model_fields.items():
            variable = prefix + field_name.upper()
            default = None if field.default is None else str(field.default)
            rows.append([_code(variable), _code(default), _md(CREDENTIAL_NOTES[variable])])
        parts.append(f"### {backend}\n\n{_md(doc)}\n\n" + _table(_CREDENTIAL_COLUMNS, rows))
    return "\n".join(parts)


def credential_variables() -> list[str]:
    """Every backend credential variable, e.g. INTERVEN_API_KEY."""
    return [
        cls.model_config.get("env_prefix", "") + name.upper()
        for cls in typing.get_type_hints(Credentials).values()
        for name in cls.model_fields
    ]


_SETTING_COLUMNS = ("Setting", "Flag", "Environment", "mitmdump", "Default", "Description")
_CREDENTIAL_COLUMNS = ("Variable", "Default", "Description")


def _setting_row(name: str) -> list[str]:
    surface = surface_of(name)
    mitmdump = [option_name(name)] if surface.option else []
    mitmdump += list(surface.mitmproxy)
    if mitmdump:
        where = ", ".join(_code(m) for m in mitmdump)
        where += " (restart)" if surface.restart else ""
    else:
        where = "— (run only)" if surface.run_only else "— (environment)"
    return [
        _code(name),
        _code(flag_name(name) if surface.flag else None),
        _code(env_name(name)),
        where,
        _default(name),
        _md(description(name)),
    ]


def _default(name: str) -> str:
    value = default_value(name)
    if isinstance(value, list) and value:  # one code span each, so the cell can wrap
        return ", ".join(_code(str(item)) for item in value)
    return _code(default_text(name))


def _table(columns: tuple[str, ...], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(columns) + " |", "|" + "|".join("---" for _ in columns) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def _code(text: str | None) -> str:
    """A code span; — for nothing."""
    if not text:
        return "—"
    return "`" + text.replace("|", "\\|") + "`"


def _md(text: str) -> str:
    """Text for Markdown: `code spans` stay, nothing else in it is read as markup."""
    pieces = text.split("`")
    for i in range(0, len(pieces), 2):  # outside the code spans
        for char in "\\*_<>[]|":
            pieces[i] = pieces[i].replace(char, "\\" + char)
    return "`".join(pieces)


def main() -> int:
    sys.stdout.write(render_reference())
    return 0


if __name__ == "__main__":
    sys.exit(main())
