"""Reading policy files (YAML or JSON) with errors that name the file, rule and field."""

from __future__ import annotations

import json
import re
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from sidecar.engine.policy import Policy


class PolicyError(ValueError):
    """A policy file is unreadable or invalid; the message is one line."""


def default_policy() -> Policy:
    text = resources.files("sidecar.engine").joinpath("default_policy.yaml").read_text()
    return parse_policy(text, "<built-in default policy>")


def load_policy(path: Path | None) -> Policy:
    if path is None:
        return default_policy()
    try:
        text = path.read_text()
    except OSError as e:
        raise PolicyError(f"{path}: {e.strerror}") from None
    return parse_policy(text, str(path))


def parse_policy(text: str, source: str) -> Policy:
    try:
        data = json.loads(text) if source.endswith(".json") else yaml.safe_load(text)
    except (ValueError, yaml.YAMLError) as e:
        where = getattr(e, "problem_mark", None)
        line = f" line {where.line + 1}" if where is not None else ""
        raise PolicyError(
            f"{source}:{line} not valid {'JSON' if source.endswith('.json') else 'YAML'}"
        ) from None
    if not isinstance(data, dict):
        raise PolicyError(f"{source}: a policy is a mapping with name and rules")
    try:
        return Policy.model_validate(data)
    except ValidationError as e:
        raise PolicyError(
            f"{source}: {describe_invalid(e, data, 'rules', 'rule_id', 'policy')}"
        ) from None


def describe_invalid(
    error: ValidationError, data: dict[str, Any], items: str, ident: str, what: str
) -> str:
    """One line for a file's first validation error: the entry of list `items` it is in
    (by index, and by its `ident` field when it has one), the field, the problem."""
    item = error.errors()[0]
    loc = list(item["loc"])
    where = ""
    if len(loc) >= 2 and loc[0] == items and isinstance(loc[1], int):
        entries = data.get(items) or []
        entry = entries[loc[1]] if loc[1] < len(entries) else {}
        name = entry.get(ident) if isinstance(entry, dict) else None
        where = f"{items}[{loc[1]}]" + (f" ({name})" if name else "")
        loc = loc[2:]
    # pydantic names the member of a union it tried (`str`, `dict[str,str]`, ...)
    field = ".".join(str(p) for p in loc if not re.search(r"[\[\]]|^(str|int)$", str(p)))
    parts = [p for p in (where, field) if p]
    return f"{' '.join(parts) or what}: {str(item['msg']).removeprefix('Value error, ')}"
