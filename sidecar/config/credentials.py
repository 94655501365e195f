"""Each governance backend's credentials, read from the variables its own SDK reads.

Keys are `SecretStr` so they never print; `Credentials.secrets()` lists every key that
is set, because none of them may ever leave through the proxy (DESIGN.md invariant 3).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from pydantic import AnyHttpUrl, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from pydantic_settings import SettingsError as EnvParseError

from sidecar.config.settings import SettingsError, describe_validation_error

DEFAULT_GATEWAY_URL = "https://api.intervensecurity.com"
DEFAULT_KIRTONIC_ENDPOINT = "https://app.kirtonic.io"
DEFAULT_VELERIAN_BASE_URL = "https://app.velerian.ai"


class _Credentials(BaseSettings):
    model_config = SettingsConfigDict(extra="ignore", frozen=True)

    api_key: SecretStr | None = None

    @field_validator("*", mode="before")
    @classmethod
    def _blank_is_none(cls, value: object) -> object:
        return None if value == "" else value


class IntervenCredentials(_Credentials):
    """The scan API (`INTERVEN_*`), as its SDK reads them."""

    model_config = SettingsConfigDict(env_prefix="INTERVEN_")

    gateway_url: AnyHttpUrl = AnyHttpUrl(DEFAULT_GATEWAY_URL)
    agent_id: str | None = None
    agent_name: str | None = None


class KirtonicCredentials(_Credentials):
    """Kirtonic (`KIRTONIC_*`): the key its Python SDK falls back to, and its endpoint."""

    model_config = SettingsConfigDict(env_prefix="KIRTONIC_")

    endpoint: AnyHttpUrl = AnyHttpUrl(DEFAULT_KIRTONIC_ENDPOINT)
    category: str = "agent"  # the workload hint for requests that are not LLM calls
    user_id: str | None = None


class InvioletCredentials(_Credentials):
    """Inviolet (`INVIOLET_*`). Its reference names no public host: the URL is required."""

    model_config = SettingsConfigDict(env_prefix="INVIOLET_")

    base_url: AnyHttpUrl | None = None
    user_id: str | None = None
    data_source_id: str | None = None


class VelerianCredentials(_Credentials):
    """Velerian (`VELERIAN_*`, as its SDK quickstart reads them) and the deployed package."""

    model_config = SettingsConfigDict(env_prefix="VELERIAN_")

    base_url: AnyHttpUrl = AnyHttpUrl(DEFAULT_VELERIAN_BASE_URL)
    abp_id: str | None = None


@dataclass(frozen=True)
class Credentials:
    interven: IntervenCredentials = field(default_factory=IntervenCredentials)
    kirtonic: KirtonicCredentials = field(default_factory=KirtonicCredentials)
    inviolet: InvioletCredentials = field(default_factory=InvioletCredentials)
    velerian: VelerianCredentials = field(default_factory=VelerianCredentials)

    def secrets(self) -> list[bytes]:
        """Every API key that is set: requests carrying one are refused."""
        keys = (self.interven, self.kirtonic, self.inviolet, self.velerian)
        return [k.api_key.get_secret_value().encode() for k in keys if k.api_key is not None]


def load_credentials() -> Credentials:
    """All backends' credentials from the environment; raise SettingsError naming the variable."""
    classes = {
        "interven": (IntervenCredentials, "INTERVEN_"),
        "kirtonic": (KirtonicCredentials, "KIRTONIC_"),
        "inviolet": (InvioletCredentials, "INVIOLET_"),
        "velerian": (VelerianCredentials, "VELERIAN_"),
    }
    loaded: dict[str, _Credentials] = {}
    for name, (cls, prefix) in classes.items():
        try:
            loaded[name] = cls()
        except ValidationError as e:
            raise SettingsError(describe_validation_error(e, prefix, flags=False)) from None
        except EnvParseError as e:
            raise SettingsError(str(e)) from None
    return Credentials(**loaded)  # type: ignore[arg-type]
