"""Our labelled detection corpus, generated to valid formats (seeded, so deterministic).

Positives are values the detector must find; negatives are near misses it must not:
wrong checksums, documented example keys, placeholders, UUIDs and hashes, look-alikes.
Nothing here is copied from another project's fixtures. Scored per detector by
`python -m bench.detection_report`; the unit and end-to-end tests use it too.
"""

# Tables of patterns read better one entry per line, however long.

from __future__ import annotations

import base64
import hashlib
import json
import random
import string
import zlib
from collections.abc import Callable
from dataclasses import dataclass

from mnemonic import Mnemonic

from bench.corpora import base62

ALNUM = string.ascii_letters + string.digits
B58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
BECH32 = "qpzry9x8gf2tvdw0s3jn54khce6mua7l"
N = 12  # samples per detector and label


@dataclass(frozen=True)
class Sample:
    detector: str
    text: str  # the request text the value is embedded in
    positive: bool
    note: str = ""
    grade: str | None = None  # the confidence a positive must get (None: any)


def _r(rng: random.Random, n: int, alphabet: str = ALNUM) -> str:
    return "".join(rng.choice(alphabet) for _ in range(n))


def github(rng: random.Random, valid: bool = True) -> str:
    body = _r(rng, 30)
    check = base62(zlib.crc32(body.encode()), 6)
    if not valid:
        check = check[:-1] + ("A" if check[-1] != "A" else "B")
    return f"gh{rng.choice('pousr')}_{body}{check}"


def luhn_digit(partial: str) -> str:
    total = 0
    for i, ch in enumerate(reversed(partial)):
        d = int(ch)
        if i % 2 == 0:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return str((10 - total % 10) % 10)


def card(rng: random.Random, valid: bool = True) -> str:
    prefix, length = rng.choice([("4", 16), ("51", 16), ("55", 16), ("2221", 16), ("34", 15),
                                 ("37", 15), ("6011", 16), ("65", 16)])  # fmt: skip
    partial = prefix + _r(rng, length - len(prefix) - 1, string.digits)
    digit = luhn_digit(partial)
    if not valid:
        digit = str((int(digit) + 1 + rng.randrange(8)) % 10)
    number = partial + digit
    if rng.random() < 0.5:
        return " ".join(number[i : i + 4] for i in range(0, len(number), 4))
    return number


def iban(rng: random.Random, valid: bool = True) -> str:
    country, bban = rng.choice([
        ("DE", _r(rng, 18, string.digits)),
        ("GB", _r(rng, 4, string.ascii_uppercase) + _r(rng, 14, string.digits)),
        ("FR", _r(rng, 23, string.digits)),
        ("NL", _r(rng, 4, string.ascii_uppercase) + _r(rng, 10, string.digits)),
    ])  # fmt: skip
    number = int("".join(str(int(c, 36)) for c in bban + country + "00"))
    check = 98 - number % 97
    if not valid:
        check = (check + 1 + rng.randrange(90)) % 97 + 2
    value = f"{country}{check:02d}{bban}"
    if rng.random() < 0.5:
        return " ".join(value[i : i + 4] for i in range(0, len(value), 4))
    return value


def ssn(rng: random.Random) -> str:
    area = rng.choice([a for a in range(1, 900) if a != 666])
    return f"{area:03d}-{rng.randrange(1, 100):02d}-{rng.randrange(1, 10000):04d}"


def btc_legacy(rng: random.Random, valid: bool = True) -> str:
    payload = bytes([0]) + rng.randbytes(20)
    raw = payload + hashlib.sha256(hashlib.sha256(payload).digest()).digest()[:4]
    n = int.from_bytes(raw, "big")
    out = ""
    while n:
        n, r = divmod(n, 58)
        out = B58[r] + out
    out = "1" * (len(raw) - len(raw.lstrip(b"\0"))) + out
    if not valid:
        i = rng.randrange(5, len(out))
        out = out[:i] + ("2" if out[i] != "2" else "3") + out[i + 1 :]
    return out


def _bech32_checksum(hrp: str, data: list[int]) -> list[int]:
    values = [ord(c) >> 5 for c in hrp] + [0] + [ord(c) & 31 for c in hrp] + data
    gen = (0x3B6A57B2, 0x26508E6D, 0x1EA119FA, 0x3D4233DD, 0x2A1462B3)
    chk = 1
    for v in [*values, 0, 0, 0, 0, 0, 0]:
        top = chk >> 25
        chk = (chk & 0x1FFFFFF) << 5 ^ v
        for i in range(5):
            chk ^= gen[i] if (top >> i) & 1 else 0
    polymod = chk ^ 1
    return [(polymod >> 5 * (5 - i)) & 31 for i in range(6)]


def btc_segwit(rng: random.Random, valid: bool = True) -> str:
    data = [0] + [rng.randrange(32) for _ in range(32)]
    checksum = _bech32_checksum("bc", data)
    if not valid:
        checksum[0] ^= 1
    return "bc1" + "".join(BECH32[d] for d in data + checksum)


def jwt(rng: random.Random, valid: bool = True) -> str:
    def enc(doc: object) -> str:
        return base64.urlsafe_b64encode(json.dumps(doc).encode()).rstrip(b"=").decode()

    header = enc({"alg": rng.choice(["HS256", "RS256"]), "typ": "JWT"})
    payload = enc({"sub": _r(rng, 8), "iat": rng.randrange(1_600_000_000, 1_800_000_000)})
    if not valid:
        payload = "eyJ" + _r(rng, 30)  # looks like base64 JSON, is not
    return f"{header}.{payload}.{_r(rng, 43, ALNUM + '-_')}"


def seed(rng: random.Random, valid: bool = True) -> str:
    m = Mnemonic("english")
    if valid:
        return m.to_mnemonic(rng.randbytes(16 if rng.random() < 0.5 else 32))
    while True:
        phrase = " ".join(rng.choice(m.wordlist) for _ in range(12))
        if not m.check(phrase):
            return phrase


def _pos(
    detector: str, make: Callable[[random.Random], str], wrap: str = "{v}"
) -> Callable[[random.Random], list[Sample]]:
    return lambda rng: [Sample(detector, wrap.format(v=make(rng)), True) for _ in range(N)]


def _ex(detector: str, values: list[str] | Callable[[random.Random], str], grade: str,
        wrap: str = "{v}") -> Callable[[random.Random], list[Sample]]:  # fmt: skip
    """Positives that must be graded `grade`: documented examples, bad checksums."""

    def build(rng: random.Random) -> list[Sample]:
        items = values if isinstance(values, list) else [values(rng) for _ in range(N)]
        return [Sample(detector, wrap.format(v=v), True, grade, grade) for v in items]

    return build


def _neg(detector: str, values: list[str] | Callable[[random.Random], str], note: str,
         wrap: str = "{v}") -> Callable[[random.Random], list[Sample]]:  # fmt: skip
    def build(rng: random.Random) -> list[Sample]:
        items = values if isinstance(values, list) else [values(rng) for _ in range(N)]
        return [Sample(detector, wrap.format(v=v), False, note) for v in items]

    return build


B64 = string.ascii_letters + string.digits + "+/"
SAY = "please use {v} for the deploy"

BUILDERS: list[Callable[[random.Random], list[Sample]]] = [
    _pos("aws_access_key_id", lambda r: "AKIA" + _r(r, 16, string.ascii_uppercase + "234567"), SAY),
    _ex("aws_access_key_id", ["AKIAIOSFODNN7EXAMPLE", "aws_key=AKIAI44QH8DHBEXAMPLE"], "example"),
    _ex("aws_access_key_id", lambda r: "akia" + _r(r, 15, string.ascii_lowercase) + "7", "shaped", SAY),
    _neg("aws_access_key_id", ["AKIA1234", "akiaabcdefghijklmnop"], "short/no digit"),
    _pos("aws_secret_access_key", lambda r: _r(r, 40, B64), "aws_secret_access_key = {v}"),
    _ex("aws_secret_access_key", ["wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"], "example",
        "aws_secret_access_key = {v}"),
    _pos("gcp_api_key", lambda r: "AIza" + _r(r, 35, ALNUM + "-_"), SAY),
    _neg("gcp_api_key", lambda r: "AIza" + _r(r, 20), "too short", SAY),
    _pos("gcp_service_account_key", lambda r: _r(r, 40, "0123456789abcdef"),
         '{{"type": "service_account", "private_key_id": "{v}"}}'),
    _pos("azure_storage_key", lambda r: _r(r, 86, B64) + "==",
         "DefaultEndpointsProtocol=https;AccountName=acct;AccountKey={v};EndpointSuffix=core.windows.net"),
    _pos("openai_api_key", lambda r: f"sk-proj-{_r(r, 40, ALNUM + '-_')}T3BlbkFJ{_r(r, 40, ALNUM + '-_')}", SAY),
    _neg("openai_api_key", ["sk-your-openai-key-here", "sk-1234", "sk-proj-XXXXXXXXXXXXXXXXXXXXXXXX"], "placeholder", SAY),
    _pos("anthropic_api_key", lambda r: f"sk-ant-api03-{_r(r, 93, ALNUM + '-_')}AA", SAY),
    _neg("anthropic_api_key", ["sk-ant-api03-xxxxxxxx", "sk-ant-your-key"], "placeholder", SAY),
    _pos("huggingface_token", lambda r: "hf_" + _r(r, 34), SAY),
    _neg("huggingface_token", ["hf_hub_download", "hf_transfer_enabled"], "identifiers", SAY),
    _pos("github_token", github, SAY),
    _ex("github_token", lambda r: github(r, valid=False), "shaped", SAY),
    _ex("github_token", ["ghp_ABCDEFGHIJKLMNOPQRSTUVWXYZabcdef01"], "example", SAY),
    _neg("github_token", ["ghp_xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx", "ghp_<your-token-here>"], "template", SAY),
    _pos("github_fine_grained_token", lambda r: f"github_pat_{_r(r, 22)}_{_r(r, 59)}", SAY),
    _pos("gitlab_token", lambda r: "glpat-" + _r(r, 20, ALNUM + "-_"), SAY),
    _neg("gitlab_token", ["glpat-xxxxxxxxxxxxxxxxxxxx", "glpat-<your-token>"], "placeholder", SAY),
    _pos("npm_token", lambda r: "npm_" + _r(r, 36), "//registry.npmjs.org/:_authToken={v}"),
    _neg("npm_token", ["npm_config_cache", "npm_package_version"], "env names", SAY),
    _pos("pypi_token", lambda r: "pypi-AgEIcHlwaS5vcmc" + _r(r, 60, ALNUM + "-_"), SAY),
    _pos("slack_token", lambda r: f"xoxb-{_r(r, 12, string.digits)}-{_r(r, 13, string.digits)}-{_r(r, 24)}", SAY),
    _neg("slack_token", ["xoxb-your-token", "xoxb-123"], "placeholder", SAY),
    _pos("slack_webhook", lambda r: f"https://hooks.slack.com/services/T{_r(r, 8, string.ascii_uppercase + string.digits)}/B{_r(r, 8, string.ascii_uppercase + string.digits)}/{_r(r, 24)}", "post to {v}"),
    _neg("slack_webhook", ["https://hooks.slack.com/services/T00000000/B00000000/XXXXXXXXXXXXXXXXXXXXXXXX"], "docs example", "post to {v}"),
    _pos("discord_webhook", lambda r: f"https://discord.com/api/webhooks/{_r(r, 18, string.digits)}/{_r(r, 68, ALNUM + '-_')}", "post to {v}"),
    _pos("telegram_bot_token", lambda r: f"{_r(r, 9, string.digits)}:AA{_r(r, 33, ALNUM + '-_')}", SAY),
    _pos("twilio_api_key", lambda r: "SK" + _r(r, 32, "0123456789abcdef"), SAY),
    _pos("twilio_account_sid", lambda r: "AC" + _r(r, 32, "0123456789abcdef"), SAY),
    _neg("twilio_account_sid", ["ACCOUNT_SID_GOES_HERE_0123456789ab", "ac" + "0" * 32], "shape"),
    _pos("stripe_key", lambda r: f"sk_live_{_r(r, 30)}", SAY),
    _neg("stripe_key", lambda r: f"pk_live_{_r(r, 30)}", "publishable key", SAY),
    _pos("sendgrid_key", lambda r: f"SG.{_r(r, 22, ALNUM + '-_')}.{_r(r, 43, ALNUM + '-_')}", SAY),
    _pos("private_key", lambda r: f"-----BEGIN {r.choice(['RSA ', 'EC ', 'OPENSSH ', ''])}PRIVATE KEY-----\nMII{_r(r, 60, B64)}"),
    _neg("private_key", ["-----BEGIN PUBLIC KEY-----\nMIIBIjAN", "-----BEGIN CERTIFICATE-----\nMIID"], "public material"),
    _pos("jwt", jwt, "Authorization token {v}"),
    _neg("jwt", lambda r: jwt(r, valid=False), "payload is not JSON", "token {v}"),
    _pos("database_url", lambda r: f"postgres://app:{_r(r, 14)}@db{r.randrange(9)}.corp.net:5432/app", "DATABASE_URL={v}"),
    _neg("database_url", ["postgres://user:password@localhost/db", "mysql://root:${DB_PASSWORD}@db/app",
                          "postgres://localhost:5432/app"], "template/no password", "DATABASE_URL={v}"),
    _pos("url_credentials", lambda r: f"https://deploy:{_r(r, 16)}@git.corp.net/repo.git", "clone {v}"),
    _pos("generic_secret", lambda r: _r(r, 24), 'api_key = "{v}"'),
    _pos("generic_secret", lambda r: _r(r, 32, ALNUM + "-_"), '{{"client_secret": "{v}"}}'),
    _neg("generic_secret", ["YOUR_API_KEY_HERE", "550e8400-e29b-41d4-a716-446655440000",
                            "5f4dcc3b5aa765d61d8327deb882cf99", "passwordpassword", "${API_TOKEN}"],
         "placeholder/uuid/hash", 'api_key = "{v}"'),
    _pos("private_key_der", lambda r: "MIIEvQIBADANBgkqhkiG9w0BAQEFAASC" + _r(r, 40, B64), "key: {v}"),
    _pos("private_key_der", lambda r: "MIIEowIBAAKCAQEA" + _r(r, 40, B64), "{v}"),
    _neg("private_key_der", ["MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA", "MIIDdzCCAl+gAwIBAgIEbWlF"], "public key/cert"),
    _pos("putty_private_key", lambda r: f"PuTTY-User-Key-File-3: ssh-ed25519\nEncryption: none\nComment: {_r(r, 8)}"),
    _pos("age_secret_key", lambda r: "AGE-SECRET-KEY-1" + _r(r, 58, BECH32.upper()), "{v}"),
    _pos("password", lambda r: _r(r, 10) + "!" + _r(r, 3, string.digits), "db:\n  password: {v}\n"),
    _pos("password", lambda r: _r(r, 8) + "#2", "DB_PASSWORD={v}"),
    _pos("password", lambda r: _r(r, 8) + "$9", "<password>{v}</password>"),
    _pos("password", lambda r: _r(r, 8) + "-7", "mysql --password {v} app"),
    _pos("password", lambda r: _r(r, 9) + "1", '{{"password": "{v}"}}'),
    _neg("password", ["required", "${DB_PASSWORD}", "changeme", "os.environ['PW']", "********", "/home/user",
                      "getPassword", "2026-01-01"], "words/references/templates", "password: {v}"),
    _pos("netrc_password", lambda r: _r(r, 12), "machine api.corp.io login deploy password {v}"),
    _pos("pgpass_password", lambda r: _r(r, 12), "db.corp.io:5432:app:admin:{v}"),
    _pos("us_ssn_named", lambda r: ssn(r).replace("-", ""), "SSN: {v}"),
    _pos("hex_secret_key", lambda r: _r(r, 64, "0123456789abcdef"), "secret_key_base: {v}"),
    _pos("cloudfront_key_pair_id", lambda r: "APKA" + _r(r, 16, string.ascii_uppercase + string.digits), "Key-Pair-Id={v}"),
    _pos("bank_account", lambda r: r.choice(["021000021", "011000015", "121000358"]), "routing number: {v}"),
    _neg("bank_account", ["123456789", "000000000"], "checksum fails", "routing number: {v}"),
    _pos("email", lambda r: f"{_r(r, 6, string.ascii_lowercase)}.{_r(r, 5, string.ascii_lowercase)}@{r.choice(['gmail.com', 'corp.io', 'acme.co.uk'])}", "contact {v} today"),
    _neg("email", ["user@example.com", "a@b", "name@localhost", "x@test.com"], "example domains", "contact {v} today"),
    _pos("phone", lambda r: r.choice([f"+1 415 {_r(r, 3, string.digits)} {_r(r, 4, string.digits)}",
                                      f"(212) {_r(r, 3, string.digits)}-{_r(r, 4, string.digits)}",
                                      f"+44 20 {_r(r, 4, string.digits)} {_r(r, 4, string.digits)}"]), "call {v} now"),
    _neg("phone", ["2024-01-15", "v1.2.3", "12345", "3.14159", "10:30:45"], "dates/versions", "call {v} now"),
    _pos("credit_card", card, "card {v} exp 12/29"),
    _neg("credit_card", lambda r: card(r, valid=False), "Luhn fails", "card {v} exp 12/29"),
    _ex("credit_card", ["4111 1111 1111 1111", "4242-4242-4242-4242", "378282246310005"], "example", "card {v}"),
    _neg("credit_card", ["0000 0000 0000 0000", "1234 5678 9012 3456"], "dummy numbers", "card {v}"),
    _pos("us_ssn", ssn, "SSN {v}"),
    _neg("us_ssn", ["000-12-3456", "666-12-3456", "912-34-5678", "123-45-6789", "123-00-4567", "078-05-1120"], "invalid/advertising", "SSN {v}"),
    _pos("iban", iban, "IBAN {v}"),
    _neg("iban", lambda r: iban(r, valid=False), "mod-97 fails", "IBAN {v}"),
    _pos("ip_address", lambda r: f"{r.randrange(11, 223)}.{r.randrange(256)}.{r.randrange(256)}.{r.randrange(1, 255)}", "client ip {v} seen"),
    _neg("ip_address", ["1.2.3", "999.1.1.1", "v1.2.3.4.5", "0.0.0.0"], "not addresses", "client ip {v} seen"),
    _pos("bitcoin_address", btc_legacy, "send to {v}"),
    _neg("bitcoin_address", lambda r: btc_legacy(r, valid=False), "Base58Check fails", "send to {v}"),
    _pos("bitcoin_segwit_address", btc_segwit, "send to {v}"),
    _neg("bitcoin_segwit_address", lambda r: btc_segwit(r, valid=False), "Bech32 fails", "send to {v}"),
    _pos("ethereum_address", lambda r: "0x" + _r(r, 40, "0123456789abcdef"), "send to {v}"),
    _neg("ethereum_address", ["0x0000000000000000000000000000000000000000"], "null address", "send to {v}"),
    _pos("crypto_seed_phrase", seed, "my wallet words: {v}"),
    _neg("crypto_seed_phrase", lambda r: seed(r, valid=False), "checksum fails", "my wallet words: {v}"),
    _neg("crypto_seed_phrase", ["the quick brown fox jumps over the lazy dog while the cat sleeps on the warm mat"], "prose"),
]  # fmt: skip


def corpus(seed_value: int = 20261123) -> list[Sample]:
    rng = random.Random(seed_value)
    return [s for build in BUILDERS for s in build(rng)]
