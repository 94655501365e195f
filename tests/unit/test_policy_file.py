from __future__ import annotations

import pytest

from sidecar.engine.policy_file import PolicyError, default_policy, load_policy, parse_policy


def test_default_policy_is_valid_and_documented():
    p = default_policy()
    assert p.name == "egress-sidecar-default"
    assert [r.rule_id for r in p.ordered()] == [
        "deny-ssrf", "deny-secret-exfiltration", "deny-dns-exfiltration",
        "deny-read-then-write", "sanitize-high-risk-pii",
    ]  # fmt: skip
    assert all(r.description for r in p.rules)


def test_json_and_yaml_files(tmp_path):
    (tmp_path / "p.json").write_text('{"name": "j", "rules": [{"rule_id": "r", "action": "DENY"}]}')
    assert load_policy(tmp_path / "p.json").rules[0].rule_id == "r"
    (tmp_path / "p.yaml").write_text("name: y\nenv_name: production\nrules: []\n")
    assert load_policy(tmp_path / "p.yaml").env_name == "production"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "name: x\nrules:\n  - rule_id: a\n    action: BLOCK\n",
            "rules[0] (a) action: Input should be",
        ),
        (
            "name: x\nrules:\n  - rule_id: a\n    action: DENY\n"
            "    condition: {has_dataclass: [X]}\n",
            "rules[0] (a) condition.has_dataclass: Extra inputs are not permitted",
        ),
        ("name: x\nrules:\n  - action: DENY\n", "rules[0] rule_id: Field required"),
        (
            "name: x\nrules:\n  - {rule_id: a, action: DENY}\n  - {rule_id: a, action: ALLOW}\n",
            "duplicate rule_id 'a'",
        ),
        ("rules: []\n", "name: Field required"),
        ("name: x\nrules: [\n", "line"),
        ("- just a list\n", "a policy is a mapping"),
        (
            "name: x\nrules:\n  - {rule_id: a, action: DENY, condition: {risk_at_least: 2}}\n",
            "condition.risk_at_least: Input should be less than or equal to 1",
        ),
        (
            "name: x\nrules:\n  - {rule_id: a, action: DENY, match: {hosts: [10.0.0.0/33]}}\n",
            "rules[0] (a) match.hosts: '10.0.0.0/33' is not a CIDR block",
        ),
        (
            "name: x\nrules:\n  - {rule_id: a, action: DENY, condition: {destination_in: [a/b]}}\n",
            "condition.destination_in: 'a/b' is not a CIDR block",
        ),
    ],
)
def test_errors_name_the_file_rule_and_field(text, message):
    with pytest.raises(PolicyError) as e:
        parse_policy(text, "team.yaml")
    assert str(e.value).startswith("team.yaml")
    assert message in str(e.value)
    assert "\n" not in str(e.value)


def test_missing_file(tmp_path):
    with pytest.raises(PolicyError, match="No such file"):
        load_policy(tmp_path / "nope.yaml")
