"""Credential families by issuer: a provider's key is recognised, and counts as its own only at its hosts."""
# ruff: noqa: E501  (a table of patterns and hosts reads better one entry per line)

# Shapes are each provider's published format (prefix, length, alphabet), written for RE2:
# every pattern holds the value in group 1, starts at a word boundary (or, for values
# that may follow `=`, `/` or `+`, a class that excludes the value's own alphabet) and
# ends where the value's alphabet does, so benign text cannot produce a match mid-word.
# Values with neither a literal prefix nor a fixed signature inside are matched only next
# to the keyword that names them.

from __future__ import annotations

import base64
import binascii
import hashlib

from sidecar.engine.detectors import SECRETS, Detector

_E = r"(?:[^A-Za-z0-9_\-]|$)"  # end of a value of letters, digits, `_` and `-`
_E64 = r"(?:[^A-Za-z0-9+/=_\-]|$)"  # end of a base64 value (padding included)
_S64 = r"(?:^|[^A-Za-z0-9+/_\-])"  # start of a base64 value (`=` may precede it)
_UUID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
_B58 = r"[1-9A-HJ-NP-Za-km-z]"
# Microsoft's common annotated security key: 52 random, `JQQJ9` + kind, date, 16 reserved,
# a 4-character provider signature, 4 checksum characters (and `xx==` in the long form).
_CASK = r"(?:^|[^A-Za-z0-9])([A-Za-z0-9]{52}JQQJ9[9DH][A-Za-z0-9][A-L][A-Za-z0-9]{16}%s[A-Za-z0-9]{4}(?:[A-Za-z0-9]{2}==)?)(?:[^A-Za-z0-9+/=]|$)"


# --- validators: structure only (whether a value is an example is decided elsewhere) ---

_BASE58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
_BASE58_INDEX = {c: i for i, c in enumerate(_BASE58)}


def _base58check(value: str) -> bytes | None:
    """The payload of a Base58Check string (leading `1`s are zero bytes), or None when a
    character is outside the alphabet or the double-SHA256 checksum does not hold."""
    n = 0
    for ch in value:
        digit = _BASE58_INDEX.get(ch)
        if digit is None:
            return None
        n = n * 58 + digit
    raw = bytes(len(value) - len(value.lstrip("1"))) + n.to_bytes((n.bit_length() + 7) // 8, "big")
    payload, check = raw[:-4], raw[-4:]
    if len(raw) < 5 or hashlib.sha256(hashlib.sha256(payload).digest()).digest()[:4] != check:
        return None
    return payload


def _wif_private_key(value: str) -> bool:
    """Wallet import format: 0x80, a 32-byte key, 0x01 when the public key is compressed."""
    payload = _base58check(value)
    if payload is None or payload[:1] != b"\x80":
        return False
    return len(payload) == 33 or (len(payload) == 34 and payload[33] == 1)


# BIP-32 / SLIP-132 version bytes of extended private keys (mainnet and testnet).
_XPRV_VERSIONS = frozenset(
    bytes.fromhex(v)
    for v in ("0488ade4", "049d7878", "04b2430c", "0295b005", "02aa7a99",
              "04358394", "044a4e28", "045f18bc", "024285b5", "02575048")
)  # fmt: skip


def _extended_private_key(value: str) -> bool:
    """78 bytes: version, depth, parent fingerprint, child number, chain code, and the key
    as 0x00 + 32 bytes (a public key would start 0x02 or 0x03)."""
    payload = _base58check(value)
    return (
        payload is not None
        and len(payload) == 78
        and payload[:4] in _XPRV_VERSIONS
        and payload[45] == 0
    )


_BECH32 = "qpzry9x8gf2tvdw0s3jn54khce6mua7l"
_BECH32_GENERATOR = (0x3B6A57B2, 0x26508E6D, 0x1EA119FA, 0x3D4233DD, 0x2A1462B3)


def _bech32_checksum(hrp: str, data: str) -> bool:
    """BIP-173: the checksum polynomial over the expanded prefix and the data is 1."""
    values = [ord(c) >> 5 for c in hrp] + [0] + [ord(c) & 31 for c in hrp]
    for c in data:
        digit = _BECH32.find(c)
        if digit < 0:
            return False
        values.append(digit)
    chk = 1
    for v in values:
        top = chk >> 25
        chk = (chk & 0x1FFFFFF) << 5 ^ v
        for i, g in enumerate(_BECH32_GENERATOR):
            if top >> i & 1:
                chk ^= g
    return chk == 1


def _nostr_secret_key(value: str) -> bool:
    hrp, _, data = value.rpartition("1")
    return hrp == "nsec" and _bech32_checksum(hrp, data)


def _discord_bot_token(value: str) -> bool:
    """The first segment is the bot's user id (a snowflake of 17-20 digits) in base64."""
    head = value.split(".", 1)[0]
    try:
        raw = base64.urlsafe_b64decode(head + "=" * (-len(head) % 4))
    except (binascii.Error, ValueError):
        return False
    return raw.isdigit() and 17 <= len(raw) <= 20 and not raw.startswith(b"0")


def _basic_auth(value: str) -> bool:
    """A Docker `auth` entry: base64 of `user:password`."""
    try:
        raw = base64.b64decode(value, validate=True).decode()
    except (binascii.Error, ValueError):
        return False
    user, sep, password = raw.partition(":")
    return bool(sep and user and password) and raw.isprintable()


def _random(value: str) -> bool:
    """Base64 of zero-filled binary data (`EAAAAAAA...`, `AAAA...`) has these tokens' shape;
    a token's random part does not repeat a handful of characters."""
    return len(set(value)) >= 12


def _has_digit(value: str) -> bool:
    """A short prefix before letters and digits also starts identifiers (`rnd_seedValue`,
    `secret_accessorName`); a generated token of 24+ characters has a digit in it."""
    return any(c.isdigit() for c in value)


def _not_azure_devops(value: str) -> bool:
    """Azure DevOps PATs are the same kind of key, with their own detector and hosts."""
    return value[76:80] != "AZDO"


_AZURE_CASK_HOSTS = ("cognitiveservices.azure.com", "openai.azure.com", "services.ai.azure.com",
                     "api.cognitive.microsoft.com", "eventgrid.azure.net", "azconfig.io",
                     "communication.azure.com", "mixedreality.azure.com", "fluidrelay.azure.com",
                     "atlas.microsoft.com", "database.windows.net")  # fmt: skip

PROVIDER_DETECTORS: tuple[Detector, ...] = (
    # --- AI and ML platforms -------------------------------------------------
    Detector("databricks_token", SECRETS, r"\b(dapi[0-9a-f]{32}(?:-\d)?)" + _E,
             None, ("cloud.databricks.com", "azuredatabricks.net", "gcp.databricks.com"), group=1, cost=1),
    Detector("xai_api_key", SECRETS, r"\b(xai-[A-Za-z0-9]{70,90})" + _E,
             None, ("x.ai",), group=1, cost=1),
    Detector("groq_api_key", SECRETS, r"\b(gsk_[A-Za-z0-9]{48,56})" + _E,
             None, ("groq.com",), group=1, cost=1),
    Detector("perplexity_api_key", SECRETS, r"\b(pplx-[A-Za-z0-9]{48})" + _E,
             None, ("perplexity.ai",), group=1, cost=1),
    Detector("openrouter_api_key", SECRETS, r"\b(sk-or-v1-[0-9a-f]{64})" + _E,
             None, ("openrouter.ai",), group=1, cost=1),
    Detector("replicate_api_token", SECRETS, r"\b(r8_[A-Za-z0-9]{37})" + _E,
             None, ("replicate.com",), group=1, cost=2),
    Detector("huggingface_org_token", SECRETS, r"\b(api_org_[A-Za-z0-9]{34})" + _E,
             None, ("huggingface.co", "hf.co"), group=1, cost=1),
    Detector("langsmith_api_key", SECRETS, r"\b(lsv2_(?:pt|sk)_[0-9a-f]{32}_[0-9a-f]{10})" + _E,
             None, ("smith.langchain.com",), group=1, cost=1),
    Detector("langfuse_secret_key", SECRETS, r"\b(sk-lf-" + _UUID + ")" + _E,
             None, ("langfuse.com",), group=1, cost=1),
    Detector("pinecone_api_key", SECRETS, r"\b(pcsk_[A-Za-z0-9]{4,10}_[A-Za-z0-9]{32,100})" + _E,
             None, ("pinecone.io",), group=1, cost=1),
    Detector("nvidia_api_key", SECRETS, r"\b(nvapi-[A-Za-z0-9_\-]{64})" + _E,
             None, ("nvidia.com",), group=1, cost=1),
    Detector("wandb_api_key", SECRETS,
             r"(?i)(?:wandb[_\-]?api[_\-]?key[\"']?\s*[:=]\s*[\"']?|api\.wandb\.ai\s+login\s+[A-Za-z0-9_.@+\-]+\s+password\s+)([0-9a-f]{40})(?:[^0-9a-z]|$)",
             None, ("wandb.ai",), group=1, cost=3),
    # --- Google --------------------------------------------------------------
    Detector("google_oauth_client_secret", SECRETS, r"\b(GOCSPX-[A-Za-z0-9_\-]{28})" + _E,
             None, ("googleapis.com", "accounts.google.com"), group=1, cost=1),
    Detector("google_oauth_refresh_token", SECRETS, r"\b(1//0[A-Za-z0-9_\-]{40,})" + _E,
             None, ("googleapis.com", "accounts.google.com"), group=1, cost=2),
    Detector("google_oauth_access_token", SECRETS, r"\b(ya29\.[A-Za-z0-9_\-]{30,})" + _E,
             None, ("googleapis.com", "google.com"), group=1, cost=1),
    Detector("firebase_fcm_server_key", SECRETS, r"\b(AAAA[A-Za-z0-9_\-]{7}:APA91b[A-Za-z0-9_\-]{130,140})" + _E,
             None, ("googleapis.com",), group=1, cost=1),
    Detector("google_chat_webhook", SECRETS,
             r"(chat\.googleapis\.com/v1/spaces/[A-Za-z0-9_\-]+/messages\?key=AIza[A-Za-z0-9_\-]{35}&token=[A-Za-z0-9_\-%]{40,})(?:[^A-Za-z0-9_\-%]|$)",
             None, ("chat.googleapis.com",), group=1, cost=1),
    # --- Microsoft Azure -----------------------------------------------------
    Detector("azure_ad_client_secret", SECRETS,
             r"(?:^|[^A-Za-z0-9_~.\-])([A-Za-z0-9_~.\-]{3}(?:7Q~[A-Za-z0-9_~.\-]{31}|8Q~[A-Za-z0-9_~.\-]{34}))(?:[^A-Za-z0-9_~\-]|$)",
             None, ("microsoftonline.com", "login.microsoft.com", "login.windows.net", "microsoftonline.us"), group=1, cost=2),
    Detector("azure_devops_pat", SECRETS, _CASK % "AZDO",
             None, ("dev.azure.com", "visualstudio.com"), group=1, cost=1),
    Detector("azure_cask_key", SECRETS, _CASK % "[A-Za-z][A-Za-z0-9]{3}",
             _not_azure_devops, _AZURE_CASK_HOSTS, group=1, cost=1),
    Detector("azure_function_key", SECRETS,
             r"(?:^|[^A-Za-z0-9_\-])([A-Za-z0-9_\-]{44}AzFu[A-Za-z0-9_\-]{5}[AQgw]==)" + _E64,
             None, ("azurewebsites.net",), group=1, cost=1),
    Detector("azure_search_key", SECRETS, _S64 + r"([A-Za-z0-9]{42}AzSe[A-D][A-Za-z0-9]{5})" + _E64,
             None, ("search.windows.net",), group=1, cost=1),
    Detector("azure_service_bus_key", SECRETS,  # Service Bus, Event Hubs and Relay
             _S64 + r"([A-Za-z0-9+/]{33}\+A(?:Sb|Eh|Rm)[A-P][A-Za-z0-9+/]{5}=)" + _E64,
             None, ("servicebus.windows.net",), group=1, cost=1),
    Detector("azure_iot_key", SECRETS, _S64 + r"([A-Za-z0-9+/]{33}AIoT[A-P][A-Za-z0-9+/]{5}=)" + _E64,
             None, ("azure-devices.net", "azure-devices-provisioning.net"), group=1, cost=1),
    Detector("azure_storage_identifiable_key", SECRETS,
             _S64 + r"([A-Za-z0-9+/]{76}\+ASt[A-Za-z0-9+/]{5}[AQgw]==)" + _E64,
             None, ("core.windows.net",), group=1, cost=1),
    Detector("azure_cosmosdb_key", SECRETS, _S64 + r"([A-Za-z0-9+/]{76}ACDb[A-Za-z0-9+/]{5}[AQgw]==)" + _E64,
             None, ("documents.azure.com", "cosmos.azure.com"), group=1, cost=1),
    Detector("azure_batch_key", SECRETS, _S64 + r"([A-Za-z0-9+/]{76}\+ABa[A-Za-z0-9+/]{5}[AQgw]==)" + _E64,
             None, ("batch.azure.com",), group=1, cost=1),
    Detector("azure_apim_key", SECRETS, _S64 + r"([A-Za-z0-9+/]{76}APIM[A-Za-z0-9+/]{5}[AQgw]==)" + _E64,
             None, ("azure-api.net",), group=1, cost=1),
    Detector("azure_redis_key", SECRETS, _S64 + r"([A-Za-z0-9+/]{33}AzCa[A-P][A-Za-z0-9+/]{5}=)" + _E64,
             None, ("cache.windows.net", "cache.azure.net"), group=1, cost=1),
    Detector("azure_container_registry_key", SECRETS, _S64 + r"([A-Za-z0-9+/]{42}\+ACR[A-D][A-Za-z0-9+/]{5})" + _E64,
             None, ("azurecr.io",), group=1, cost=1),
    Detector("azure_event_grid_key", SECRETS, _S64 + r"([A-Za-z0-9+/]{33}AZEG[A-P][A-Za-z0-9+/]{5}=)" + _E64,
             None, ("eventgrid.azure.net",), group=1, cost=1),
    Detector("teams_webhook", SECRETS,
             r"((?:[a-z0-9\-]+\.webhook\.office\.com/webhookb2|outlook\.office(?:365)?\.com/webhook)/" + _UUID + "@" + _UUID
             + r"/IncomingWebhook/[0-9a-f]{32}/" + _UUID + r"(?:/V2[A-Za-z0-9_\-]{20,})?)" + _E,
             None, ("webhook.office.com", "outlook.office.com", "outlook.office365.com"), group=1, cost=1),
    # --- other clouds and hosting --------------------------------------------
    Detector("alibaba_access_key_id", SECRETS, r"\b(LTAI[A-Za-z0-9]{12,20})" + _E,
             None, ("aliyuncs.com", "aliyun.com", "alibabacloud.com"), group=1, cost=1),
    Detector("tencent_secret_id", SECRETS, r"\b(AKID[A-Za-z0-9]{32})" + _E,
             None, ("tencentcloudapi.com", "tencentcloud.com", "qcloud.com", "myqcloud.com"), group=1, cost=1),
    Detector("yandex_api_key", SECRETS, r"\b(AQVN[A-Za-z0-9_\-]{35,38})" + _E,
             None, ("yandexcloud.net", "cloud.yandex.net"), group=1, cost=1),
    Detector("digitalocean_pat", SECRETS, r"\b(dop_v1_[0-9a-f]{64})" + _E,
             None, ("digitalocean.com",), group=1, cost=1),
    Detector("digitalocean_oauth_token", SECRETS, r"\b(doo_v1_[0-9a-f]{64})" + _E,
             None, ("digitalocean.com",), group=1, cost=1),
    Detector("digitalocean_refresh_token", SECRETS, r"\b(dor_v1_[0-9a-f]{64})" + _E,
             None, ("digitalocean.com",), group=1, cost=1),
    Detector("cloudflare_api_token", SECRETS, r"\b(cf(?:k|ut|at)_[A-Za-z0-9]{40,56})" + _E,
             None, ("cloudflare.com",), group=1, cost=1),
    Detector("cloudflare_origin_ca_key", SECRETS, r"\b(v1\.0-[0-9a-f]{24}-[0-9a-f]{146})" + _E,
             None, ("cloudflare.com",), group=1, cost=1),
    Detector("heroku_api_key", SECRETS, r"\b(HRKU-AA[A-Za-z0-9_\-]{58})" + _E,
             None, ("heroku.com",), group=1, cost=1),
    Detector("flyio_token", SECRETS,
             r"\b((?:FlyV1 )?fm[12][ar]?_[A-Za-z0-9+/]{100,}={0,3}(?:,fm[12][ar]?_[A-Za-z0-9+/]{20,}={0,3})*|fo1_[A-Za-z0-9_\-]{43})" + _E64,
             None, ("fly.io", "machines.dev"), group=1, cost=1),
    Detector("render_api_key", SECRETS, r"\b(rnd_[A-Za-z0-9]{24,48})" + _E,
             _has_digit, ("render.com",), group=1, cost=1),
    # --- databases and backends ----------------------------------------------
    Detector("supabase_access_token", SECRETS, r"\b(sbp_(?:oauth_)?[0-9a-f]{40})" + _E,
             None, ("supabase.com",), group=1, cost=1),
    Detector("supabase_secret_key", SECRETS, r"\b(sb_secret_[A-Za-z0-9_\-]{20,64})" + _E,
             None, ("supabase.co", "supabase.com"), group=1, cost=1),
    Detector("planetscale_api_token", SECRETS, r"\b(pscale_(?:tkn|oauth)_[A-Za-z0-9_\-]{32,64})" + _E,
             None, ("planetscale.com",), group=1, cost=1),
    Detector("planetscale_password", SECRETS, r"\b(pscale_pw_[A-Za-z0-9_\-]{32,64})" + _E,
             None, ("psdb.cloud",), group=1, cost=1),
    # --- secrets managers and infrastructure as code -------------------------
    Detector("doppler_token", SECRETS,
             r"\b(dp\.(?:pt|ct|sa|scim|audit)\.[A-Za-z0-9]{40,44}|dp\.st\.(?:[a-z0-9_\-]{2,35}\.)?[A-Za-z0-9]{40,44})" + _E,
             None, ("doppler.com",), group=1, cost=1),
    Detector("vault_token", SECRETS, r"\b(hv[sbr]\.[A-Za-z0-9_\-]{24,})" + _E,
             None, ("hashicorp.cloud",), group=1, cost=1),
    Detector("terraform_cloud_token", SECRETS, r"\b([A-Za-z0-9]{14}\.atlasv1\.[A-Za-z0-9_=\-]{60,70})(?:[^A-Za-z0-9_=\-]|$)",
             None, ("terraform.io",), group=1, cost=1),
    Detector("pulumi_access_token", SECRETS, r"\b(pul-[0-9a-f]{40})" + _E,
             None, ("pulumi.com",), group=1, cost=1),
    Detector("onepassword_service_account_token", SECRETS, r"\b(ops_eyJ[A-Za-z0-9+/_\-]{250,}={0,3})" + _E64,
             None, ("1password.com", "1password.ca", "1password.eu"), group=1, cost=1),
    # Never sent anywhere: it stays on the user's devices (two-secret key derivation).
    Detector("onepassword_secret_key", SECRETS,
             r"\b(A3-[A-Z0-9]{6}-[A-Z0-9]{6}-?[A-Z0-9]{5}(?:-[A-Z0-9]{5}){3})" + _E,
             None, (), group=1, cost=2),
    # --- source hosting, CI and package registries ---------------------------
    Detector("gitlab_deploy_token", SECRETS, r"\b(gldt-[A-Za-z0-9_\-]{20,}(?:\.[0-9a-z]{9})?)" + _E,
             None, ("gitlab.com",), group=1, cost=1),
    Detector("gitlab_runner_token", SECRETS, r"\b(glrt-[A-Za-z0-9_\-]{20,}(?:\.[0-9a-z]{9})?)" + _E,
             None, ("gitlab.com",), group=1, cost=1),
    Detector("gitlab_runner_registration_token", SECRETS, r"\b(GR1348941[A-Za-z0-9_\-]{20,})" + _E,
             None, ("gitlab.com",), group=1, cost=1),
    Detector("gitlab_pipeline_trigger_token", SECRETS, r"\b(glptt-[0-9a-f]{40})" + _E,
             None, ("gitlab.com",), group=1, cost=1),
    Detector("gitlab_ci_job_token", SECRETS, r"\b(glcbt-[A-Za-z0-9_\-]{20,}(?:\.[0-9a-z]{9})?)" + _E,
             None, ("gitlab.com",), group=1, cost=1),
    Detector("gitlab_scim_token", SECRETS, r"\b(glsoat-[A-Za-z0-9_\-]{20,})" + _E,
             None, ("gitlab.com",), group=1, cost=1),
    Detector("gitlab_oauth_app_secret", SECRETS, r"\b(gloas-[A-Za-z0-9_\-]{64,})" + _E,
             None, ("gitlab.com",), group=1, cost=1),
    Detector("gitlab_feed_token", SECRETS, r"\b(glft-[A-Za-z0-9_\-]{20,})" + _E,
             None, ("gitlab.com",), group=1, cost=1),
    Detector("gitlab_incoming_mail_token", SECRETS, r"\b(glimt-[A-Za-z0-9_\-]{25,})" + _E,
             None, ("gitlab.com",), group=1, cost=1),
    Detector("gitlab_agent_token", SECRETS, r"\b(glagent-[A-Za-z0-9_\-]{50,})" + _E,
             None, ("gitlab.com",), group=1, cost=1),
    Detector("gitlab_feature_flag_token", SECRETS, r"\b(glffct-[A-Za-z0-9_\-]{20,})" + _E,
             None, ("gitlab.com",), group=1, cost=1),
    Detector("gitlab_session_cookie", SECRETS, r"_gitlab_session=([0-9a-f]{32})(?:[^0-9a-z]|$)",
             None, ("gitlab.com",), group=1, cost=1),
    Detector("bitbucket_app_password", SECRETS, r"\b(ATBB[A-Za-z0-9_=\-]{24,64})(?:[^A-Za-z0-9_=\-]|$)",
             None, ("bitbucket.org",), group=1, cost=1),
    Detector("atlassian_api_token", SECRETS, r"\b(ATATT3[A-Za-z0-9_=\-]{186})(?:[^A-Za-z0-9_=\-]|$)",
             None, ("atlassian.net", "atlassian.com", "bitbucket.org"), group=1, cost=1),
    Detector("rubygems_api_key", SECRETS, r"\b(rubygems_[0-9a-f]{48})" + _E,
             None, ("rubygems.org",), group=1, cost=1),
    Detector("nuget_api_key", SECRETS, r"\b(oy2[a-z0-9]{43})" + _E,
             None, ("nuget.org",), group=1, cost=2),
    Detector("crates_io_token", SECRETS, r"\b(cio[A-Za-z0-9]{32})" + _E,
             None, ("crates.io",), group=1, cost=2),
    Detector("docker_hub_token", SECRETS, r"\b(dckr_(?:pat|oat)_[A-Za-z0-9_\-]{27,})" + _E,
             None, ("docker.io", "docker.com"), group=1, cost=1),
    # `~/.docker/config.json`: any registry's `user:password`, so no issuer.
    Detector("docker_registry_auth", SECRETS, r"\"auth\"\s*:\s*\"([A-Za-z0-9+/]{8,}={0,2})\"",
             _basic_auth, (), group=1, cost=3),
    Detector("jfrog_api_key", SECRETS, r"\b(AKCp[A-Za-z0-9]{69})" + _E,
             None, ("jfrog.io",), group=1, cost=1),
    Detector("jfrog_reference_token", SECRETS, r"\b(cmVmdGtu[A-Za-z0-9]{56})" + _E,
             None, ("jfrog.io",), group=1, cost=1),
    Detector("circleci_token", SECRETS, r"\b(CCIP(?:AT|RJ)_[A-Za-z0-9]{20,24}_[0-9a-f]{40})" + _E,
             None, ("circleci.com",), group=1, cost=1),
    Detector("buildkite_api_token", SECRETS, r"\b(bkua_[0-9a-f]{40})" + _E,
             None, ("buildkite.com",), group=1, cost=1),
    Detector("sourcegraph_token", SECRETS, r"\b(sgp_(?:[0-9a-f]{16}_|local_)?[0-9a-f]{40})" + _E,
             None, ("sourcegraph.com",), group=1, cost=1),
    Detector("sonarqube_token", SECRETS, r"\b(sq[apu]_[0-9a-f]{40})" + _E,
             None, ("sonarcloud.io",), group=1, cost=1),
    # --- productivity and content --------------------------------------------
    Detector("linear_api_key", SECRETS, r"\b(lin_api_[A-Za-z0-9]{40}|lin_oauth_[0-9a-f]{64})" + _E,
             None, ("linear.app",), group=1, cost=1),
    Detector("notion_api_token", SECRETS, r"\b(ntn_[0-9]{11}[A-Za-z0-9]{35}|secret_[A-Za-z0-9]{43})" + _E,
             _has_digit, ("notion.com", "notion.so"), group=1, cost=1),
    Detector("asana_pat", SECRETS,
             r"(?:^|[^0-9A-Za-z/])([0-9]/[0-9]{10,19}(?:/[0-9]{10,19})?:[0-9a-f]{32})(?:[^0-9A-Za-z]|$)",
             None, ("asana.com",), group=1, cost=2),
    Detector("figma_pat", SECRETS, r"\b(figd_[A-Za-z0-9_\-]{38,})" + _E,
             None, ("figma.com",), group=1, cost=1),
    Detector("airtable_pat", SECRETS, r"\b(pat[A-Za-z0-9]{14}\.[0-9a-f]{64})" + _E,
             None, ("airtable.com",), group=1, cost=1),
    Detector("clickup_api_token", SECRETS, r"\b(pk_[0-9]{6,10}_[0-9A-Z]{32})" + _E,
             None, ("clickup.com",), group=1, cost=2),
    Detector("contentful_pat", SECRETS, r"\b(CFPAT-[A-Za-z0-9_\-]{43})" + _E,
             None, ("contentful.com",), group=1, cost=1),
    Detector("postman_api_key", SECRETS, r"\b(PMAK-[0-9a-f]{24}-[0-9a-f]{34})" + _E,
             None, ("getpostman.com", "postman.com", "postman.co"), group=1, cost=1),
    Detector("hubspot_private_app_token", SECRETS, r"\b(pat-(?:na|eu|ap)[0-9]-" + _UUID + ")" + _E,
             None, ("hubapi.com", "hubspot.com"), group=1, cost=1),
    Detector("frameio_token", SECRETS, r"\b(fio-u-[A-Za-z0-9_=\-]{64})(?:[^A-Za-z0-9_=\-]|$)",
             None, ("frame.io",), group=1, cost=1),
    Detector("prefect_api_key", SECRETS, r"\b(pn[ub]_[A-Za-z0-9]{36})" + _E,
             None, ("prefect.cloud",), group=1, cost=1),
    Detector("salesforce_access_token", SECRETS, r"\b(00D[A-Za-z0-9]{12,15}![A-Za-z0-9._]{79,}[A-Za-z0-9])(?:[^A-Za-z0-9._]|$)",
             None, ("salesforce.com", "force.com"), group=1, cost=1),
    Detector("riot_games_api_key", SECRETS, r"\b(RGAPI-" + _UUID + ")" + _E,
             None, ("riotgames.com",), group=1, cost=1),
    Detector("mapbox_secret_token", SECRETS, r"\b((?:sk|tk)\.eyJ1Ijoi[A-Za-z0-9_\-]+\.[A-Za-z0-9_\-]{22})" + _E,
             None, ("mapbox.com",), group=1, cost=1),
    Detector("cloudinary_url", SECRETS, r"(cloudinary://[0-9]{10,20}:[A-Za-z0-9_\-]{20,40}@[A-Za-z0-9_\-]+)" + _E,
             None, ("cloudinary.com",), group=1, cost=1),
    Detector("zapier_webhook", SECRETS, r"(hooks\.zapier\.com/hooks/catch/[0-9]{4,12}/[a-z0-9]{6,8})" + _E,
             None, ("hooks.zapier.com",), group=1, cost=1),
    # --- payments and commerce -----------------------------------------------
    Detector("shopify_access_token", SECRETS, r"\b(shpat_[0-9a-fA-F]{32})" + _E,
             None, ("myshopify.com", "shopify.com"), group=1, cost=1),
    Detector("shopify_custom_app_token", SECRETS, r"\b(shpca_[0-9a-fA-F]{32})" + _E,
             None, ("myshopify.com", "shopify.com"), group=1, cost=1),
    Detector("shopify_private_app_token", SECRETS, r"\b(shppa_[0-9a-fA-F]{32})" + _E,
             None, ("myshopify.com", "shopify.com"), group=1, cost=1),
    Detector("shopify_shared_secret", SECRETS, r"\b(shpss_[0-9a-fA-F]{32})" + _E,
             None, ("myshopify.com", "shopify.com"), group=1, cost=1),
    # `EAAA` + 60 stays apart from Meta's `EAA` tokens, which are 100+ letters and digits.
    Detector("square_access_token", SECRETS, r"\b(sq0atp-[A-Za-z0-9_\-]{22}|EAAA[A-Za-z0-9_\-]{60})" + _E,
             _random, ("squareup.com", "squareupsandbox.com"), group=1, cost=1),
    Detector("square_oauth_secret", SECRETS, r"\b(sq0csp-[A-Za-z0-9_\-]{43})" + _E,
             None, ("squareup.com", "squareupsandbox.com"), group=1, cost=1),
    Detector("braintree_access_token", SECRETS,
             r"(access_token\$(?:production|sandbox)\$[0-9a-z]{16}\$[0-9a-f]{32})(?:[^0-9a-z]|$)",
             None, ("braintreegateway.com", "braintree-api.com", "paypal.com"), group=1, cost=1),
    # Stripe's and Svix's webhook signing secrets: they verify what arrives, never go out.
    Detector("webhook_signing_secret", SECRETS, r"\b(whsec_[A-Za-z0-9+/]{32,}={0,2})" + _E64,
             None, (), group=1, cost=1),
    Detector("plaid_access_token", SECRETS, r"\b(access-(?:sandbox|development|production)-" + _UUID + ")" + _E,
             None, ("plaid.com",), group=1, cost=1),
    Detector("shippo_api_token", SECRETS, r"\b(shippo_(?:live|test)_[0-9a-fA-F]{40})" + _E,
             None, ("goshippo.com",), group=1, cost=1),
    Detector("easypost_api_key", SECRETS, r"\b(EZ[AT]K[A-Za-z0-9]{54})" + _E,
             None, ("easypost.com",), group=1, cost=1),
    Detector("duffel_api_token", SECRETS, r"\b(duffel_(?:live|test)_[A-Za-z0-9_=\-]{43})(?:[^A-Za-z0-9_=\-]|$)",
             None, ("duffel.com",), group=1, cost=1),
    Detector("flutterwave_secret_key", SECRETS, r"\b(FLWSECK(?:_TEST)?-[0-9a-f]{32}-X)" + _E,
             None, ("flutterwave.com",), group=1, cost=1),
    # --- mail, chat and social -----------------------------------------------
    Detector("mailgun_api_key", SECRETS,
             r"(?:^|[^A-Za-z0-9_\-])(key-[0-9a-f]{32}|[0-9a-f]{32}-[0-9a-f]{8}-[0-9a-f]{8})" + _E,
             None, ("mailgun.net",), group=1, cost=2),
    Detector("mailchimp_api_key", SECRETS, r"(?:^|[^A-Za-z0-9_\-])([0-9a-f]{32}-us[0-9]{1,2})" + _E,
             None, ("mailchimp.com",), group=1, cost=2),
    Detector("resend_api_key", SECRETS, r"\b(re_[A-Za-z0-9]{8}_[A-Za-z0-9]{24})" + _E,
             _has_digit, ("resend.com",), group=1, cost=2),
    Detector("brevo_api_key", SECRETS, r"\b(x(?:keysib|smtpsib)-[0-9a-f]{64}-[A-Za-z0-9]{16})" + _E,
             None, ("brevo.com", "sendinblue.com"), group=1, cost=1),
    Detector("slack_app_token", SECRETS, r"\b(xapp-[0-9]-[A-Z0-9]+-[0-9]+-[0-9a-f]{32,})" + _E,
             None, ("slack.com",), group=1, cost=1),
    Detector("slack_config_token", SECRETS,
             r"\b(xoxe\.xox[bp]-[0-9]-[A-Za-z0-9]{150,200}|xoxe-[0-9]-[A-Za-z0-9]{140,160})" + _E,
             None, ("slack.com",), group=1, cost=1),
    Detector("discord_bot_token", SECRETS,
             r"(?:^|[^A-Za-z0-9_\-.])([MNO][A-Za-z0-9_\-]{22,26}\.[A-Za-z0-9_\-]{6}\.[A-Za-z0-9_\-]{27,38})(?:[^A-Za-z0-9_\-.]|$)",
             _discord_bot_token, ("discord.com", "discordapp.com", "discord.gg"), group=1, cost=2),
    Detector("twitter_bearer_token", SECRETS, r"(?:^|[^A-Za-z0-9%+/_\-])(A{21}[A-Za-z0-9%]{80,120})(?:[^A-Za-z0-9%+/=_\-]|$)",
             _random, ("twitter.com", "x.com"), group=1, cost=2),
    Detector("facebook_access_token", SECRETS, _S64 + r"(EAA[A-Za-z0-9]{100,})" + _E64,
             _random, ("facebook.com",), group=1, cost=2),
    Detector("twilio_auth_token", SECRETS,
             r"(?i)twilio[A-Za-z_\-]{0,24}?(?:auth[_\-]?token|secret)[\"']?\s*[:=]\s*[\"']?([A-Za-z0-9]{32})(?:[^A-Za-z0-9]|$)",
             None, ("twilio.com",), group=1, cost=3),
    # --- storage -------------------------------------------------------------
    Detector("dropbox_access_token", SECRETS, r"\b(sl\.(?:u\.)?[A-Za-z0-9_\-]{130,})" + _E,
             None, ("dropboxapi.com", "dropbox.com"), group=1, cost=1),
    # --- observability, search and identity ----------------------------------
    Detector("datadog_api_key", SECRETS,
             r"(?i)(?:^|[^A-Za-z0-9])(?:dd|datadog)[_\-]?api[_\-]?key[\"']?\s*[:=]\s*[\"']?([0-9a-f]{32})(?:[^0-9a-z]|$)",
             None, ("datadoghq.com", "datadoghq.eu", "ddog-gov.com"), group=1, cost=3),
    Detector("datadog_app_key", SECRETS,
             r"(?i)(?:^|[^A-Za-z0-9])(?:dd|datadog)[_\-]?app(?:lication)?[_\-]?key[\"']?\s*[:=]\s*[\"']?([0-9a-f]{40})(?:[^0-9a-z]|$)",
             None, ("datadoghq.com", "datadoghq.eu", "ddog-gov.com"), group=1, cost=3),
    Detector("newrelic_user_api_key", SECRETS, r"\b(NRAK-[A-Z0-9]{27})" + _E,
             None, ("newrelic.com", "nr-data.net"), group=1, cost=1),
    Detector("newrelic_insights_key", SECRETS, r"\b(NRI[IQ]-[A-Za-z0-9_\-]{32})" + _E,
             None, ("newrelic.com", "nr-data.net"), group=1, cost=1),
    Detector("newrelic_license_key", SECRETS, r"\b([0-9a-f]{36}NRAL)" + _E,
             None, ("newrelic.com", "nr-data.net"), group=1, cost=2),
    Detector("sentry_org_token", SECRETS, r"\b(sntrys_eyJ[A-Za-z0-9+/]{30,}={0,2}_[A-Za-z0-9+/]{43})" + _E64,
             None, ("sentry.io",), group=1, cost=1),
    Detector("sentry_user_token", SECRETS, r"\b(sntryu_[0-9a-f]{64})" + _E,
             None, ("sentry.io",), group=1, cost=1),
    Detector("grafana_cloud_token", SECRETS, r"\b(glc_[A-Za-z0-9+/]{32,}={0,2})" + _E64,
             None, ("grafana.net", "grafana.com"), group=1, cost=1),
    Detector("grafana_service_account_token", SECRETS, r"\b(glsa_[A-Za-z0-9]{32}_[0-9a-fA-F]{8})" + _E,
             None, ("grafana.net", "grafana.com"), group=1, cost=1),
    Detector("grafana_api_key", SECRETS, r"\b(eyJrIjoi[A-Za-z0-9+/]{50,}={0,2})" + _E64,
             None, ("grafana.net", "grafana.com"), group=1, cost=1),
    Detector("dynatrace_token", SECRETS, r"\b(dt0[a-z][0-9]{2}\.[A-Z0-9]{24}\.[A-Z0-9]{64})" + _E,
             None, ("dynatrace.com",), group=1, cost=1),
    Detector("algolia_admin_key", SECRETS,
             r"(?i)(?:^|[^A-Za-z0-9])algolia[_\-]?(?:admin|write|api)[_\-]?(?:api[_\-]?)?key[\"']?\s*[:=]\s*[\"']?([0-9a-f]{32})(?:[^0-9a-z]|$)",
             None, ("algolia.net", "algolianet.com", "algolia.io", "algolia.com"), group=1, cost=3),
    Detector("okta_api_token", SECRETS,
             r"(?:SSWS\s+|(?i:okta)[A-Za-z_\-]{0,24}[\"']?\s*[:=]\s*[\"']?)(00[A-Za-z0-9_\-]{40})" + _E,
             None, ("okta.com", "oktapreview.com", "okta-emea.com"), group=1, cost=2),
    Detector("tailscale_key", SECRETS, r"\b(tskey-(?:auth|api|client|scim|webhook)-[A-Za-z0-9]{6,}-[A-Za-z0-9]{20,})" + _E,
             None, ("tailscale.com",), group=1, cost=1),
    # --- wallets and raw keys (never sent to anyone) -------------------------
    Detector("bitcoin_wif_private_key", SECRETS,
             r"(?:^|[^A-Za-z0-9])(5[HJK]" + _B58 + "{49}|[KL]" + _B58 + r"{51})(?:[^A-Za-z0-9]|$)",
             _wif_private_key, (), group=1, cost=3, checked=True),
    Detector("bip32_extended_private_key", SECRETS, r"\b([xyztuvYZUV]prv" + _B58 + r"{107})(?:[^A-Za-z0-9]|$)",
             _extended_private_key, (), group=1, cost=3, checked=True),
    Detector("nostr_private_key", SECRETS, r"\b(nsec1[02-9ac-hj-np-z]{58})(?:[^A-Za-z0-9]|$)",
             _nostr_secret_key, (), group=1, cost=2, checked=True),
    # 64 hex digits named as a private key: an Ethereum (secp256k1) or Ed25519 seed.
    Detector("hex_private_key", SECRETS,
             r"(?i)(?:^|[^A-Za-z0-9])(?:priv(?:ate)?|wallet|signer|signing)[_\-. ]?key[\"']?\s*[:=]\s*[\"']?(?:0x)?([0-9a-f]{64})(?:[^0-9a-z]|$)",
             None, (), group=1, cost=3),
)  # fmt: skip
