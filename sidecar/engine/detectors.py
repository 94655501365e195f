"""The detector table: what we look for, how it is confirmed, and whose it is.

Each detector is one RE2 pattern (linear time; all of them run as one RE2 set first),
an optional validator, and for credentials the hosts of the provider that issued them:
a provider's key sent to that provider is normal traffic; anywhere else it is a leak.
Rule shapes are our own, informed by public formats documented by each provider.

`cost` is what one candidate (a match of the pattern) takes from the scan's budget
(`sidecar.engine.budget`): a unit is about 3 µs of work, so a detector whose pattern or
check is slow costs more, and a body made of its near-matches stops sooner.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from sidecar.engine import checks

SECRETS = "SECRETS"
PII = "PII"
FINANCIAL = "FINANCIAL"


@dataclass(frozen=True, slots=True)
class Detector:
    id: str
    data_class: str
    pattern: str
    validator: Callable[[str], bool] | None = None
    providers: tuple[str, ...] = ()
    group: int = 0  # the capture group holding the value (0 = whole match)
    severity: float = 0.9
    high_risk: bool = False  # personal data that the default policy redacts
    cost: int = 2  # budget units per candidate: most checks take a few µs (see above)

    @property
    def label(self) -> str:
        return self.id.upper()


def _ok(value: str) -> bool:
    return checks.not_placeholder(value)


DETECTORS: tuple[Detector, ...] = (
    # --- cloud ---------------------------------------------------------------
    Detector("aws_access_key_id", SECRETS, r"\b((?:AKIA|ASIA|ABIA|ACCA)[0-9A-Z]{16})\b",
             _ok, ("amazonaws.com", "aws.amazon.com"), group=1),
    Detector("aws_secret_access_key", SECRETS,
             r"(?i)aws.{0,24}?(?:secret|private).{0,24}?[\"'=:\s]\s*([A-Za-z0-9/+]{40})(?:[^A-Za-z0-9/+=]|$)",
             checks.generic_secret, ("amazonaws.com",), group=1, cost=4),
    Detector("gcp_api_key", SECRETS, r"\b(AIza[0-9A-Za-z_\-]{35})(?:[^0-9A-Za-z_\-]|$)",
             _ok, ("googleapis.com", "google.com"), group=1),
    Detector("gcp_service_account_key", SECRETS, r"\"private_key_id\"\s*:\s*\"([0-9a-f]{40})\"",
             None, ("googleapis.com",), group=1, cost=1),
    Detector("azure_storage_key", SECRETS,
             r"AccountKey=([A-Za-z0-9+/]{86}==)", None, ("core.windows.net",), group=1, cost=1),
    # --- LLM providers -------------------------------------------------------
    Detector("openai_api_key", SECRETS,
             r"\b(sk-(?:proj-|svcacct-|admin-)?[A-Za-z0-9_\-]{20,}T3BlbkFJ[A-Za-z0-9_\-]{20,})",
             _ok, ("api.openai.com", "openai.com"), group=1),
    Detector("anthropic_api_key", SECRETS, r"\b(sk-ant-(?:api|admin)\d{2}-[A-Za-z0-9_\-]{80,120})",
             _ok, ("api.anthropic.com", "anthropic.com"), group=1, cost=3),
    Detector("huggingface_token", SECRETS, r"\b(hf_[A-Za-z0-9]{34})\b",
             _ok, ("huggingface.co",), group=1),
    # --- source hosting & registries -----------------------------------------
    Detector("github_token", SECRETS, r"\b(gh[pousr]_[A-Za-z0-9]{36})\b",
             checks.github_token, ("github.com", "githubusercontent.com"), group=1),
    Detector("github_fine_grained_token", SECRETS, r"\b(github_pat_[A-Za-z0-9_]{82})\b",
             _ok, ("github.com",), group=1, cost=3),
    Detector("gitlab_token", SECRETS, r"\b(glpat-[A-Za-z0-9_\-]{20})\b",
             _ok, ("gitlab.com",), group=1),
    Detector("npm_token", SECRETS, r"\b(npm_[A-Za-z0-9]{36})\b",
             _ok, ("npmjs.org", "npmjs.com"), group=1),
    Detector("pypi_token", SECRETS, r"\b(pypi-AgEIcHlwaS5vcmc[A-Za-z0-9_\-]{50,})",
             None, ("pypi.org",), group=1, cost=1),
    # --- chat & webhooks -----------------------------------------------------
    Detector("slack_token", SECRETS, r"\b(xox[baprs]-[0-9]{6,}-[0-9A-Za-z\-]{10,})",
             _ok, ("slack.com",), group=1, cost=1),
    Detector("slack_webhook", SECRETS,
             r"(hooks\.slack\.com/services/T[A-Z0-9]{6,}/B[A-Z0-9]{6,}/[A-Za-z0-9]{20,})",
             _ok, ("hooks.slack.com",), group=1),
    Detector("discord_webhook", SECRETS,
             r"(discord(?:app)?\.com/api/webhooks/\d{15,20}/[A-Za-z0-9_\-]{60,})",
             _ok, ("discord.com", "discordapp.com"), group=1, cost=1),
    Detector("telegram_bot_token", SECRETS, r"\b(\d{8,10}:AA[A-Za-z0-9_\-]{33})\b",
             _ok, ("api.telegram.org",), group=1, cost=1),
    # --- payments & mail -----------------------------------------------------
    Detector("stripe_key", SECRETS, r"\b((?:sk|rk)_(?:live|test)_[0-9a-zA-Z]{24,99})\b",
             _ok, ("api.stripe.com", "stripe.com"), group=1),
    Detector("sendgrid_key", SECRETS, r"\b(SG\.[A-Za-z0-9_\-]{22}\.[A-Za-z0-9_\-]{43})\b",
             _ok, ("api.sendgrid.com", "sendgrid.com"), group=1),
    # --- generic credentials -------------------------------------------------
    Detector("private_key", SECRETS,
             r"-----BEGIN (?:RSA |EC |DSA |OPENSSH |PGP |ENCRYPTED )?PRIVATE KEY(?: BLOCK)?-----", cost=1),
    Detector("jwt", SECRETS,
             r"\b(eyJ[A-Za-z0-9_\-]{8,}\.eyJ[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]{8,})",
             checks.jwt, group=1, severity=0.8, cost=4),
    Detector("database_url", SECRETS,
             r"(?i)\b((?:postgres(?:ql)?|mysql|mariadb|mongodb(?:\+srv)?|rediss?|amqps?|mssql)"
             r"://[^:/\s@\"']+:[^@\s/\"']+@[^\s/\"']+)",
             checks.url_password, group=1),
    Detector("url_credentials", SECRETS, r"\b(https?://[^:/\s@\"']+:[^@\s/\"']+@[A-Za-z0-9.\-]+)",
             checks.url_password, group=1, severity=0.8),
    Detector("generic_secret", SECRETS,
             r"(?i)(?:api[_\-]?key|apikey|secret|token|passw(?:or)?d|pwd|access[_\-]?key|"
             r"client[_\-]?secret|private[_\-]?key|auth[_\-]?key)[\"']?\s*[:=]\s*[\"']?"
             r"([A-Za-z0-9_\-+/=.~]{16,128})",
             checks.generic_secret, group=1, severity=0.75, cost=4),
    # --- personal data -------------------------------------------------------
    Detector("email", PII,
             r"\b([A-Za-z0-9._%+\-]{1,64}@[A-Za-z0-9\-]{1,63}(?:\.[A-Za-z0-9\-]{1,63})*\.[A-Za-z]{2,24})\b",
             lambda v: not v.lower().rsplit("@", 1)[1].startswith(("example.", "test.", "localhost")),
             group=1, severity=0.4, cost=1),
    Detector("phone", PII,
             r"(?:^|[^\w+])(\+[1-9]\d{0,2}[ .\-]?\(?\d{1,4}\)?(?:[ .\-]?\d{2,4}){2,4}|"
             r"\(\d{3}\) ?\d{3}[ .\-]\d{4}|\d{3}[.\-]\d{3}[.\-]\d{4})(?:$|[^\w])",
             lambda v: 10 <= sum(c.isdigit() for c in v) <= 15, group=1, severity=0.4),
    Detector("credit_card", FINANCIAL, r"(?:^|[^\d])((?:\d[ \-]?){12,18}\d)(?:$|[^\d])",
             checks.credit_card, group=1, severity=0.7, high_risk=True),
    Detector("us_ssn", PII, r"(?:^|[^\d\-])(\d{3}-\d{2}-\d{4})(?:$|[^\d\-])",
             checks.us_ssn, group=1, severity=0.7, high_risk=True, cost=1),
    Detector("iban", FINANCIAL, r"\b([A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,4})?)\b",
             checks.iban, group=1, severity=0.7, high_risk=True, cost=3),
    Detector("ip_address", PII,
             r"(?:^|[^\d.])((?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(?:\.(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3})(?:$|[^\d.])",
             lambda v: v not in ("0.0.0.0", "127.0.0.1", "255.255.255.255"), group=1, severity=0.2, cost=1),
    Detector("bitcoin_address", FINANCIAL, r"\b([13][a-km-zA-HJ-NP-Z1-9]{25,34})\b",
             checks.base58check, group=1, severity=0.5, cost=3),
    Detector("bitcoin_segwit_address", FINANCIAL, r"\b(bc1[ac-hj-np-z02-9]{11,71})\b",
             checks.bech32, group=1, severity=0.5, cost=5),
    Detector("ethereum_address", FINANCIAL, r"\b(0x[a-fA-F0-9]{40})\b",
             checks.eth_address, group=1, severity=0.5, cost=1),
)  # fmt: skip

BY_ID = {d.id: d for d in DETECTORS}
HIGH_RISK_KINDS = frozenset(d.id for d in DETECTORS if d.high_risk)
# A run of list words costs `cost` units, and each checksum tried on it as much again.
SEED_PHRASE = Detector("crypto_seed_phrase", SECRETS, "", checks.seed_phrase, severity=0.95, cost=8)
