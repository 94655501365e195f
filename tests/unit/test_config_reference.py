"""One source of configuration: the flags, the SIDECAR_* variables, the mitmdump options
and docs/configuration.md all come from SidecarSettings; these fail when one drifts."""

from __future__ import annotations

import argparse
import shutil
import types
from enum import Enum
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin

import certifi
import pytest
from pydantic import AnyHttpUrl, SecretStr

from sidecar.cli.main import build_parser
from sidecar.config import surface
from sidecar.config.reference import CREDENTIAL_NOTES, credential_variables, render_reference
from sidecar.config.settings import (
    HostPort,
    SettingsError,
    SidecarSettings,
    load_settings,
    surface_of,
)

ROOT = Path(__file__).resolve().parents[2]
FIELDS = SidecarSettings.model_fields

# Every flag `egress-sidecar` took before the flags were generated: none may go away.
RUN_FLAGS = {
    "--listen", "--admin", "--confdir", "--backend", "--enforcement", "--approval-mode",
    "--ca-cert", "--ca-key", "--ca-bundle-out", "--transparent-listen", "--upstream-ca",
    "--scan-api-ca", "--upstream-proxy", "--fail-mode", "--scan-timeout", "--scan-retries",
    "--breaker-threshold", "--breaker-cooldown", "--approval-timeout",
    "--approval-poll-interval", "--max-pending-approvals", "--max-body-bytes",
    "--max-buffered-bytes", "--max-connections", "--idle-timeout", "--head-timeout",
    "--shutdown-grace", "--passthrough-hosts", "--raw-tcp-hosts", "--policy",
    "--internal-hosts", "--approval-expiry", "--brokered-credentials",
}  # fmt: skip
COMMAND_FLAGS = {
    ("run",): RUN_FLAGS,
    ("env",): {"--listen", "--confdir", "--brokered-credentials"},
    ("scan",): {"--body", "--header", "-H", "--policy", "--internal-hosts"},
    ("approvals", "list"): {"--all", "--admin", "--confdir"},
    ("approvals", "approve"): {"--admin", "--confdir"},
    ("approvals", "deny"): {"--admin", "--confdir"},
    ("ca", "path"): {"--confdir", "--ca-cert", "--ca-key", "--ca-bundle-out", "--pem"},
    ("ca", "secret"): {"--name", "--namespace"},
}
# The settings the mitmdump addon declared as `egress_<name>` options before they were
# generated (the hand-kept ADDON_SETTINGS of the old addons/egress_guard.py): none may go away.
ADDON_SETTINGS = {
    "backend", "admin", "fail_mode", "enforcement", "approval_mode", "scan_timeout",
    "scan_retries", "approval_timeout", "approval_poll_interval", "max_pending_approvals",
    "max_body_bytes", "max_connections", "idle_timeout", "head_timeout",
    "response_queue_size", "response_workers", "runtime_type", "policy", "internal_hosts",
    "approval_expiry", "breaker_threshold", "breaker_cooldown", "ca_bundle_out",
    "scan_api_ca", "passthrough_hosts", "raw_tcp_hosts", "upstream_proxy",
    "approval_volatile_headers", "brokered_credentials",
}  # fmt: skip
SECRETS = {"proxy_auth", "admin_token"}  # never on a command line


def _subparser(parser: argparse.ArgumentParser, path: tuple[str, ...]) -> argparse.ArgumentParser:
    for name in path:
        (sub,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        parser = sub.choices[name]
    return parser


def _flags(parser: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    """Every option string of a (sub)command but -h/--help, with its action."""
    return {
        flag: a
        for a in parser._actions
        if not isinstance(a, argparse._HelpAction)
        for flag in a.option_strings
    }


# -- the reference ------------------------------------------------------------------------


def test_docs_configuration_is_generated_from_the_model():
    text = (ROOT / "docs" / "configuration.md").read_text()
    assert text == render_reference(), (
        "docs/configuration.md is stale: python -m sidecar.config.reference > docs/configuration.md"
    )


def test_the_reference_names_every_setting_and_every_credential():
    text = render_reference()
    for name in FIELDS:
        assert f"| `{name}` |" in text
        assert f"`{surface.env_name(name)}`" in text
        if surface_of(name).flag:
            assert f"`{surface.flag_name(name)}`" in text
        if surface_of(name).option:
            assert f"`{surface.option_name(name)}`" in text
    assert set(CREDENTIAL_NOTES) == set(credential_variables())
    for variable in credential_variables():
        assert f"| `{variable}` |" in text


def test_every_setting_is_described_and_surfaces_once():
    for name in FIELDS:
        assert surface.description(name)
        s = surface_of(name)  # exactly one annotation
        assert not (s.run_only and (s.option or s.mitmproxy)), name


# -- the environment ----------------------------------------------------------------------


def _bare(annotation: Any) -> Any:
    if get_origin(annotation) in (Union, types.UnionType):
        (annotation,) = [a for a in get_args(annotation) if a is not type(None)]
    return annotation


def _sample(name: str, tmp_path: Path) -> str:
    """A valid value for SIDECAR_<NAME> other than the default, chosen by the field's type."""
    annotation = _bare(FIELDS[name].annotation)
    default = FIELDS[name].get_default(call_default_factory=True)
    if annotation is HostPort:
        return "10.9.8.7:1234"
    if annotation is Path:  # a readable PEM CA bundle satisfies every file check
        bundle = tmp_path / f"{name}.pem"
        shutil.copy(certifi.where(), bundle)
        return str(bundle)
    if annotation is SecretStr:  # USER:PASSWORD, and long enough for a token
        return "agent:" + "s" * 40
    if annotation is AnyHttpUrl:
        return "http://proxy.example.com:3128/"
    if annotation is int or annotation is float:
        return str(default + 1)
    if annotation is str:
        return "claude-code"
    if isinstance(annotation, type) and issubclass(annotation, Enum):
        return next(m.value for m in annotation if m != default)
    if get_origin(annotation) is Literal:
        return next(v for v in get_args(annotation) if v != default)
    if annotation == list[str]:
        return {"raw_tcp_hosts": "db.example.com:5432,*.cache.example.com:6379"}.get(
            name, "x-one.example.com,*.two.example.com"
        )
    raise AssertionError(f"no sample value for {name}: {annotation}; add one")


COMPANIONS = {"ca_cert": "ca_key", "ca_key": "ca_cert"}  # they go together


def _samples(name: str, tmp_path: Path) -> dict[str, str]:
    """A sample for `name`, with what it cannot be set without."""
    names = [name, COMPANIONS[name]] if name in COMPANIONS else [name]
    return {n: _sample(n, tmp_path) for n in names}


@pytest.mark.parametrize("name", list(FIELDS))
def test_every_setting_is_read_from_its_environment_variable(name, monkeypatch, tmp_path):
    for other in FIELDS:
        monkeypatch.delenv(surface.env_name(other), raising=False)
    samples = _samples(name, tmp_path)
    for each, raw in samples.items():
        monkeypatch.setenv(surface.env_name(each), raw)
    from_env = getattr(load_settings(), name)
    for each in samples:
        monkeypatch.delenv(surface.env_name(each))
    from_flag = getattr(load_settings(**samples), name)
    assert from_env == from_flag != FIELDS[name].get_default(call_default_factory=True)


# -- the command line ---------------------------------------------------------------------


def test_the_cli_still_takes_every_flag_it_took():
    parser = build_parser()
    for path, before in COMMAND_FLAGS.items():
        flags = _flags(_subparser(parser, path))
        assert set(flags) >= before, path
        settings = {f for f, action in flags.items() if action.dest in FIELDS}
        assert settings == {f for f in before if f in RUN_FLAGS}, path
    assert set(_flags(_subparser(parser, ("run",)))) == RUN_FLAGS


def test_every_settings_flag_is_generated_from_its_field():
    parser = build_parser()
    for path in COMMAND_FLAGS:
        for flag, action in _flags(_subparser(parser, path)).items():
            if action.dest not in FIELDS:
                continue  # a command's own flag (--body, --pem...)
            assert flag == surface.flag_name(action.dest)
            assert surface_of(action.dest).flag
            assert action.default is None  # the environment applies when not given
            assert action.help is not None
            assert action.help.startswith(surface.description(action.dest))
            default = surface.default_text(action.dest)
            if default is not None:
                assert action.help.endswith(f"(default: {default})")
    run = {a.dest for a in _flags(_subparser(parser, ("run",))).values()}
    assert run == set(surface.FLAG_SETTINGS)


def test_secrets_have_no_flag():
    assert set(surface.ENV_ONLY_SETTINGS) >= SECRETS
    for name in FIELDS:
        if _bare(FIELDS[name].annotation) is SecretStr:
            assert name in SECRETS
            assert not surface_of(name).option  # an option's value would be dumped masked


def test_flag_help_defaults_come_from_the_model():
    assert surface.flag_help("max_body_bytes").endswith("(default: 262144 (256 KiB))")
    assert surface.flag_help("listen").endswith("(default: 127.0.0.1:8080)")
    assert surface.flag_help("scan_timeout").endswith("(default: 10)")
    assert "(default" not in surface.flag_help("backend")  # unset: the text says what then


def test_only_settings_with_a_flag_get_one():
    with pytest.raises(ValueError, match="admin_token"):
        surface.cli_flags(["admin_token"])
    with pytest.raises(ValueError, match="nonsense"):
        surface.cli_flags(["nonsense"])


def test_flags_are_parsed_into_settings_over_the_environment(monkeypatch):
    monkeypatch.setenv("SIDECAR_FAIL_MODE", "open")
    monkeypatch.setenv("SIDECAR_SCAN_RETRIES", "7")
    args = build_parser().parse_args(["run", "--fail-mode", "closed"])
    values = {name: getattr(args, name) for name in surface.FLAG_SETTINGS}
    settings = load_settings(**values)
    assert settings.fail_mode.value == "closed"  # the flag wins
    assert settings.scan_retries == 7  # the environment, where no flag was given


def test_errors_name_a_flag_only_when_there_is_one():
    with pytest.raises(SettingsError) as e:
        load_settings(admin_token="short")
    assert str(e.value).startswith("SIDECAR_ADMIN_TOKEN: ")
    with pytest.raises(SettingsError) as e:
        load_settings(scan_retries="many")
    assert str(e.value).startswith("--scan-retries / SIDECAR_SCAN_RETRIES: ")


# -- mitmdump options ---------------------------------------------------------------------


def test_addon_options_are_exactly_the_settings_marked_as_options():
    options = surface.addon_options()
    assert [o.name for o in options] == [
        surface.option_name(n) for n in FIELDS if surface_of(n).option
    ]
    assert {o.name.removeprefix("egress_") for o in options} == ADDON_SETTINGS
    assert tuple(o.name for o in options) == surface.OPTION_NAMES
    for option in options:
        name = option.name.removeprefix("egress_")
        assert type(option.default) is option.typespec, name
        assert option.help == surface.description(name)
        assert option.default == surface.option_value(
            SidecarSettings.model_construct().model_dump(mode="json")[name]
        )


def test_addon_option_defaults_come_from_the_given_settings(monkeypatch):
    monkeypatch.setenv("SIDECAR_FAIL_MODE", "open")
    monkeypatch.setenv("SIDECAR_INTERNAL_HOSTS", "a.example.com,b.example.com")
    defaults = {o.name: o.default for o in surface.addon_options(load_settings())}
    assert defaults["egress_fail_mode"] == "open"
    assert defaults["egress_internal_hosts"] == "a.example.com,b.example.com"
    assert defaults["egress_admin"] == "127.0.0.1:9090"
    assert defaults["egress_backend"] == ""
    assert defaults["egress_scan_timeout"] == 10.0


def test_option_values_round_trip(tmp_path, monkeypatch):
    for name in FIELDS:
        monkeypatch.delenv(surface.env_name(name), raising=False)
    values: dict[str, Any] = {n: _sample(n, tmp_path) for n in surface.OPTION_SETTINGS}
    settings = load_settings(**values, confdir=str(tmp_path))
    for name in surface.OPTION_SETTINGS:  # every option is exercised with a non-default
        assert getattr(settings, name) != FIELDS[name].get_default(call_default_factory=True)
    options = surface.option_values(settings)
    assert set(options) == {surface.option_name(n) for n in surface.OPTION_SETTINGS}
    assert all(isinstance(v, str | int | float) for v in options.values())
    assert surface.settings_from_options(options, confdir=settings.confdir) == settings


def test_empty_options_mean_unset_and_admin_off(monkeypatch, tmp_path):
    for name in FIELDS:
        monkeypatch.delenv(surface.env_name(name), raising=False)
    defaults = load_settings(admin="off", confdir=str(tmp_path))
    options = surface.option_values(defaults)
    assert options["egress_admin"] == ""
    assert options["egress_backend"] == ""
    assert options["egress_internal_hosts"] == ""
    back = surface.settings_from_options(options, confdir=str(tmp_path))
    assert back == defaults
    assert back.admin is None
    assert back.backend is None
    # Options not given fall back to the environment, as the addon always did.
    monkeypatch.setenv("SIDECAR_RUNTIME_TYPE", "from-env")
    assert surface.settings_from_options({}).runtime_type == "from-env"


def test_settings_from_options_refuses_what_is_not_an_option():
    with pytest.raises(ValueError, match="listen"):
        surface.settings_from_options({"egress_listen": "127.0.0.1:1"})
    with pytest.raises(ValueError, match="fail_mode"):
        surface.settings_from_options({"fail_mode": "open"})
    with pytest.raises(SettingsError, match="SIDECAR_FAIL_MODE"):
        surface.settings_from_options({"egress_fail_mode": "sometimes"})


def test_options_are_laid_over_the_settings_given(tmp_path):
    given = load_settings(confdir=str(tmp_path), fail_mode="open", scan_retries=5)
    options = {"egress_fail_mode": "closed", "egress_backend": "", "egress_admin": ""}
    settings = surface.settings_from_options(options, **given.model_dump())
    assert settings.fail_mode.value == "closed"  # the option wins
    assert settings.scan_retries == 5  # the rest is as given
    assert settings.admin is None
    assert settings.confdir == tmp_path


def test_mitmproxy_options_are_the_ones_the_settings_map_onto(tmp_path):
    """Each setting marked as carried by mitmproxy's own options changes exactly those
    options in `egress-sidecar run` (addons/serve.py); none other does."""
    from addons.serve import mitmproxy_option_values

    base = load_settings(confdir=str(tmp_path))
    before = mitmproxy_option_values(base)
    for name in FIELDS:
        changed = load_settings(**{"confdir": str(tmp_path), **_samples(name, tmp_path)})
        after = mitmproxy_option_values(changed)
        differ = {k for k in before.keys() | after.keys() if before.get(k) != after.get(k)}
        expected = set(surface.mitmproxy_options(name))
        if name == "confdir":  # `build_master` passes it to Options() itself
            expected.discard("confdir")
        assert differ == expected, name


def test_the_options_needing_a_restart_are_those_the_runtime_is_built_from():
    """The hand-kept READ_AT_START list of before, now derived from `Surface.restart`."""
    assert {name.removeprefix("egress_") for name in surface.RESTART_OPTIONS} == {
        "backend", "admin", "enforcement", "scan_timeout", "scan_retries", "policy",
        "internal_hosts", "approval_expiry", "breaker_threshold", "breaker_cooldown",
        "scan_api_ca", "response_queue_size", "response_workers", "max_pending_approvals",
        "approval_timeout", "approval_poll_interval", "upstream_proxy",
        "approval_volatile_headers", "brokered_credentials",
    }  # fmt: skip
