"""Policy rules as data: Zun's defaults and operator overrides in oslo.policy syntax."""

from __future__ import annotations

import pytest

from berth.domain.policy import DEFAULT_RULES, Credentials, Policy, PolicySyntaxError

ALICE = Credentials("u-alice", "p-a", frozenset({"member", "reader"}))
ADMIN = Credentials("u-admin", "p-admin", frozenset({"admin", "member", "reader"}))
OWN = {"project_id": "p-a", "user_id": "u-alice"}
OTHER = {"project_id": "p-b", "user_id": "u-bob"}


@pytest.mark.parametrize(
    ("rule", "creds", "target", "allowed"),
    [
        ("container:create", ALICE, OWN, True),
        ("container:get_one", ALICE, OTHER, False),
        ("container:get_one", ADMIN, OTHER, True),
        ("container:create:privileged", ALICE, OWN, False),
        ("container:create:privileged", ADMIN, OWN, False),
        ("container:create:runtime", ALICE, OWN, False),
        ("container:create:runtime", ADMIN, OWN, True),
        ("host:get_all", ALICE, OWN, False),
        ("zun-service:get_all", ADMIN, OWN, True),
        ("quota:get", ALICE, OWN, True),
        ("quota:update", ALICE, OWN, False),
        ("container:get_one:host", ALICE, OWN, False),
        ("no:such:rule", ALICE, OTHER, True),
    ],
)
def test_zun_defaults(rule: str, creds: Credentials, target: dict[str, str], allowed: bool) -> None:
    assert Policy().allows(rule, creds, target) is allowed


def test_every_default_rule_parses() -> None:
    policy = Policy()
    assert set(DEFAULT_RULES) <= set(policy.rules)


@pytest.mark.parametrize(
    ("text", "creds", "target", "allowed"),
    [
        ("@", ALICE, OTHER, True),
        ("!", ADMIN, OWN, False),
        ("", ALICE, OTHER, True),
        ("role:member and not role:admin", ALICE, OWN, True),
        ("role:member and not role:admin", ADMIN, OWN, False),
        ("(role:admin or project_id:%(project_id)s) and user_id:%(user_id)s", ALICE, OWN, True),
        ("(role:admin or project_id:%(project_id)s) and user_id:%(user_id)s", ALICE, OTHER, False),
        ("is_admin:True", ADMIN, OTHER, True),
        ("is_admin:False", ADMIN, OTHER, False),
        ("rule:admin_or_owner", ALICE, OWN, True),
        ("rule:missing_rule", ADMIN, OWN, False),
    ],
)
def test_override_syntax(
    text: str, creds: Credentials, target: dict[str, str], allowed: bool
) -> None:
    assert Policy({"x": text}).allows("x", creds, target) is allowed


def test_override_replaces_default() -> None:
    policy = Policy({"container:create:privileged": "role:admin"})
    assert policy.allows("container:create:privileged", ADMIN, OWN)
    assert not policy.allows("container:create:privileged", ALICE, OWN)


@pytest.mark.parametrize("text", ["role:admin or", "(role:admin", "bogus", "kind:value", ")"])
def test_bad_rules_fail_at_load(text: str) -> None:
    with pytest.raises(PolicySyntaxError):
        Policy({"x": text})
