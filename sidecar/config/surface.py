"""Each setting's other spellings, generated from `SidecarSettings`: CLI flags, the
mitmdump addon's `egress_<name>` options, and the way back from options to settings.

Which setting surfaces where is its `Surface` annotation; the help text is the field's
description and the default shown is the model's, so none of them is written twice.
"""

from __future__ import annotations

import argparse
import types
from collections.abc import Iterable, Mapping
from enum import Enum
from typing import Any, Literal, NamedTuple, Union, get_args, get_origin

from sidecar.config.settings import Group, SidecarSettings, load_settings, surface_of

ENV_PREFIX = SidecarSettings.model_config.get("env_prefix", "")
OPTION_PREFIX = "egress_"
OFF = "off"  # what an empty option means for a setting that is on by default (admin)

_FIELDS = SidecarSettings.model_fields
SETTINGS: tuple[str, ...] = tuple(_FIELDS)
FLAG_SETTINGS: tuple[str, ...] = tuple(n for n in SETTINGS if surface_of(n).flag)
ENV_ONLY_SETTINGS: tuple[str, ...] = tuple(n for n in SETTINGS if not surface_of(n).flag)
# The settings the mitmdump addon declares as options, and those options' names.
OPTION_SETTINGS: tuple[str, ...] = tuple(n for n in SETTINGS if surface_of(n).option)
OPTION_NAMES: tuple[str, ...] = tuple(OPTION_PREFIX + n for n in OPTION_SETTINGS)
# Options read when the proxy starts; the others are read per request and may change.
RESTART_OPTIONS: frozenset[str] = frozenset(
    OPTION_PREFIX + n for n in OPTION_SETTINGS if surface_of(n).restart
)


class CliFlag(NamedTuple):
    """One `argparse` flag: `parser.add_argument(flag, dest=dest, metavar=..., help=...)`."""

    flag: str
    dest: str
    metavar: str
    help: str


class AddonOption(NamedTuple):
    """One mitmproxy option, in `Loader.add_option(name, typespec, default, help)` order."""

    name: str
    typespec: type
    default: Any
    help: str


def flag_name(name: str) -> str:
    """`--max-body-bytes` for `max_body_bytes`."""
    return "--" + name.replace("_", "-")


def env_name(name: str) -> str:
    """`SIDECAR_MAX_BODY_BYTES` for `max_body_bytes`."""
    return ENV_PREFIX + name.upper()


def option_name(name: str) -> str:
    """`egress_max_body_bytes` for `max_body_bytes`."""
    return OPTION_PREFIX + name


def description(name: str) -> str:
    """The one text that explains a setting (flag help, option help, docs)."""
    text = _FIELDS[name].description
    if not text:
        raise LookupError(f"settings field {name!r} has no description")
    return text


def mitmproxy_options(name: str) -> tuple[str, ...]:
    """The names of mitmproxy's own options a setting is carried by (maybe none)."""
    return tuple(entry.partition("=")[0] for entry in surface_of(name).mitmproxy)


def default_value(name: str) -> Any:
    """The model's default of a setting (before validation)."""
    return _FIELDS[name].get_default(call_default_factory=True)


def default_text(name: str) -> str | None:
    """The model's default as it is written in a flag or variable; None when unset."""
    value = default_value(name)
    text = _plain(value)
    if text and name.endswith("_bytes") and isinstance(value, int):
        text += f" ({_binary_size(value)})"
    return text or None


def choices(name: str) -> tuple[str, ...]:
    """The values an enumerated setting takes, in declaration order; () for others."""
    bare = _bare_type(name)
    if isinstance(bare, type) and issubclass(bare, Enum):
        return tuple(str(member.value) for member in bare)
    if get_origin(bare) is Literal:
        return tuple(str(v) for v in get_args(bare))
    return ()


# -- the command line ---------------------------------------------------------------------


def flag_help(name: str) -> str:
    """The help of a setting's flag: its description and the model's default."""
    default = default_text(name)
    text = description(name) if default is None else f"{description(name)} (default: {default})"
    return text.replace("%", "%%")  # argparse %-formats help strings


def cli_flags(names: Iterable[str] | None = None) -> list[CliFlag]:
    """The flags for `names` (default: every setting that has one), in that order."""
    chosen = FLAG_SETTINGS if names is None else tuple(names)
    for name in chosen:
        if name not in _FIELDS or not surface_of(name).flag:
            raise ValueError(f"{name!r} is not a setting with a command-line flag")
    return [CliFlag(flag_name(n), n, _metavar(n), flag_help(n)) for n in chosen]


def add_cli_flags(
    parser: argparse.ArgumentParser, names: Iterable[str] | None = None, *, grouped: bool = False
) -> None:
    """Add the flags for `names` to `parser`; `grouped`: under one heading per `Group`.

    Every flag defaults to None (not given), so the environment and then the model's
    default apply: pass the parsed values to `load_settings`, which drops the Nones.
    """
    flags = cli_flags(names)
    if not grouped:
        for f in flags:
            parser.add_argument(f.flag, dest=f.dest, metavar=f.metavar, help=f.help)
        return
    for group in Group:
        members = [f for f in flags if surface_of(f.dest).group is group]
        if members:
            section = parser.add_argument_group(group.value)
            for f in members:
                section.add_argument(f.flag, dest=f.dest, metavar=f.metavar, help=f.help)


def _metavar(name: str) -> str:
    options = choices(name)
    return "{" + ",".join(options) + "}" if options else name.split("_")[-1].upper()


# -- mitmdump options ---------------------------------------------------------------------


def option_value(value: object) -> object:
    """A setting's value (as `model_dump(mode="json")` gives it) as a mitmproxy option:
    options are scalars, so None is "" and a list is comma-separated."""
    if value is None:
        return ""
    if isinstance(value, list | tuple):
        return ",".join(str(v) for v in value)
    return value


def option_values(settings: SidecarSettings) -> dict[str, Any]:
    """The `egress_<name>` option values that carry `settings` into the addon."""
    dumped = settings.model_dump(mode="json", include=set(OPTION_SETTINGS))
    return {option_name(name): option_value(value) for name, value in dumped.items()}


def option_type(name: str) -> type:
    """The mitmproxy typespec of a setting's option: numbers stay numbers, the rest is text."""
    bare = _bare_type(name)
    return bare if bare in (bool, int, float) else str


def addon_options(settings: SidecarSettings | None = None) -> list[AddonOption]:
    """The `egress_<name>` options the addon declares, with `settings`' values as their
    defaults (the addon passes `load_settings()`: the environment's); None: the model's."""
    if settings is None:
        settings = SidecarSettings.model_construct()  # the defaults, without the environment
    values = option_values(settings)
    return [
        AddonOption(option_name(n), option_type(n), values[option_name(n)], description(n))
        for n in OPTION_SETTINGS
    ]


def settings_from_options(values: Mapping[str, object], **extra: object) -> SidecarSettings:
    """Settings from `egress_<name>` option values (the inverse of `option_values`), laid
    over `extra` settings by field name (e.g. `confdir=ctx.options.confdir`, or all of
    `settings.model_dump()`): an option wins over the same setting in `extra`.

    An empty option of a setting that is unset by default leaves it unset (the
    environment, then the default, applies); of one that is on by default (admin) it
    means off. Settings given neither way are read from `SIDECAR_*`, as `load_settings`
    does. Raises `SettingsError` for a bad value, ValueError for a name that is no option.
    """
    overrides: dict[str, object] = {}
    for key, value in values.items():
        name = key.removeprefix(OPTION_PREFIX)
        if not key.startswith(OPTION_PREFIX) or name not in OPTION_SETTINGS:
            raise ValueError(f"{key!r} is not an egress-sidecar option")
        overrides[name] = _from_option(name, value)
    return load_settings(**{**extra, **overrides})


def _from_option(name: str, value: object) -> object:
    if value == "" and _nullable(name):
        return None if _FIELDS[name].default is None else OFF
    return value


# -- types --------------------------------------------------------------------------------


def _nullable(name: str) -> bool:
    return type(None) in get_args(_FIELDS[name].annotation)


def _bare_type(name: str) -> Any:
    """A field's type without `| None`."""
    annotation = _FIELDS[name].annotation
    if get_origin(annotation) in (Union, types.UnionType):
        rest = [a for a in get_args(annotation) if a is not type(None)]
        if len(rest) == 1:
            return rest[0]
    return annotation


def _plain(value: object) -> str:
    """A value as it is written in a flag or a variable."""
    if value is None:
        return ""
    if isinstance(value, Enum):
        return str(value.value)
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, list | tuple):
        return ",".join(_plain(v) for v in value)
    return str(value)


def _binary_size(value: int) -> str:
    for unit, size in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if value >= size and value % size == 0:
            return f"{value // size} {unit}"
    return f"{value} bytes"
