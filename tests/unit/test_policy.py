"""Policy rules as data: secure-RBAC defaults over Zun's and Magnum's names, and overrides."""

from __future__ import annotations

import pytest

from berth.domain.policy import DEFAULT_RULES, Credentials, Policy, PolicySyntaxError

ALICE = Credentials("u-alice", "p-a", frozenset({"member", "reader"}))
ADMIN = Credentials("u-admin", "p-admin", frozenset({"admin", "member", "reader"}))
READER = Credentials("u-rita", "p-a", frozenset({"reader"}))
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
        ("no:such:rule", ALICE, OWN, False),
        ("no:such:rule", ADMIN, OWN, False),
        # A reader looks; writes and running code in the container need member.
        ("container:get_one", READER, OWN, True),
        ("container:logs", READER, OWN, True),
        ("container:get_archive", READER, OWN, True),
        ("container:actions", READER, OWN, True),
        ("container:execute", READER, OWN, False),
        ("container:attach", READER, OWN, False),
        ("container:stop", READER, OWN, False),
        ("container:put_archive", READER, OWN, False),
        ("network:create", READER, OWN, False),
        ("registry:create", READER, OWN, False),
        ("clustertemplate:create", READER, OWN, False),
        ("container:execute", ALICE, OWN, True),
        ("container:execute", ALICE, OTHER, False),
        ("container:logs", READER, OTHER, False),
        # Nodes are root on the host: creating them or their client certificates is admin's.
        ("cluster:create", ALICE, OWN, False),
        ("cluster:resize", ALICE, OWN, False),
        ("cluster:update", ALICE, OWN, False),
        ("cluster:upgrade", ALICE, OWN, False),
        ("nodegroup:create", ALICE, OWN, False),
        ("nodegroup:update", ALICE, OWN, False),
        ("certificate:create", ALICE, OWN, False),
        ("certificate:rotate_ca", ALICE, OWN, False),
        ("cluster:create", ADMIN, OTHER, True),
        ("certificate:create", ADMIN, OTHER, True),
        ("cluster:delete", ALICE, OWN, True),
        ("nodegroup:delete", ALICE, OWN, True),
        ("cluster:delete", READER, OWN, False),
        ("cluster:get", READER, OWN, True),
        ("certificate:get", READER, OWN, True),
    ],
)
def test_defaults(rule: str, creds: Credentials, target: dict[str, str], allowed: bool) -> None:
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


def test_roles_without_their_implied_roles_do_not_pass_a_reader_rule() -> None:
    # Credentials hold effective roles (services/env.py adds the implied ones); the
    # evaluator itself does not guess them.
    bare = Credentials("u-m", "p-a", frozenset({"member"}))
    assert not Policy().allows("container:get_one", bare, OWN)


def test_unknown_rule_denies_and_says_so(caplog: pytest.LogCaptureFixture) -> None:
    assert not Policy().allows("container:frobnicate", ADMIN, OWN)
    assert "container:frobnicate" in caplog.text


def test_admin_or_owner_stays_for_override_files() -> None:
    policy = Policy({"container:execute": "rule:admin_or_owner"})
    assert policy.allows("container:execute", READER, OWN)
    assert not policy.allows("container:execute", READER, OTHER)


def test_override_opens_clusters_to_members() -> None:
    policy = Policy({"cluster:create": "rule:project_member_or_admin"})
    assert policy.allows("cluster:create", ALICE, OWN)
    assert not policy.allows("cluster:create", ALICE, OTHER)
    assert not policy.allows("cluster:create", READER, OWN)


def test_override_replaces_default() -> None:
    policy = Policy({"container:create:privileged": "role:admin"})
    assert policy.allows("container:create:privileged", ADMIN, OWN)
    assert not policy.allows("container:create:privileged", ALICE, OWN)


@pytest.mark.parametrize("text", ["role:admin or", "(role:admin", "bogus", "kind:value", ")"])
def test_bad_rules_fail_at_load(text: str) -> None:
    with pytest.raises(PolicySyntaxError):
        Policy({"x": text})


def test_env_checks_the_roles_a_role_implies() -> None:
    # The cluster worker acts for a cluster's owner with a hand-built ("member",)
    # context; reading the owner's containers needs role:reader, which member implies.
    from typing import Any

    from berth.domain.context import RequestContext
    from berth.services.env import Env

    unused: Any = None
    env = Env(unused, unused, unused, Policy(), unused, unused, unused)
    owner = RequestContext("u-m", "", "p-a", None, ("member",))
    assert env.allowed(owner, "container:get_one", "p-a")
    assert env.allowed(owner, "container:execute", "p-a")
    assert not env.allowed(owner, "container:get_one", "p-b")


def test_env_verdicts_are_per_caller_and_target() -> None:
    # Env.allowed remembers verdicts: one caller's must never answer for another
    # (other roles, user, project) or for another target project.
    from typing import Any

    from berth.domain.context import RequestContext
    from berth.services.env import Env

    unused: Any = None
    env = Env(unused, unused, unused, Policy(), unused, unused, unused)
    admin = RequestContext("u-a", "", "p-a", None, ("admin",))
    member = RequestContext("u-m", "", "p-a", None, ("member",))
    other = RequestContext("u-o", "", "p-b", None, ("member",))
    for _ in range(2):  # the second pass answers from what the first remembered
        assert env.allowed(admin, "container:get_one:host", "p-a")
        assert not env.allowed(member, "container:get_one:host", "p-a")
        assert env.allowed(member, "container:get_one", "p-a")
        assert not env.allowed(member, "container:get_one", "p-b")
        assert env.allowed(other, "container:get_one", "p-b")
        assert not env.allowed(other, "container:get_one", "p-a")
        assert env.allowed(member, "container:get_one")  # no target: the caller's project
