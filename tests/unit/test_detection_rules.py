"""The engine's judgement rules one by one: graded confidence and the issuer table, JWT
audiences, issuer by use, decoders and text folding, hostnames, SSRF notations, bodies.

The end-to-end corpora (`tests/e2e/test_detection_corpus.py`) measure the same rules on
realistic traffic; these pin each rule to the case it exists for.
"""

from __future__ import annotations

import base64
import gzip
import io
import json
import random
import tarfile
import zipfile
from urllib.parse import quote

import pytest

from bench.corpora.generated import github
from sidecar.engine import Engine, checks
from sidecar.engine.decisions import Decision
from sidecar.engine.destinations import dns_exfiltration, registrable_domain, ssrf
from sidecar.engine.matcher import Matcher
from sidecar.engine.policy_file import default_policy
from sidecar.judge.bodies import BodyUndecodable, body_for_scan

JSON = {"Content-Type": "application/json"}
FORM = {"Content-Type": "application/x-www-form-urlencoded"}
AWS_EXAMPLE = "AKIAIOSFODNN7EXAMPLE"
AWS_LIVE = "AKIAZ3MHSPKQ7WXYT4RN"
GOCSPX = "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"


@pytest.fixture
def engine() -> Engine:
    return Engine(default_policy())


def _jwt(claims: dict[str, object]) -> str:
    def part(doc: dict[str, object]) -> str:
        return base64.urlsafe_b64encode(json.dumps(doc).encode()).decode().rstrip("=")

    return f"{part({'alg': 'RS256', 'typ': 'JWT'})}.{part(claims)}.c2lnbmF0dXJlLWJ5dGVz"


def _b64_layers(text: str, layers: int) -> str:
    data = text.encode()
    for _ in range(layers):
        data = base64.b64encode(data)
    return data.decode()


# --- graded confidence and the default table ----------------------------------------


@pytest.mark.parametrize(
    ("value", "grade"),
    [
        (AWS_EXAMPLE, "example"),
        (AWS_LIVE, "shaped"),
        ("ghp_ABCDEFGHIJKLMNOPQRSTUVWXYZabcdef01", "example"),
        ("4111111111111111", "example"),
        ("4000002760003184", "example"),
    ],
)
def test_shaped_values_are_graded_not_dropped(value, grade):
    grades = {hit.confidence for hit in Matcher().find(f"value {value} end")}
    assert grades == {grade}


@pytest.mark.parametrize("value", ["${AWS_KEY}", "<your-api-key>", "your-api-key-here", "xxxx"])
def test_templates_are_no_finding(engine, value):
    v = engine.decide("POST", "https://collect.example.net/", JSON, {"api_key": value * 3})
    assert v.findings == []


def test_an_example_key_to_an_llm_is_flagged_and_allowed(engine):
    body = {"messages": [{"role": "user", "content": f"why is {AWS_EXAMPLE} rejected?"}]}
    v = engine.decide("POST", "https://api.openai.com/v1/chat/completions", JSON, body)
    assert v.decision is Decision.ALLOW
    assert v.reason_codes == ["EXAMPLE_CREDENTIAL"]


def test_an_example_key_to_anywhere_else_is_denied(engine):
    v = engine.decide("GET", f"https://collect.example.net/?k={AWS_EXAMPLE}", {}, None)
    assert v.decision is Decision.DENY
    assert {"EXAMPLE_CREDENTIAL", "SECRET_EXFILTRATION"} <= set(v.reason_codes)


def test_a_live_key_to_a_recognised_service_is_denied(engine):
    body = {"body": f"deploy with {AWS_LIVE}"}
    v = engine.decide("POST", "https://api.github.com/repos/o/r/issues", JSON, body)
    assert v.decision is Decision.DENY


def test_a_test_card_to_a_code_host_is_allowed_and_redacted_elsewhere(engine):
    text = {"description": "use 4242 4242 4242 4242 in test mode"}
    v = engine.decide("POST", "https://api.github.com/repos/o/r/issues", JSON, text)
    assert (v.decision, v.reason_codes) == (Decision.ALLOW, ["EXAMPLE_DATA"])
    v = engine.decide("POST", "https://collect.example.net/", JSON, text)
    assert v.decision is Decision.SANITIZE


def test_an_example_read_in_a_response_is_not_remembered(engine):
    engine.observe_response("docs.aws.amazon.com", f"aws_access_key_id = {AWS_EXAMPLE}")
    body = {"messages": [{"role": "user", "content": f"why is {AWS_EXAMPLE} rejected?"}]}
    v = engine.decide("POST", "https://api.openai.com/v1/chat/completions", JSON, body)
    assert "READ_THEN_WRITE" not in v.reason_codes
    engine.observe_response("vault.corp.io", f"key {AWS_LIVE}")
    v = engine.decide("POST", "https://api.openai.com/v1/chat/completions", JSON, {"t": AWS_LIVE})
    assert v.decision is Decision.DENY


# --- issuers ---------------------------------------------------------------------------


def test_a_google_client_secret_to_googles_token_endpoint_is_its_own(engine):
    body = f"client_id=1.apps.googleusercontent.com&client_secret={GOCSPX}&grant_type=refresh_token"
    v = engine.decide("POST", "https://oauth2.googleapis.com/token", FORM, body)
    assert (v.decision, v.reason_codes) == (Decision.ALLOW, ["OWN_CREDENTIAL"])
    v = engine.decide("POST", "https://collect.example.net/token", FORM, body)
    assert v.decision is Decision.DENY


def test_a_key_to_a_tenant_under_its_providers_domain_is_not_its_own(engine):
    token = "ghp_" + "Zq7Xr2Lm9Kw4Tn8Vb3Hd5Jc1Fg6Ps0Ay2Ue7"[:36]
    v = engine.decide("POST", "https://attacker.github.io/x", JSON, {"t": token})
    assert v.decision is Decision.DENY


def test_a_jwt_goes_where_its_audience_says(engine):
    token = _jwt({"iss": "https://acme.auth0.com/", "aud": "https://api.acme.io", "sub": "u-81"})
    bearer = {"Authorization": f"Bearer {token}"}
    own = engine.decide("GET", "https://api.acme.io/v1/me", bearer, None)
    assert own.decision is Decision.ALLOW
    away = engine.decide("GET", "https://hooks.evil.io/", {"X-Api-Key": token}, None)
    assert away.decision is Decision.DENY


def test_an_opaque_token_belongs_to_the_first_party_it_is_presented_to(engine):
    header = {"Authorization": "Bearer 9fQz2LmV3xT7pW1rN5sYk8Hd"}
    first = engine.decide("GET", "https://api.tools.io/v1/me", header, None)
    assert first.decision is Decision.ALLOW
    again = engine.decide("GET", "https://eu.tools.io/v1/me", header, None)
    assert again.decision is Decision.ALLOW  # the same party
    body = {"t": "9fQz2LmV3xT7pW1rN5sYk8Hd"}
    copied = engine.decide("POST", "https://paste.evil.io/", JSON, body)
    assert copied.decision is Decision.DENY
    assert "CREDENTIAL_REUSE" in copied.reason_codes


@pytest.mark.parametrize(
    "headers",
    [
        {"Cookie": "sid=1; password=S3cr3t!Pass2026"},
        {"Authorization": "Bearer -----BEGIN OPENSSH PRIVATE KEY-----b3BlbnNzaC1rZXktdjEAAAAA"},
        {"Authorization": "Basic " + base64.b64encode(b"admin:S3cr3t!Pass2026").decode()},
    ],
    ids=["password-cookie", "key-bearer", "basic-password"],
)
def test_what_has_no_issuer_is_never_its_own_in_an_auth_header(engine, headers):
    v = engine.decide("GET", "https://api.tools.io/v1/me", headers, None)
    assert v.decision is Decision.DENY


def test_a_password_posted_to_a_login_form_is_a_login(engine):
    body = "username=alice&password=S3cr3t%21Pass2026&csrf=7f2a"
    v = engine.decide("POST", "https://shop.example-store.com/login", FORM, body)
    assert v.decision is Decision.ALLOW
    v = engine.decide("POST", "https://collect.example.net/p", FORM, body)
    assert v.decision is Decision.DENY


# --- what is read, and how ---------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        {f"x{AWS_LIVE}": 1},  # a JSON key
        {"a": AWS_LIVE[:9], "b": AWS_LIVE[9:]},  # split across one object's fields
        {"t": "-".join(f"{b:02x}" for b in AWS_LIVE.encode())},  # delimited hex
        {"t": "".join(f"\\x{b:02x}" for b in AWS_LIVE.encode())},  # escaped hex
        {"t": quote(quote(quote(quote(AWS_LIVE, safe=""), safe=""), safe=""), safe="")},
        {"t": _b64_layers(AWS_LIVE, 4)},
        {"t": base64.b64encode(gzip.compress(AWS_LIVE.encode())).decode()},
        {"t": base64.b64encode(b"\xff\x00" + AWS_LIVE.encode()).decode()},  # binary around it
        {"t": base64.b32encode(AWS_LIVE.encode()).decode()},
        {"t": "".join(f"&#{ord(c)};" for c in AWS_LIVE)},
        {"t": "\u0410" + AWS_LIVE[1:]},  # Cyrillic A
        {"t": "\u200b".join(AWS_LIVE)},  # zero-width spaces
        {"t": AWS_LIVE[::-1]},
        {"t": [ord(c) for c in AWS_LIVE]},  # character codes
    ],
    ids=[
        "key",
        "split",
        "hex-dashes",
        "hex-escapes",
        "percent-x4",
        "base64-x4",
        "gzip-base64",
        "binary",
        "base32",
        "entities",
        "homoglyph",
        "zero-width",
        "reversed",
        "char-codes",
    ],
)
def test_hidden_keys_are_found(engine, body):
    v = engine.decide("POST", "https://collect.example.net/", JSON, body)
    assert v.decision is Decision.DENY, v.signals


def test_a_pem_posted_as_a_form_is_read_raw(engine):
    pem = "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA7x9Qz==\n-----END RSA PRIVATE KEY-----"
    v = engine.decide("POST", "https://collect.example.net/", FORM, pem)
    assert v.decision is Decision.DENY


@pytest.mark.parametrize(
    "text",
    [
        "password: S3cr3t!Pass2026",
        "DB_PASSWORD=hunter2x9",
        "<password>S3cr3t!Pass</password>",
        "mysql --password S3cr3t!Pass app",
        "[db]\npassword = S3cr3t!Pass2026",
        "machine api.corp.io login deploy password S3cr3tPass",
    ],
)
def test_passwords_in_config_syntaxes(engine, text):
    v = engine.decide("POST", "https://collect.example.net/", {"Content-Type": "text/plain"}, text)
    assert v.decision is Decision.DENY


@pytest.mark.parametrize(
    "text",
    ["password: ${DB_PASSWORD}", "password = var.db_password", "password: changeme",
     "the password is required", "password: Y2hhbmdlbWU="],
)  # fmt: skip
def test_password_references_and_templates_are_none(engine, text):
    v = engine.decide("POST", "https://collect.example.net/", {"Content-Type": "text/plain"}, text)
    assert v.decision is Decision.ALLOW


def _zip(name: str, data: bytes) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr(name, data)
    return out.getvalue()


def _tar_gz(name: str, data: bytes) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:gz") as t:
        info = tarfile.TarInfo(name)
        info.size = len(data)
        t.addfile(info, io.BytesIO(data))
    return out.getvalue()


@pytest.mark.parametrize("archive", [_zip, _tar_gz], ids=["zip", "tar.gz"])
def test_archive_members_are_read(engine, archive):
    body = body_for_scan(archive(".env", f"AWS_ACCESS_KEY_ID={AWS_LIVE}\n".encode()), "")
    assert ".env" in body
    v = engine.decide("POST", "https://collect.example.net/", {}, body)
    assert v.decision is Decision.DENY


def test_an_unreadable_archive_is_refused():
    with pytest.raises(BodyUndecodable):
        body_for_scan(b"PK\x03\x04" + b"\x00" * 64, "application/zip")


def test_utf16_and_duplicate_key_bodies_are_read_as_sent():
    text = json.dumps({"k": AWS_LIVE})
    assert AWS_LIVE in json.dumps(body_for_scan(text.encode("utf-16"), "application/json"))
    duplicated = f'{{"k": "{AWS_LIVE}", "k": "fine"}}'.encode()
    assert body_for_scan(duplicated, "application/json") == duplicated.decode()


# --- hostnames and addresses --------------------------------------------------------------


@pytest.mark.parametrize(
    "host",
    ["jbswy3dpehpk3pxp.x.evil.com", "4141414b.49515834.525a5437.t.evil.com",
     "akia.z3mh.spkq.7wxy.t4rn.evil.com", "414b4941535241465a52.knkuqtkzinctirbx.x.evil.com",
     "879842018.ssn.evil.com"],
)  # fmt: skip
def test_data_in_dns_labels(host):
    assert dns_exfiltration(host)


@pytest.mark.parametrize(
    "host",
    ["invoice-renderer-8lcxytp5u4-uc.a.run.app", "d1a2b3c4d5e6f7.cloudfront.net",
     "myapp-git-feature-login-acme.vercel.app", "o4507222366739.ingest.us.sentry.io",
     "my-lb-1234567890.us-east-1.elb.amazonaws.com", "www.bbc.co.uk", "api.eu-west-1.example.com"],
)  # fmt: skip
def test_generated_and_ordinary_names_are_not_data(host):
    assert not dns_exfiltration(host)


def test_registrable_names():
    assert registrable_domain("api.github.com") == "github.com"
    assert registrable_domain("a.b.example.co.uk") == "example.co.uk"
    assert registrable_domain("x.vercel.app") == "x.vercel.app"


@pytest.mark.parametrize(
    ("host", "reason"),
    [
        ("[64:ff9b::a9fe:a9fe]", "metadata"),
        ("[64:ff9b:1::a9fe:a9fe]", "metadata"),
        ("[::ffff:0:a9fe:a9fe]", "metadata"),
        ("[2002:a9fe:a9fe::]", "metadata"),
        ("[fd00:ec2::254]", "metadata"),
        ("[::127.0.0.1]", "loopback"),
        ("[fe80::1%25eth0]", "link_local"),
        ("kubernetes.default.svc", "internal_name"),
        ("redis", "internal_name"),
        ("10.0.0.5.nip.io", "private"),
        ("app.localtest.me", "loopback"),
        ("metadata.google.internal.", "metadata"),
    ],
)
def test_ssrf_notations(host, reason):
    found = ssrf(host.replace("%25", "%"))
    assert found is not None
    assert found.reason == reason


def test_checks_password_shapes():
    assert checks.password("S3cr3t!Pass2026")
    assert not checks.password("getPassword")
    assert not checks.password("$DB_PASSWORD")


def test_a_self_hosted_products_token_goes_to_a_server_named_for_it(engine):
    header = {"PRIVATE-TOKEN": "glpat-rrGNX1F7vqHurwZ30R1q"}
    assert engine.decide(
        "GET", "https://gitlab.acme-corp.com/api/v4/user", header, None
    ).decision is (Decision.ALLOW)
    v = engine.decide("GET", "https://api.evil-analytics.io/v2/events", header, None)
    assert v.decision is Decision.DENY


def test_card_data_to_a_payment_processor_is_what_it_is_for(engine):
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    body = "card[number]=4532015112830366&card[exp_month]=12"
    assert engine.decide("POST", "https://api.stripe.com/v1/tokens", form, body).decision is (
        Decision.ALLOW
    )
    assert engine.decide("POST", "https://collect.evil.io/v1", form, body).decision is (
        Decision.SANITIZE
    )


def test_a_headers_name_is_its_values_keyword(engine):
    header = {"DD-API-KEY": "0a1b2c3d4e5f60718293a4b5c6d7e8f9"}
    assert engine.decide(
        "POST", "https://api.datadoghq.com/api/v2/series", header, None
    ).decision is (Decision.ALLOW)
    v = engine.decide("POST", "https://http-intake.logs.evil-idp.io/api/v2/logs", header, None)
    assert v.decision is Decision.DENY


def test_one_request_cannot_push_every_bound_credential_out(engine):
    engine.uses = type(engine.uses)(capacity=32)
    token = "Bearer 9fQz2LmV3xT7pW1rN5sYk8Hd"
    assert engine.decide(
        "GET", "https://api.tools.io/me", {"Authorization": token}, None
    ).decision is (Decision.ALLOW)
    flood = "; ".join(f"c{i}=v{i:04d}aZ9xQ2mL7kP3rT8wE5" for i in range(600))
    # 600 new values in one request: without a per-request bound, they would push the
    # token out of a memory of 32
    engine.decide("GET", "https://shop.example-store.com/", {"Cookie": flood}, None)
    v = engine.decide("GET", "https://api.evil-idp.io/me", {"Authorization": token}, None)
    assert "CREDENTIAL_REUSE" in v.reason_codes


def test_hex_digests_are_not_key_ids_forwards_or_backwards(engine):
    """`acca`, `abia`, `ABIA` turn up in hex by chance (about one in 27 of these bodies)."""
    rng = random.Random(99)
    for _ in range(60):
        lines = [f"{rng.getrandbits(160):040x} fix: item {i}" for i in range(60)]
        body = {"messages": [{"role": "user", "content": "\n".join(lines)}]}
        v = engine.decide("POST", "https://api.anthropic.com/v1/messages", JSON, body)
        assert v.decision is Decision.ALLOW, v.signals


def test_a_credential_sent_in_pieces_is_carried_never_presented(engine):
    """An issuer reads a credential whole: split over cookies or bearer words, it is the
    value carried out, not the agent's own credential presented (a red team's probe)."""
    token = github(random.Random(7))
    head, tail = token[:20], token[20:]
    for headers in ({"Cookie": f"a={head}; b={tail}"}, {"Authorization": f"Bearer {head} {tail}"}):
        v = engine.decide("GET", "https://collect.example.net/x", headers, None)
        assert v.decision is Decision.DENY, headers
        assert "SECRET_EXFILTRATION" in v.reason_codes
    whole = engine.decide(
        "GET", "https://api.github.com/user", {"Authorization": f"Bearer {token}"}, None
    )
    assert (whole.decision, whole.reason_codes) == (Decision.ALLOW, ["OWN_CREDENTIAL"])
