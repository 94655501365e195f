from __future__ import annotations

from pathlib import Path

import pytest

from sidecar.config.credentials import load_credentials
from sidecar.config.settings import FailMode, HostPort, SettingsError, load_settings


def test_defaults_are_secure():
    s = load_settings()
    assert str(s.listen) == "127.0.0.1:8080"
    assert str(s.admin) == "127.0.0.1:9090"
    assert s.fail_mode is FailMode.CLOSED
    assert s.backend is None


def test_environment_and_overrides(monkeypatch):
    monkeypatch.setenv("SIDECAR_LISTEN", "[::1]:3128")
    monkeypatch.setenv("SIDECAR_FAIL_MODE", "open")
    monkeypatch.setenv("SIDECAR_ADMIN", "off")
    s = load_settings()
    assert s.listen == HostPort(host="::1", port=3128)
    assert str(s.listen) == "[::1]:3128"
    assert s.fail_mode is FailMode.OPEN
    assert s.admin is None
    # An explicit value (a CLI flag) wins over the environment.
    assert load_settings(fail_mode="closed").fail_mode is FailMode.CLOSED


@pytest.mark.parametrize(
    ("field", "value", "named"),
    [
        ("listen", "localhost", "--listen / SIDECAR_LISTEN"),
        ("listen", "127.0.0.1:70000", "--listen / SIDECAR_LISTEN"),
        ("scan_timeout", "0", "--scan-timeout / SIDECAR_SCAN_TIMEOUT"),
        ("approval_poll_interval", "soon", "--approval-poll-interval"),
        ("upstream_proxy", "not a url", "--upstream-proxy / SIDECAR_UPSTREAM_PROXY"),
        ("backend", "carrier-pigeon", "--backend / SIDECAR_BACKEND"),
        ("internal_hosts", "10.0.0.0/8,10.1.2.3/40", "--internal-hosts / SIDECAR_INTERNAL_HOSTS"),
    ],
)
def test_bad_values_are_one_line_naming_the_setting(field, value, named):
    with pytest.raises(SettingsError) as e:
        load_settings(**{field: value})
    assert named in str(e.value)
    assert "\n" not in str(e.value)


def test_confdir_expands_home():
    assert load_settings(confdir="~/x").confdir == Path.home() / "x"


def test_credentials_read_the_sdk_variables(monkeypatch):
    monkeypatch.setenv("INTERVEN_API_KEY", "iv_live_abc")
    monkeypatch.setenv("INTERVEN_GATEWAY_URL", "https://gw.example.test")
    monkeypatch.setenv("INTERVEN_AGENT_ID", "agent-1")
    monkeypatch.setenv("INTERVEN_AGENT_NAME", "builder")
    c = load_credentials().interven
    assert c.api_key is not None
    assert c.api_key.get_secret_value() == "iv_live_abc"
    assert "iv_live_abc" not in repr(c)
    assert str(c.gateway_url) == "https://gw.example.test/"
    assert (c.agent_id, c.agent_name) == ("agent-1", "builder")


def test_blank_api_key_means_none(monkeypatch):
    monkeypatch.setenv("INTERVEN_API_KEY", "")
    assert load_credentials().interven.api_key is None


def test_each_backend_reads_its_own_sdk_variables(monkeypatch):
    monkeypatch.setenv("KIRTONIC_API_KEY", "kt_abc")
    monkeypatch.setenv("KIRTONIC_ENDPOINT", "https://kirtonic.internal.example.com")
    monkeypatch.setenv("INVIOLET_API_KEY", "inv_abc")
    monkeypatch.setenv("INVIOLET_BASE_URL", "https://inviolet.example.test")
    monkeypatch.setenv("VELERIAN_API_KEY", "vk_live_abc")
    monkeypatch.setenv("VELERIAN_ABP_ID", "abp_1")
    c = load_credentials()
    assert str(c.kirtonic.endpoint) == "https://kirtonic.internal.example.com/"
    assert str(c.inviolet.base_url) == "https://inviolet.example.test/"
    assert str(c.velerian.base_url) == "https://app.velerian.ai/"  # the SDK's default host
    assert c.velerian.abp_id == "abp_1"
    assert sorted(c.secrets()) == [b"inv_abc", b"kt_abc", b"vk_live_abc"]
    assert "kt_abc" not in repr(c)


def test_a_bad_backend_url_names_the_variable(monkeypatch):
    monkeypatch.setenv("INVIOLET_BASE_URL", "not a url")
    with pytest.raises(SettingsError, match=r"^INVIOLET_BASE_URL: "):
        load_credentials()


def test_shadow_and_refuse_are_settings(monkeypatch):
    monkeypatch.setenv("SIDECAR_ENFORCEMENT", "shadow")
    s = load_settings(approval_mode="refuse")
    assert (s.enforcement.value, s.approval_mode.value) == ("shadow", "refuse")
    with pytest.raises(SettingsError, match="--enforcement / SIDECAR_ENFORCEMENT"):
        load_settings(enforcement="audit")
