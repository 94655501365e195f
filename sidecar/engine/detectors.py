"""The detector table: what we look for, how it is confirmed, and whose it is.

Each detector is one RE2 pattern (linear time; all of them run as one RE2 set first),
an optional validator, and for credentials the hosts of the provider that issued them:
a provider's key sent to that provider is normal traffic; anywhere else it is a leak.
Rule shapes are our own, informed by public formats documented by each provider.

Recall first: a value with a provider's structure is a finding whether or not its
checksum holds; the checksum and the example lists only grade it (`checks.confidence`:
verified, shaped, or documented example), and the policy decides what each grade may do.
Template placeholders (`${API_KEY}`, `<your-key>`) are no value and never a finding. For
formats whose checksum is the shape (cards, IBANs, wallets, seed phrases) the validator
still decides.

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
    # Says whether a shaped value is a documented example beyond the common lists (a
    # JWT's claims, a database URL to localhost).
    example: Callable[[str], bool] | None = None
    # Credentials and financial data are graded (templates dropped, examples marked);
    # personal data that has no examples (emails, phones, addresses) is not.
    graded: bool = True
    # A checksum that grades a shaped value `verified`; a failing one leaves it `shaped`.
    checksum: Callable[[str], bool] | None = None
    # The validator is the format's own checksum: a value that passes is `verified`.
    checked: bool = False

    @property
    def label(self) -> str:
        return self.id.upper()


_GITHUB = ("github.com", "githubusercontent.com", "ghcr.io")

DETECTORS: tuple[Detector, ...] = (
    # --- cloud ---------------------------------------------------------------
    # AWS key ids by their documented prefixes, also lower-cased, with no boundary either
    # side: an attacker glues them to other text (`xAKIA...`, split fields joined).
    Detector("aws_access_key_id", SECRETS,
             r"((?:AKIA|ASIA|ABIA|ACCA|AGPA|AIDA|AROA|ANPA|ANVA)[0-9A-Z]{16}"
             r"|(?:akia|asia|abia|acca|agpa|aida|aroa|anpa|anva)[0-9a-z]{16})",
             checks.aws_key_id, ("amazonaws.com", "aws.amazon.com"), group=1),
    # CloudFront key-pair ids go with every signed URL to a distribution (not the secret).
    Detector("cloudfront_key_pair_id", SECRETS, r"\b(APKA[0-9A-Z]{16})\b", None,
             ("cloudfront.net", "amazonaws.com"), group=1, severity=0.5, cost=1),
    Detector("aws_secret_access_key", SECRETS,
             r"(?i)aws.{0,24}?(?:secret|private).{0,24}?[\"'=:\s]\s*([A-Za-z0-9/+]{40})(?:[^A-Za-z0-9/+=]|$)",
             checks.generic_secret, ("amazonaws.com",), group=1, cost=4),
    Detector("gcp_api_key", SECRETS, r"\b(AIza[0-9A-Za-z_\-]{35})(?:[^0-9A-Za-z_\-]|$)",
             None, ("googleapis.com", "google.com"), group=1),
    Detector("gcp_service_account_key", SECRETS, r"\"private_key_id\"\s*:\s*\"([0-9a-f]{40})\"",
             None, ("googleapis.com",), group=1, cost=1),
    Detector("azure_storage_key", SECRETS,
             r"AccountKey=([A-Za-z0-9+/]{86}==)", None, ("core.windows.net",), group=1, cost=1),
    # --- LLM providers -------------------------------------------------------
    Detector("openai_api_key", SECRETS,
             r"(sk-(?:proj-|svcacct-|admin-)?[A-Za-z0-9_\-]{20,}T3BlbkFJ[A-Za-z0-9_\-]{20,})",
             None, ("api.openai.com", "openai.com"), group=1),
    Detector("anthropic_api_key", SECRETS, r"(sk-ant-(?:api|admin|oat|ort)\d{2}-[A-Za-z0-9_\-]{32,120})",
             None, ("api.anthropic.com", "anthropic.com", "claude.ai"), group=1, cost=3),
    Detector("huggingface_token", SECRETS, r"(hf_[A-Za-z0-9]{34})",
             None, ("huggingface.co", "hf.co"), group=1),
    # --- source hosting & registries -----------------------------------------
    Detector("github_token", SECRETS, r"(gh[pousr]_[A-Za-z0-9]{30,251})",
             None, _GITHUB, group=1, checksum=checks.github_token),
    Detector("github_fine_grained_token", SECRETS, r"(github_pat_[A-Za-z0-9_]{82})",
             None, _GITHUB, group=1, cost=3),
    Detector("gitlab_token", SECRETS, r"(glpat-[A-Za-z0-9_\-]{20,})",
             None, ("gitlab.com",), group=1),
    Detector("npm_token", SECRETS, r"(npm_[A-Za-z0-9]{36})",
             None, ("npmjs.org", "npmjs.com"), group=1),
    Detector("pypi_token", SECRETS, r"\b(pypi-AgEIcHlwaS5vcmc[A-Za-z0-9_\-]{50,})",
             None, ("pypi.org",), group=1, cost=1),
    # --- chat & webhooks -----------------------------------------------------
    Detector("slack_token", SECRETS, r"(xox[baprs]-[0-9]{6,}-[0-9A-Za-z\-]{10,})",
             None, ("slack.com",), group=1, cost=1),
    Detector("slack_webhook", SECRETS,
             r"((?:hooks\.slack\.com)?/(?:services|workflows|triggers)/T[A-Z0-9]{6,}/[A-Z0-9]{6,}/[A-Za-z0-9]{20,})",
             None, ("hooks.slack.com",), group=1),
    Detector("discord_webhook", SECRETS,
             r"((?:discord(?:app)?\.com)?/api/webhooks/\d{15,20}/[A-Za-z0-9_\-]{60,})",
             None, ("discord.com", "discordapp.com"), group=1, cost=1),
    Detector("telegram_bot_token", SECRETS, r"(?:^|[^0-9])(\d{8,10}:AA[A-Za-z0-9_\-]{33})(?:[^A-Za-z0-9_\-]|$)",
             None, ("api.telegram.org",), group=1, cost=1),
    # Twilio: API key SIDs and account SIDs (`SK`/`AC` + 32 hex) name an account's keys.
    Detector("twilio_api_key", SECRETS, r"\b(SK[0-9a-fA-F]{32})\b", None, ("twilio.com",),
             group=1, cost=1),
    Detector("twilio_account_sid", SECRETS, r"\b(AC[0-9a-f]{32})\b", None, ("twilio.com",),
             group=1, severity=0.6, cost=1),
    # --- payments & mail -----------------------------------------------------
    Detector("stripe_key", SECRETS, r"((?:sk|rk)_(?:live|test)_[0-9a-zA-Z]{16,247})",
             None, ("api.stripe.com", "stripe.com"), group=1),
    Detector("sendgrid_key", SECRETS, r"(SG\.[A-Za-z0-9_\-]{16,32}\.[A-Za-z0-9_\-]{16,64})",
             None, ("api.sendgrid.com", "sendgrid.com", "sendgrid.net"), group=1),
    # --- private keys --------------------------------------------------------
    # The BEGIN line and what follows it: a template body (`REPLACE_ME`, `...`) is none.
    Detector("private_key", SECRETS,
             r"-{4,5} ?BEGIN[ A-Z0-9]{0,24} PRIVATE KEY(?: BLOCK)? ?-{4,5}(?:\s|\\[nr])*[^-\s\\]{0,40}",
             checks.pem_body, cost=1, checked=True),
    # A PEM body without its BEGIN line: the DER structures of private keys start the same
    # way in base64 (PKCS#1 and PKCS#8 RSA, SEC1 EC, PKCS#8 Ed25519, openssh-key-v1).
    Detector("private_key_der", SECRETS,
             r"((?:MII[A-Z][A-Za-z0-9+/]{2}IBAA[JK][A-Za-z]|MII[A-Z][A-Za-z0-9+/]{2}IBADAN|MHcCAQEE|"
             r"MC4CAQAwBQYDK2Vw|MIG[A-Za-z0-9+/]AgEAMBMGByqGSM49|b3BlbnNzaC1rZXktdjE)"
             r"[A-Za-z0-9+/]{16})", group=1, cost=1,
             checked=True),
    Detector("putty_private_key", SECRETS, r"(PuTTY-User-Key-File-\d+: )", group=1, cost=1,
             checked=True),
    Detector("age_secret_key", SECRETS, r"\b(AGE-SECRET-KEY-1[QPZRY9X8GF2TVDW0S3JN54KHCE6MUA7L]{58})\b",
             group=1, cost=1, checked=True),
    # --- generic credentials -------------------------------------------------
    Detector("jwt", SECRETS,
             r"\b(eyJ[A-Za-z0-9_\-]{8,}\.eyJ[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]{8,})",
             checks.jwt, group=1, severity=0.8, cost=4, example=checks.jwt_example),
    Detector("database_url", SECRETS,
             r"(?i)\b((?:postgres(?:ql)?|mysql|mariadb|mongodb(?:\+srv)?|rediss?|amqps?|mssql|"
             r"sqlserver|clickhouse|cockroachdb|neo4j(?:\+s)?|couchbases?|jdbc:[a-z]+|snowflake)"
             r"://[^:/\s@\"']*:[^@\s/\"']+@[^\s/\"']+)",
             checks.url_password, group=1, example=checks.local_url),
    Detector("url_credentials", SECRETS,
             r"(?i)\b((?:https?|ftps?|sftp|ssh|git|smtps?|ldaps?|smb|webdav|imaps?|pop3s?)://[^:/\s@\"']+:[^@\s/\"']+@[A-Za-z0-9.\-]+)",
             checks.url_password, group=1, severity=0.8, example=checks.local_url),
    Detector("generic_secret", SECRETS,
             r"(?i)(?:api[_\-]?key|apikey|secret(?:[_\-]?key(?:[_\-]?base)?)?|token|access[_\-]?key|"
             r"client[_\-]?secret|app[_\-]?key|fernet[_\-]?key|aes[_\-]?key|master[_\-]?key|"
             r"hmac[_\-]?key|jwt[_\-]?secret|"
             r"private[_\-]?key|auth[_\-]?key|signing[_\-]?key|encryption[_\-]?key|credentials?)"
             r"[\"']?\s*(?:=>|:=|[:=])\s*[\"']?(?:base64:)?([A-Za-z0-9_\-+/=.~!@#%^*]{16,128})",
             checks.generic_secret, group=1, severity=0.75, cost=4),
    # Keys named as keys, in hex (a hex string is a key here, not a digest).
    Detector("hex_secret_key", SECRETS,
             r"(?i)(?:secret[_\-]?key(?:[_\-]?base)?|aes[_\-]?key|encryption[_\-]?key|signing[_\-]?key|"
             r"hmac[_\-]?key|master[_\-]?key|fernet[_\-]?key)[\"']?\s*(?:=>|:=|[:=])\s*[\"']?"
             r"([0-9a-fA-F]{32,128})(?:[^0-9A-Za-z]|$)",
             checks.not_placeholder_hex, group=1, severity=0.8, cost=2),
    # Passwords are short and low-entropy: judged by the keyword and the value's shape, in
    # every config syntax (env, YAML, JSON, TOML, INI, properties, XML, `--password=`).
    Detector("password", SECRETS,
             r"(?i)(?:(?:passw(?:or)?d|passwd|passwort|passphrase|contrase[nñ]a|mot[_\- ]de[_\- ]passe|"
             r"senha|wachtwoord|(?:^|[^a-z])(?:pwd|pass|pw))[\"']?[ \t]*(?:=>|:=|[:=])"
             r"|(?:passw(?:or)?d|pwd)[\"'][ \t]*,|(?:passw(?:or)?d|pwd)[\"'][ \t]+value="
             r"|<(?:passw(?:or)?d|passwd|pwd|pass)>|--(?:passw(?:or)?d|passwd|pass|pwd)[ \t]"
             r"|\b(?:mysql|mysqldump|mysqladmin|mariadb)\b[^\n]{0,80}?\s-p|\bsshpass\s+-p\s*"
             r"|\brequirepass\s+|\s-passwd\s+"
             r"|\b(?:password|identified\s+by)\s+['\"]|(?:^|\s)-u\s+[^:\s]+:)"
             r"[ \t]*[\"']?([^\s\"'<>,;&]{6,128})",
             checks.password, group=1, severity=0.8, cost=3),
    Detector("netrc_password", SECRETS,
             r"(?i)\bmachine\s+\S+\s+login\s+\S+\s+password\s+(\S{4,128})", checks.password_loose,
             group=1, severity=0.8, cost=1),
    Detector("pgpass_password", SECRETS,
             r"(?m)^[A-Za-z0-9.\-*]+:(?:\d{2,5}|\*):[^:\s]+:[^:\s]+:([^:\s]{4,128})$",
             checks.password_loose, group=1, severity=0.8, cost=2),
    # --- personal data -------------------------------------------------------
    Detector("email", PII,
             r"\b([A-Za-z0-9._%+\-]{1,64}@[A-Za-z0-9\-]{1,63}(?:\.[A-Za-z0-9\-]{1,63})*\.[A-Za-z]{2,24})\b",
             lambda v: not v.lower().rsplit("@", 1)[1].startswith(("example.", "test.", "localhost")),
             group=1, severity=0.4, cost=1, graded=False),
    Detector("phone", PII,
             r"(?:^|[^\w+])(\+[1-9]\d{0,2}[ .\-]?\(?\d{1,4}\)?(?:[ .\-]?\d{2,4}){2,4}|"
             r"\(\d{3}\) ?\d{3}[ .\-]\d{4}|\d{3}[.\-]\d{3}[.\-]\d{4})(?:$|[^\w])",
             lambda v: 10 <= sum(c.isdigit() for c in v) <= 15, group=1, severity=0.4, graded=False),
    Detector("credit_card", FINANCIAL, r"(?:^|[^0-9A-Za-z])((?:\d[ .\-]?){12,18}\d)(?:$|[^0-9A-Za-z])",
             checks.credit_card, group=1, severity=0.7, high_risk=True, checked=True),
    Detector("us_ssn", PII,
             r"(?:^|[^\d\-.])(\d{3}-\d{2}-\d{4}|\d{3} \d{2} \d{4}|\d{3}\.\d{2}\.\d{4})(?:$|[^\d\-.]|\.(?:$|\D))",
             checks.us_ssn, group=1, severity=0.7, high_risk=True, cost=1, graded=False),
    # Nine digits named as an SSN (`SSN: 415476584`, `social security number 4154...`).
    Detector("us_ssn_named", PII,
             r"(?i)\b(?:ssn|social\s+security(?:\s+(?:number|no\.?))?)\W{0,3}(\d{9})\b",
             checks.ssn_digits, group=1, severity=0.7, high_risk=True, cost=1, graded=False),
    Detector("iban", FINANCIAL, r"(?i)\b([A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,4})?)\b",
             checks.iban, group=1, severity=0.7, high_risk=True, cost=3, checked=True),
    Detector("bank_account", FINANCIAL,
             r"(?i)(?:routing|aba|rtn)[\w ]{0,12}?[\"']?\s*[:=#]?\s*[\"']?(\d{9})(?:\D|$)",
             checks.aba_routing, group=1, severity=0.7, high_risk=True, cost=2, checked=True),
    Detector("ip_address", PII,
             r"(?:^|[^\d.])((?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(?:\.(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3})(?:$|[^\d.])",
             lambda v: v not in ("0.0.0.0", "127.0.0.1", "255.255.255.255"), group=1, severity=0.2,
             cost=1, graded=False),
    Detector("bitcoin_address", FINANCIAL, r"\b([13][a-km-zA-HJ-NP-Z1-9]{25,34})\b",
             checks.base58check, group=1, severity=0.5, cost=3, checked=True),
    Detector("bitcoin_segwit_address", FINANCIAL, r"\b(bc1[ac-hj-np-z02-9]{11,71})\b",
             checks.bech32, group=1, severity=0.5, cost=5, checked=True),
    Detector("ethereum_address", FINANCIAL, r"\b(0x[a-fA-F0-9]{40})\b",
             checks.eth_address, group=1, severity=0.5, cost=1, graded=False),
)  # fmt: skip

# The provider families (`sidecar.engine.providers`) build on `Detector` above.
from sidecar.engine.providers import PROVIDER_DETECTORS  # noqa: E402

DETECTORS = DETECTORS + PROVIDER_DETECTORS
BY_ID = {d.id: d for d in DETECTORS}
# A run of list words costs `cost` units, and each checksum tried on it as much again.
SEED_PHRASE = Detector(
    "crypto_seed_phrase", SECRETS, "", checks.seed_phrase, severity=0.95, cost=8, checked=True
)
