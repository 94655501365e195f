"""Provider credential families: each finds its own shape in text, and nothing else.

Every family gets a random value of its documented shape (built here from the shape, so
no real or published key is needed), which its pattern must find with the exact value in
group 1, and two near misses it must not: the value one character short and the value
with its prefix (or the keyword that anchors it) altered. Benign text that looks like
keys (digests, UUIDs, base64, integrity strings) must not fire any family.
"""

from __future__ import annotations

import base64
import hashlib
import json
import random
import string
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from typing import Any

import pytest
import re2

from sidecar.engine import detectors, providers
from sidecar.engine.detectors import SECRETS, Detector
from sidecar.engine.providers import PROVIDER_DETECTORS

RNG = random.Random(20261202)

DIGITS = string.digits
UPPER = string.ascii_uppercase
LOWER = string.ascii_lowercase
ALNUM = string.ascii_letters + string.digits
HEX = "0123456789abcdef"
URLSAFE = ALNUM + "_-"
B64 = ALNUM + "+/"
B58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"


def r(alphabet: str, n: int) -> str:
    return "".join(RNG.choice(alphabet) for _ in range(n))


def uid() -> str:
    return str(uuid.UUID(int=RNG.getrandbits(128)))


def b58check(payload: bytes) -> str:
    raw = payload + hashlib.sha256(hashlib.sha256(payload).digest()).digest()[:4]
    n = int.from_bytes(raw, "big")
    out = ""
    while n:
        n, rem = divmod(n, 58)
        out = B58[rem] + out
    return "1" * (len(raw) - len(raw.lstrip(b"\0"))) + out


BECH32 = "qpzry9x8gf2tvdw0s3jn54khce6mua7l"


def _polymod(values: list[int]) -> int:
    gen = (0x3B6A57B2, 0x26508E6D, 0x1EA119FA, 0x3D4233DD, 0x2A1462B3)
    chk = 1
    for v in values:
        top = chk >> 25
        chk = (chk & 0x1FFFFFF) << 5 ^ v
        for i in range(5):
            chk ^= gen[i] if (top >> i) & 1 else 0
    return chk


def bech32(hrp: str, data: bytes) -> str:
    acc = bits = 0
    five: list[int] = []
    for byte in data:
        acc, bits = acc << 8 | byte, bits + 8
        while bits >= 5:
            bits -= 5
            five.append(acc >> bits & 31)
    if bits:
        five.append(acc << (5 - bits) & 31)
    expanded = [ord(c) >> 5 for c in hrp] + [0] + [ord(c) & 31 for c in hrp]
    mod = _polymod([*expanded, *five, 0, 0, 0, 0, 0, 0]) ^ 1
    checksum = [mod >> 5 * (5 - i) & 31 for i in range(6)]
    return hrp + "1" + "".join(BECH32[d] for d in five + checksum)


def wif() -> str:
    return b58check(b"\x80" + RNG.randbytes(32) + b"\x01")


def xprv() -> str:
    body = bytes.fromhex("0488ade4") + bytes(9) + RNG.randbytes(32) + b"\x00" + RNG.randbytes(32)
    return b58check(body)


def discord_bot() -> str:
    user_id = str(RNG.randrange(10**17, 10**18))
    head = base64.urlsafe_b64encode(user_id.encode()).decode().rstrip("=")
    return f"{head}.{r(URLSAFE, 6)}.{r(URLSAFE, 27)}"


def docker_auth() -> str:
    return base64.b64encode(f"deploy-bot:{r(ALNUM, 18)}".encode()).decode()


def cask(signature: str) -> str:
    return (
        r(ALNUM, 52) + "JQQJ99" + r(ALNUM, 1) + r("ABCDEFGHIJKL", 1) + r(ALNUM, 16)
        + signature + r(ALNUM, 4)
    )  # fmt: skip


def identifiable(size: int, signature: str, tail: str) -> str:
    """Microsoft's identifiable base64 keys: random, a signature, 5 more, a fixed ending."""
    return r(B64, size) + signature + r(B64, 5) + tail


def plain(v: str) -> list[str]:
    return [f"token={v}\n", json.dumps({"api_key": v})]


def keyed(*templates: str) -> Callable[[str], list[str]]:
    return lambda v: [t.replace("<v>", v) for t in templates]


@dataclass(frozen=True)
class Case:
    make: Callable[[], str]
    sig: tuple[str, ...]  # what, altered, must stop the match: the prefix or the keyword
    texts: Callable[[str], list[str]] = plain


def case(make: Callable[[], str], *sig: str, texts: Callable[[str], list[str]] = plain) -> Case:
    return Case(make, sig, texts)


P = "ABCDEFGHIJKLMNOP"
CASES: dict[str, Case] = {
    # AI and ML
    "databricks_token": case(lambda: "dapi" + r(HEX, 32), "dapi"),
    "xai_api_key": case(lambda: "xai-" + r(ALNUM, 70), "xai-"),
    "groq_api_key": case(lambda: "gsk_" + r(ALNUM, 48), "gsk_"),
    "perplexity_api_key": case(lambda: "pplx-" + r(ALNUM, 48), "pplx-"),
    "openrouter_api_key": case(lambda: "sk-or-v1-" + r(HEX, 64), "sk-or"),
    "replicate_api_token": case(lambda: "r8_" + r(ALNUM, 37), "r8_"),
    "huggingface_org_token": case(lambda: "api_org_" + r(ALNUM, 34), "api_org_"),
    "langsmith_api_key": case(lambda: f"lsv2_pt_{r(HEX, 32)}_{r(HEX, 10)}", "lsv2"),
    "langfuse_secret_key": case(lambda: "sk-lf-" + uid(), "sk-lf"),
    "pinecone_api_key": case(lambda: f"pcsk_{r(ALNUM, 6)}_{r(ALNUM, 32)}", "pcsk"),
    "nvidia_api_key": case(lambda: "nvapi-" + r(URLSAFE, 64), "nvapi"),
    "wandb_api_key": case(
        lambda: r(HEX, 40), "wandb",
        texts=keyed("WANDB_API_KEY=<v>\n", '{"wandb_api_key": "<v>"}',
                    "machine api.wandb.ai\n  login user\n  password <v>\n"),
    ),
    # Google
    "google_oauth_client_secret": case(lambda: "GOCSPX-" + r(URLSAFE, 28), "GOCSPX"),
    "google_oauth_refresh_token": case(lambda: "1//0" + r(URLSAFE, 40), "1//0"),
    "google_oauth_access_token": case(lambda: "ya29." + r(URLSAFE, 30), "ya29"),
    "firebase_fcm_server_key": case(
        lambda: f"AAAA{r(URLSAFE, 7)}:APA91b{r(URLSAFE, 130)}", "APA91b"
    ),
    "google_chat_webhook": case(
        lambda: f"chat.googleapis.com/v1/spaces/{r(ALNUM, 11)}/messages?key=AIza{r(URLSAFE, 35)}"
        f"&token={r(URLSAFE, 40)}",
        "chat.googleapis",
    ),
    # Microsoft Azure
    "azure_ad_client_secret": case(
        lambda: r(URLSAFE + "~", 3) + "8Q~" + r(URLSAFE + "~.", 33) + r(URLSAFE, 1), "Q~"
    ),
    "azure_devops_pat": case(lambda: cask("AZDO"), "JQQJ9"),
    "azure_cask_key": case(lambda: cask("AZEG"), "JQQJ9"),
    "azure_function_key": case(
        lambda: r(URLSAFE, 44) + "AzFu" + r(URLSAFE, 5) + r("AQgw", 1) + "==", "AzFu"
    ),
    "azure_search_key": case(lambda: r(ALNUM, 42) + "AzSe" + r("ABCD", 1) + r(ALNUM, 5), "AzSe"),
    "azure_service_bus_key": case(lambda: identifiable(33, "+ASb" + r(P, 1), "="), "+ASb"),
    "azure_iot_key": case(lambda: identifiable(33, "AIoT" + r(P, 1), "="), "AIoT"),
    "azure_storage_identifiable_key": case(
        lambda: identifiable(76, "+ASt", r("AQgw", 1) + "=="), "+ASt"
    ),
    "azure_cosmosdb_key": case(lambda: identifiable(76, "ACDb", r("AQgw", 1) + "=="), "ACDb"),
    "azure_batch_key": case(lambda: identifiable(76, "+ABa", r("AQgw", 1) + "=="), "+ABa"),
    "azure_apim_key": case(lambda: identifiable(76, "APIM", r("AQgw", 1) + "=="), "APIM"),
    "azure_redis_key": case(lambda: identifiable(33, "AzCa" + r(P, 1), "="), "AzCa"),
    "azure_container_registry_key": case(
        lambda: identifiable(42, "+ACR" + r("ABCD", 1), ""), "+ACR"
    ),
    "azure_event_grid_key": case(lambda: identifiable(33, "AZEG" + r(P, 1), "="), "AZEG"),
    "teams_webhook": case(
        lambda: f"contoso.webhook.office.com/webhookb2/{uid()}@{uid()}/IncomingWebhook/"
        f"{r(HEX, 32)}/{uid()}",
        ".webhook.office",
    ),
    # other clouds and hosting
    "alibaba_access_key_id": case(lambda: "LTAI" + r(ALNUM, 12), "LTAI"),
    "tencent_secret_id": case(lambda: "AKID" + r(ALNUM, 32), "AKID"),
    "yandex_api_key": case(lambda: "AQVN" + r(URLSAFE, 35), "AQVN"),
    "digitalocean_pat": case(lambda: "dop_v1_" + r(HEX, 64), "dop_"),
    "digitalocean_oauth_token": case(lambda: "doo_v1_" + r(HEX, 64), "doo_"),
    "digitalocean_refresh_token": case(lambda: "dor_v1_" + r(HEX, 64), "dor_"),
    "cloudflare_api_token": case(lambda: "cfut_" + r(ALNUM, 40), "cfut"),
    "cloudflare_origin_ca_key": case(lambda: f"v1.0-{r(HEX, 24)}-{r(HEX, 146)}", "v1.0"),
    "heroku_api_key": case(lambda: "HRKU-AA" + r(URLSAFE, 58), "HRKU"),
    "flyio_token": case(lambda: "FlyV1 fm2_" + r(B64, 100), "fm2_"),
    "render_api_key": case(lambda: "rnd_" + r(ALNUM, 23) + r(DIGITS, 1), "rnd_"),
    # databases and backends
    "supabase_access_token": case(lambda: "sbp_" + r(HEX, 40), "sbp_"),
    "supabase_secret_key": case(lambda: "sb_secret_" + r(URLSAFE, 20), "sb_secret"),
    "planetscale_api_token": case(lambda: "pscale_tkn_" + r(URLSAFE, 32), "pscale"),
    "planetscale_password": case(lambda: "pscale_pw_" + r(URLSAFE, 32), "pscale"),
    # secrets managers and infrastructure as code
    "doppler_token": case(lambda: "dp.pt." + r(ALNUM, 40), "dp.pt"),
    "vault_token": case(lambda: "hvs." + r(URLSAFE, 24), "hvs."),
    "terraform_cloud_token": case(
        lambda: f"{r(ALNUM, 14)}.atlasv1.{r(URLSAFE + '=', 60)}", "atlasv1"
    ),
    "pulumi_access_token": case(lambda: "pul-" + r(HEX, 40), "pul-"),
    "onepassword_service_account_token": case(lambda: "ops_eyJ" + r(B64, 250), "ops_"),
    "onepassword_secret_key": case(
        lambda: "A3-" + "-".join(r(UPPER + DIGITS, n) for n in (6, 6, 5, 5, 5, 5)), "A3-"
    ),
    # source hosting, CI and package registries
    "gitlab_deploy_token": case(lambda: "gldt-" + r(URLSAFE, 20), "gldt"),
    "gitlab_runner_token": case(lambda: "glrt-" + r(URLSAFE, 20), "glrt"),
    "gitlab_runner_registration_token": case(lambda: "GR1348941" + r(URLSAFE, 20), "GR134"),
    "gitlab_pipeline_trigger_token": case(lambda: "glptt-" + r(HEX, 40), "glptt"),
    "gitlab_ci_job_token": case(lambda: "glcbt-" + r(URLSAFE, 20), "glcbt"),
    "gitlab_scim_token": case(lambda: "glsoat-" + r(URLSAFE, 20), "glsoat"),
    "gitlab_oauth_app_secret": case(lambda: "gloas-" + r(URLSAFE, 64), "gloas"),
    "gitlab_feed_token": case(lambda: "glft-" + r(URLSAFE, 20), "glft"),
    "gitlab_incoming_mail_token": case(lambda: "glimt-" + r(URLSAFE, 25), "glimt"),
    "gitlab_agent_token": case(lambda: "glagent-" + r(URLSAFE, 50), "glagent"),
    "gitlab_feature_flag_token": case(lambda: "glffct-" + r(URLSAFE, 20), "glffct"),
    "gitlab_session_cookie": case(
        lambda: r(HEX, 32), "_gitlab_session",
        texts=keyed("Cookie: _gitlab_session=<v>; path=/\n", '{"cookie": "_gitlab_session=<v>"}'),
    ),
    "bitbucket_app_password": case(lambda: "ATBB" + r(ALNUM, 24), "ATBB"),
    "atlassian_api_token": case(lambda: "ATATT3" + r(URLSAFE + "=", 186), "ATATT3"),
    "rubygems_api_key": case(lambda: "rubygems_" + r(HEX, 48), "rubygems_"),
    "nuget_api_key": case(lambda: "oy2" + r(LOWER + DIGITS, 43), "oy2"),
    "crates_io_token": case(lambda: "cio" + r(ALNUM, 32), "cio"),
    "docker_hub_token": case(lambda: "dckr_pat_" + r(URLSAFE, 27), "dckr"),
    "docker_registry_auth": case(
        docker_auth, '"auth"',
        texts=lambda v: [json.dumps({"auths": {"registry.corp.io": {"auth": v}}}),
                         f'{{"auth":"{v}"}}'],
    ),
    "jfrog_api_key": case(lambda: "AKCp" + r(ALNUM, 69), "AKCp"),
    "jfrog_reference_token": case(lambda: "cmVmdGtu" + r(ALNUM, 56), "cmVmdGtu"),
    "circleci_token": case(lambda: f"CCIPAT_{r(B58, 22)}_{r(HEX, 40)}", "CCIPAT"),
    "buildkite_api_token": case(lambda: "bkua_" + r(HEX, 40), "bkua"),
    "sourcegraph_token": case(lambda: f"sgp_{r(HEX, 16)}_{r(HEX, 40)}", "sgp_"),
    "sonarqube_token": case(lambda: "squ_" + r(HEX, 40), "squ_"),
    # productivity and content
    "linear_api_key": case(lambda: "lin_api_" + r(ALNUM, 40), "lin_api"),
    "notion_api_token": case(lambda: "ntn_" + r(DIGITS, 11) + r(ALNUM, 35), "ntn_"),
    "asana_pat": case(lambda: f"2/{r(DIGITS, 16)}/{r(DIGITS, 16)}:{r(HEX, 32)}", "/"),
    "figma_pat": case(lambda: "figd_" + r(URLSAFE, 38), "figd"),
    "airtable_pat": case(lambda: f"pat{r(ALNUM, 14)}.{r(HEX, 64)}", "pat"),
    "clickup_api_token": case(lambda: f"pk_{r(DIGITS, 8)}_{r(UPPER + DIGITS, 32)}", "pk_"),
    "contentful_pat": case(lambda: "CFPAT-" + r(URLSAFE, 43), "CFPAT"),
    "postman_api_key": case(lambda: f"PMAK-{r(HEX, 24)}-{r(HEX, 34)}", "PMAK"),
    "hubspot_private_app_token": case(lambda: "pat-na1-" + uid(), "pat-na1"),
    "frameio_token": case(lambda: "fio-u-" + r(URLSAFE + "=", 64), "fio-u"),
    "prefect_api_key": case(lambda: "pnu_" + r(ALNUM, 36), "pnu_"),
    "salesforce_access_token": case(
        lambda: f"00D{r(ALNUM, 15)}!{r(ALNUM + '._', 79)}{r(ALNUM, 1)}", "00D"
    ),
    "riot_games_api_key": case(lambda: "RGAPI-" + uid(), "RGAPI"),
    "mapbox_secret_token": case(lambda: f"sk.eyJ1Ijoi{r(URLSAFE, 20)}.{r(URLSAFE, 22)}", "sk.eyJ"),
    "cloudinary_url": case(
        lambda: f"cloudinary://{r(DIGITS, 15)}:{r(URLSAFE, 27)}@c", "cloudinary:"
    ),
    "zapier_webhook": case(
        lambda: f"hooks.zapier.com/hooks/catch/{r(DIGITS, 8)}/{r(LOWER + DIGITS, 6)}",
        "hooks.zapier",
    ),
    # payments and commerce
    "shopify_access_token": case(lambda: "shpat_" + r(HEX, 32), "shpat"),
    "shopify_custom_app_token": case(lambda: "shpca_" + r(HEX, 32), "shpca"),
    "shopify_private_app_token": case(lambda: "shppa_" + r(HEX, 32), "shppa"),
    "shopify_shared_secret": case(lambda: "shpss_" + r(HEX, 32), "shpss"),
    "square_access_token": case(lambda: "sq0atp-" + r(URLSAFE, 22), "sq0atp"),
    "square_oauth_secret": case(lambda: "sq0csp-" + r(URLSAFE, 43), "sq0csp"),
    "braintree_access_token": case(
        lambda: f"access_token$production${r(LOWER + DIGITS, 16)}${r(HEX, 32)}", "access_token$"
    ),
    "webhook_signing_secret": case(lambda: "whsec_" + r(B64, 32), "whsec"),
    "plaid_access_token": case(lambda: "access-production-" + uid(), "access-"),
    "shippo_api_token": case(lambda: "shippo_live_" + r(HEX, 40), "shippo"),
    "easypost_api_key": case(lambda: "EZAK" + r(ALNUM, 54), "EZAK"),
    "duffel_api_token": case(lambda: "duffel_test_" + r(URLSAFE + "=", 43), "duffel"),
    "flutterwave_secret_key": case(lambda: f"FLWSECK-{r(HEX, 32)}-X", "FLWSECK"),
    # mail, chat and social
    "mailgun_api_key": case(lambda: "key-" + r(HEX, 32), "key-"),
    "mailchimp_api_key": case(lambda: r(HEX, 32) + "-us1", "-us"),
    "resend_api_key": case(lambda: f"re_{r(DIGITS, 1)}{r(ALNUM, 7)}_{r(ALNUM, 24)}", "re_"),
    "brevo_api_key": case(lambda: f"xkeysib-{r(HEX, 64)}-{r(ALNUM, 16)}", "xkeysib"),
    "slack_app_token": case(
        lambda: f"xapp-1-A{r(UPPER + DIGITS, 10)}-{r(DIGITS, 13)}-{r(HEX, 32)}", "xapp"
    ),
    "slack_config_token": case(lambda: "xoxe.xoxp-1-" + r(ALNUM, 150), "xoxe"),
    "discord_bot_token": case(discord_bot, "M", "N", "O"),
    "twitter_bearer_token": case(lambda: "A" * 21 + r(ALNUM + "%", 80), "A"),
    "facebook_access_token": case(lambda: "EAA" + r(ALNUM, 100), "EAA"),
    "twilio_auth_token": case(
        lambda: r(HEX, 32), "twilio",
        texts=keyed("TWILIO_AUTH_TOKEN=<v>\n", '{"twilioAuthToken": "<v>"}'),
    ),
    # storage
    "dropbox_access_token": case(lambda: "sl." + r(URLSAFE, 130), "sl."),
    # observability, search and identity
    "datadog_api_key": case(
        lambda: r(HEX, 32), "dd",
        texts=keyed("DD_API_KEY=<v>\n", '{"dd_api_key": "<v>"}', "DD-API-KEY: <v>\r\n"),
    ),
    "datadog_app_key": case(
        lambda: r(HEX, 40), "dd", texts=keyed("DD_APP_KEY=<v>\n", '{"dd_application_key": "<v>"}')
    ),
    "newrelic_user_api_key": case(lambda: "NRAK-" + r(UPPER + DIGITS, 27), "NRAK"),
    "newrelic_insights_key": case(lambda: "NRII-" + r(URLSAFE, 32), "NRII"),
    "newrelic_license_key": case(lambda: r(HEX, 36) + "NRAL", "NRAL"),
    "sentry_org_token": case(lambda: f"sntrys_eyJ{r(B64, 30)}_{r(B64, 43)}", "sntrys"),
    "sentry_user_token": case(lambda: "sntryu_" + r(HEX, 64), "sntryu"),
    "grafana_cloud_token": case(lambda: "glc_" + r(B64, 32), "glc_"),
    "grafana_service_account_token": case(lambda: f"glsa_{r(ALNUM, 32)}_{r(HEX, 8)}", "glsa"),
    "grafana_api_key": case(lambda: "eyJrIjoi" + r(B64, 50), "eyJrIjoi"),
    "dynatrace_token": case(
        lambda: f"dt0c01.{r(UPPER + DIGITS, 24)}.{r(UPPER + DIGITS, 64)}", "dt0c01"
    ),
    "algolia_admin_key": case(
        lambda: r(HEX, 32), "algolia",
        texts=keyed("ALGOLIA_ADMIN_KEY=<v>\n", '{"algoliaApiKey": "<v>"}'),
    ),
    "okta_api_token": case(
        lambda: "00" + r(URLSAFE, 40), "okta", "SSWS",
        texts=keyed("OKTA_API_TOKEN=<v>\n", '{"oktaToken": "<v>"}',
                    "curl -H 'Authorization: SSWS <v>' https://dev-1.okta.com/api/v1/users"),
    ),
    "tailscale_key": case(lambda: f"tskey-auth-{r(ALNUM, 6)}-{r(ALNUM, 20)}", "tskey"),
    # wallets and raw keys
    "bitcoin_wif_private_key": case(wif, "K", "L"),
    "bip32_extended_private_key": case(xprv, "xprv"),
    "nostr_private_key": case(lambda: bech32("nsec", RNG.randbytes(32)), "nsec"),
    "hex_private_key": case(
        lambda: r(HEX, 64), "priv", texts=keyed("PRIVATE_KEY=0x<v>\n", '{"privateKey": "<v>"}')
    ),
}  # fmt: skip

BY_ID = {d.id: d for d in PROVIDER_DETECTORS}


@cache
def _compiled(pattern: str) -> Any:
    return re2.compile(pattern)


def found(detector: Detector, text: str) -> list[str]:
    """Values the family finds in `text`: pattern hits its validator accepts."""
    values = [m.group(detector.group) for m in _compiled(detector.pattern).finditer(text)]
    return [v for v in values if detector.validator is None or detector.validator(v)]


def alter(text: str, sig: tuple[str, ...]) -> str:
    """`text` with the first character of each signature in it changed (matched with
    its case if it can be, else without: keywords come upper- or lower-case)."""
    for s in sig:
        i = text.find(s)
        i = i if i >= 0 else text.lower().find(s.lower())
        if i < 0:
            continue
        c = text[i]
        new = ("9" if c != "9" else "8") if c.isdigit() else ("Q" if c != "Q" else "Z")
        if c.islower():
            new = "q" if c != "q" else "z"
        text = text[:i] + new + text[i + 1 :]
    return text


def test_every_family_has_a_case() -> None:
    assert set(CASES) == set(BY_ID)


@pytest.mark.parametrize("kind", sorted(CASES))
def test_family_finds_its_shape(kind: str) -> None:
    detector, spec = BY_ID[kind], CASES[kind]
    value = spec.make()
    for text in spec.texts(value):
        assert found(detector, text) == [value], text


@pytest.mark.parametrize("kind", sorted(CASES))
def test_family_rejects_a_short_value(kind: str) -> None:
    detector, spec = BY_ID[kind], CASES[kind]
    value = spec.make()
    for text in spec.texts(value[:-1]):
        assert found(detector, text) == [], text


@pytest.mark.parametrize("kind", sorted(CASES))
def test_family_rejects_an_altered_prefix(kind: str) -> None:
    detector, spec = BY_ID[kind], CASES[kind]
    value = spec.make()
    for text in spec.texts(value):
        altered = alter(text, spec.sig)
        assert altered != text
        assert found(detector, altered) == [], altered


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


BENIGN = [
    # identifiers and digests
    f"request {uid()} for user {uid()} finished",
    "commit 3f2a9c1e8b7d6a5f4e3d2c1b0a9f8e7d6c5b4a39\nAuthor: Dev <dev@corp.io>",
    f"sha256:{hashlib.sha256(b'layer').hexdigest()}",
    f"nginx@sha256:{hashlib.sha256(b'image').hexdigest()}",
    f"md5={hashlib.md5(b'x').hexdigest()} sha1={hashlib.sha1(b'x').hexdigest()}",  # noqa: S324
    f"sha512-{_b64(hashlib.sha512(b'pkg').digest())}",
    '"integrity": "sha512-' + _b64(hashlib.sha512(b"lodash").digest()) + '"',
    "sha384-oqVuAfXRKap7fdgcCY5uykM6+R9GqQ8K/uxy9rx7HNQlGYl1kPzQho1wx4JwY8wC",
    "golang.org/x/net v0.17.0 h1:pVaXccu2ozPjCXewfr1S2xPpHXdX+XU8bGLyw0gPeTc=",
    # base64 data
    _b64(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x01\x00\x00\x00\x01\x00\x08\x06\x00"),
    "data:image/png;base64," + _b64(b"\x89PNG\r\n\x1a\n" + bytes(RNG.randbytes(200))),
    _b64(bytes(96)),
    _b64(b"\x10" + bytes(47)),
    _b64(b"\x10" + bytes(95)),
    _b64(RNG.randbytes(300)),
    base64.urlsafe_b64encode(RNG.randbytes(240)).decode(),
    "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQ" + r(B64, 300) + " dev@laptop",
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.SflKxwRJSMeKKF2QT4fwpMeJf36P",
    # URLs
    "https://bucket.s3.amazonaws.com/report.pdf?X-Amz-Algorithm=AWS4-HMAC-SHA256"
    "&X-Amz-Credential=ASIAEXAMPLEEXAMPLE12%2F20260101%2Fus-east-1%2Fs3%2Faws4_request"
    f"&X-Amz-Date=20260101T000000Z&X-Amz-Expires=3600&X-Amz-SignedHeaders=host"
    f"&X-Amz-Signature={hashlib.sha256(b'sig').hexdigest()}",
    f"https://api.corp.io/v1/orders/{uid()}/items?page=2&per_page=100",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko)",
    # prose and code
    "The dapper skeleton pattern keeps a key-value store behind a facade; see pattern 1/2.",
    "Patch notes: fix rnd_seed handling, the hvs. overlay, sl. slides and the pk_ index.",
    "x = 1//0  # ZeroDivisionError, and ya29 is not a token without its dot",
    "def get_pat(): return os.environ['PAT']  # personal access token, read at runtime",
    "secret_key_base = Rails.application.credentials.secret_key_base",
    "api_org_chart = build_org_chart(api_org_members, api_org_teams)",
    "rnd_GeneratorWithSeedValueFor = secret_AccessorForTheProductionEnvironmentsOfTheAp()",
    # CSS and markup
    '<div class="btn btn-primary col-md-6 glyphicon-asterisk mat-mdc-form-field-infix">',
    ".md-autocomplete-suggestions-container .key-value-pair-list-item-highlighted {}",
    # wallets that are addresses, not keys
    "send to 1BoatSLRHtKNngkdXEeobR76b53LETtpyT or 0x52908400098527886E0F7030069857D2E4169EE7",
    "bc1qar0srrr7xfkvy5l643lydnw9re59gtzzwf5mdq",
]


@pytest.mark.parametrize("text", BENIGN, ids=range(len(BENIGN)))
def test_benign_text_fires_no_family(text: str) -> None:
    fired = {d.id: found(d, text) for d in PROVIDER_DETECTORS}
    assert {k: v for k, v in fired.items() if v} == {}


def _all_detectors() -> tuple[Detector, ...]:
    """The core table and the provider families once each, whether or not the core table
    already includes them."""
    ours = {id(d) for d in PROVIDER_DETECTORS}
    core = tuple(d for d in detectors.DETECTORS if id(d) not in ours)
    return core + PROVIDER_DETECTORS


def test_ids_are_unique_across_tables() -> None:
    ids = [d.id for d in _all_detectors()]
    assert len(ids) == len(set(ids))
    assert len(ids) >= 85


def test_families_are_well_formed() -> None:
    for d in PROVIDER_DETECTORS:
        assert d.data_class == SECRETS, d.id
        assert d.group == 1, d.id
        assert 1 <= d.cost <= 3, d.id
        assert d.id == d.id.lower(), d.id
        assert d.id.replace("_", "").isalnum(), d.id
        for host in d.providers:
            assert host == host.lower(), (d.id, host)
            assert "/" not in host, (d.id, host)
            assert "." in host, (d.id, host)
        assert _compiled(d.pattern).groups >= 1, d.id


def test_all_patterns_compile_in_one_re2_set() -> None:
    opts = re2.Options()
    opts.max_mem = 256 << 20
    search = re2.Set.SearchSet(opts)
    for d in _all_detectors():
        search.Add(d.pattern)
    search.Compile()
    value = CASES["databricks_token"].make()
    index = [d.id for d in _all_detectors()].index("databricks_token")
    assert index in search.Match(f"token={value}".encode())


def test_patterns_are_re2_not_backtracking_re() -> None:
    for d in PROVIDER_DETECTORS:
        assert type(_compiled(d.pattern)).__module__ == "re2", d.id
    # RE2 refuses what only a backtracking engine can run.
    with pytest.raises(re2.error):
        re2.compile(r"(?=dapi)dapi")
    with pytest.raises(re2.error):
        re2.compile(r"(a)\1")
    assert not hasattr(providers, "re")  # validators use no Python regular expressions


def test_square_and_meta_tokens_stay_apart() -> None:
    square = "EAAA" + r(URLSAFE, 60)
    meta = "EAAA" + r(ALNUM, 150)
    assert found(BY_ID["square_access_token"], f"t={square}\n") == [square]
    assert found(BY_ID["facebook_access_token"], f"t={square}\n") == []
    assert found(BY_ID["facebook_access_token"], f"t={meta}\n") == [meta]
    assert found(BY_ID["square_access_token"], f"t={meta}\n") == []


def test_validators_check_structure() -> None:
    def other_last(value: str, alphabet: str) -> str:
        return value[:-1] + next(c for c in alphabet if c != value[-1])

    bad_checksum = other_last(wif(), "23")
    assert found(BY_ID["bitcoin_wif_private_key"], f"k={bad_checksum}\n") == []
    public = b"\x02" + RNG.randbytes(32)  # an extended public key, relabelled `xprv`
    xpub = b58check(bytes.fromhex("0488b21e") + bytes(9) + RNG.randbytes(32) + public)
    relabelled = "xprv" + xpub[4:]
    assert found(BY_ID["bip32_extended_private_key"], f"k={relabelled}\n") == []
    bad_nsec = other_last(bech32("nsec", RNG.randbytes(32)), "qp")
    assert found(BY_ID["nostr_private_key"], f"k={bad_nsec}\n") == []
    words = base64.urlsafe_b64encode(b"not-a-user-id-at-all").decode().rstrip("=")
    not_bot = f"M{words[1:24]}.{r(URLSAFE, 6)}.{r(URLSAFE, 27)}"
    assert found(BY_ID["discord_bot_token"], f"t={not_bot}\n") == []
    assert found(BY_ID["azure_cask_key"], f"k={cask('AZDO')}\n") == []
    assert found(BY_ID["docker_registry_auth"], '{"auth": "bm9uZWF0YWxs"}') == []  # "noneatall"
    assert found(BY_ID["twitter_bearer_token"], "t=" + "A" * 128 + "\n") == []
