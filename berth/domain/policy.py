"""Policy rules as data (Zun's and Magnum's names, secure-RBAC defaults) and an evaluator.

We do not use oslo.policy itself: it is built around a process-global
oslo.config object, which our rule "config is passed in, never global" forbids.
The syntax we accept is the subset Zun's defaults and typical overrides use:
``rule:<name>``, ``role:<name>``, ``is_admin:True``, ``project_id:%(project_id)s``,
``user_id:%(user_id)s``, ``@`` (allow), ``!`` (deny), ``""`` (allow), and
``and`` / ``or`` / ``not`` with parentheses.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Final

__all__ = ["DEFAULT_RULES", "Credentials", "Policy", "PolicySyntaxError"]

_log = logging.getLogger(__name__)

# The personas (OpenStack's secure-RBAC defaults): a project reader looks, a project
# member changes things and runs code in its containers, an admin runs the cloud.
# Holding a role means holding the roles it implies (admin > member > reader), so
# the credentials a rule sees carry the effective roles (see services/env.py).
_READER: Final = "rule:project_reader_or_admin"
_MEMBER: Final = "rule:project_member_or_admin"
_ADMIN: Final = "rule:admin_api"


def _rules(prefix: str, verbs: tuple[str, ...], rule: str) -> dict[str, str]:
    return {f"{prefix}:{verb}": rule for verb in verbs}


DEFAULT_RULES: Final[dict[str, str]] = {
    "context_is_admin": "role:admin",
    "admin_api": "rule:context_is_admin",
    "project_reader": "role:reader and project_id:%(project_id)s",
    "project_member": "role:member and project_id:%(project_id)s",
    "project_reader_or_admin": "rule:admin_api or rule:project_reader",
    "project_member_or_admin": "rule:admin_api or rule:project_member",
    # The pre-RBAC defaults (any role in the project), kept for operators' override
    # files that name them; no default uses them any more.
    "admin_or_owner": "is_admin:True or project_id:%(project_id)s",
    "admin_or_user": "is_admin:True or user_id:%(user_id)s",
    "deny_everybody": "!",
    "container:create": _MEMBER,
    "container:create:runtime": _ADMIN,
    "container:create:privileged": "rule:deny_everybody",
    "container:create:requested_destination": _ADMIN,
    "container:create:image_pull_policy": _ADMIN,
    "container:delete": _MEMBER,
    "container:delete_all_projects": _ADMIN,
    "container:delete_force": _ADMIN,
    "container:get_one": _READER,
    "container:get_one_all_projects": _ADMIN,
    "container:get_all": _READER,
    "container:get_all_all_projects": _ADMIN,
    "container:get_one:host": _ADMIN,
    "container:get_one:image_pull_policy": _ADMIN,
    "container:get_one:privileged": _ADMIN,
    "container:get_one:runtime": _ADMIN,
    "container:actions": _READER,
    "container:action:events": _ADMIN,
    # Looking at a container: what it prints, its processes and usage, and copying
    # files out of it (get_archive reads the file system through the engine and runs
    # nothing in the container; an operator who treats file contents as secrets from
    # auditors sets it to rule:project_member_or_admin).
    **_rules("container", ("logs", "top", "stats", "get_archive"), _READER),
    # Changing a container. execute, attach (and their terminal resizes) are writes:
    # they run the caller's input inside the container. put_archive writes files,
    # commit makes an image of the project's.
    **_rules(
        "container",
        (
            "update",
            "start",
            "stop",
            "reboot",
            "pause",
            "unpause",
            "execute",
            "execute_resize",
            "kill",
            "rename",
            "attach",
            "resize",
            "put_archive",
            "commit",
            "add_security_group",
            "remove_security_group",
            "network_detach",
            "network_attach",
            "rebuild",
            "resize_container",
        ),
        _MEMBER,
    ),
    "capsule:create": _MEMBER,
    "capsule:delete": _MEMBER,
    "capsule:get": _READER,
    "capsule:get_all": _READER,
    "capsule:delete_all_projects": _ADMIN,
    "capsule:get_one_all_projects": _ADMIN,
    "capsule:get_all_all_projects": _ADMIN,
    "capsule:get:host": _ADMIN,
    # Berth: data volumes (Zun leaves them to Cinder) and host-path mounts.
    "volume:create": _MEMBER,
    "volume:delete": _MEMBER,
    "volume:get": _READER,
    "volume:get_all": _READER,
    "volume:get_all_all_projects": _ADMIN,
    "container:create:host_path": _ADMIN,
    "image:pull": _ADMIN,
    "image:get_all": _ADMIN,
    "image:get_one": _ADMIN,
    "image:delete": _ADMIN,
    "image:search": _READER,
    # Berth: the image store (Glance stand-in). Projects upload their own private images;
    # public ones are for every project, so only admins publish them.
    "image:upload": _MEMBER,
    "image:upload:public": _ADMIN,
    "host:get_all": _ADMIN,
    "host:get": _ADMIN,
    "host:evacuate": _ADMIN,
    "zun-service:get_all": _ADMIN,
    "zun-service:delete": _ADMIN,
    "zun-service:enable": _ADMIN,
    "zun-service:disable": _ADMIN,
    "zun-service:force_down": _ADMIN,
    "availability_zones:get_all": _READER,
    "quota:get": _READER,
    "quota:get_default": _READER,
    "quota:update": _ADMIN,
    "quota:delete": _ADMIN,
    "quota_class:get": _ADMIN,
    "quota_class:update": _ADMIN,
    "registry:create": _MEMBER,
    "registry:delete": _MEMBER,
    "registry:get_one": _READER,
    "registry:get_all": _READER,
    "registry:update": _MEMBER,
    "registry:get_all_all_projects": _ADMIN,
    "network:attach_external_network": "role:admin",
    # Berth: networks are project resources (Zun wraps Neutron networks, admin only).
    "network:create": _MEMBER,
    "network:delete": _MEMBER,
    "network:get": _READER,
    "network:get_all": _READER,
    "network:get_all_all_projects": _ADMIN,
    # Berth: security groups (Zun leaves them to Neutron).
    "security_group:create": _MEMBER,
    "security_group:update": _MEMBER,
    "security_group:delete": _MEMBER,
    "security_group:get": _READER,
    "security_group:get_all": _READER,
    "security_group:get_all_all_projects": _ADMIN,
    "berth:internal": "role:service",
    # Magnum (container-infra): the cluster API's rules. Templates are data (no nodes).
    **_rules("clustertemplate", ("create", "delete", "update"), _MEMBER),
    **_rules("clustertemplate", ("detail", "get", "get_all"), _READER),
    **_rules(
        "clustertemplate",
        ("delete_all_projects", "detail_all_projects", "get_one_all_projects",
         "get_all_all_projects", "update_all_projects", "publish"),
        _ADMIN,
    ),
    # Cluster nodes are root-equivalent on the host: they run Docker-in-Docker with the
    # host's cgroup namespace and /sys/fs/cgroup writable and nearly all capabilities,
    # and the cluster's client certificate reaches their Docker API. So whatever adds
    # or replaces nodes (create, update, resize, upgrade) or hands out node access
    # (certificate:create signs a client certificate, rotate_ca re-issues the CA) is
    # admin-only; an operator who trusts members opens them in the policy file (see
    # docs/clusters.md). Deleting a cluster or a node group only removes nodes, which
    # gives nobody access, so a member may still clean up the project's clusters.
    **_rules("cluster", ("create", "update", "resize", "upgrade"), _ADMIN),
    **_rules("cluster", ("detail", "get", "get_all"), _READER),
    "cluster:delete": _MEMBER,
    **_rules(
        "cluster",
        ("delete_all_projects", "detail_all_projects", "get_one_all_projects",
         "get_all_all_projects", "update_all_projects", "upgrade_all_projects",
         "update_health_status"),
        _ADMIN,
    ),
    "nodegroup:get": _READER,
    "nodegroup:get_all": _READER,
    "nodegroup:create": _ADMIN,
    "nodegroup:update": _ADMIN,
    "nodegroup:delete": _MEMBER,
    # Magnum's quotas share Zun's quota:get/update/delete rules; these two are Magnum's.
    "quota:create": _ADMIN,
    "quota:get_all": _ADMIN,
    # The cluster's CA certificate is public: reading it gives no access.
    "certificate:get": _READER,
    "certificate:create": _ADMIN,
    "certificate:rotate_ca": _ADMIN,
    "stats:get_all": _READER,
    "magnum-service:get_all": _ADMIN,
}


class PolicySyntaxError(ValueError):
    """A rule string could not be parsed."""


@dataclass(frozen=True, slots=True)
class Credentials:
    """The caller facts a rule can test."""

    user_id: str
    project_id: str | None
    roles: frozenset[str]

    @property
    def is_admin(self) -> bool:
        return "admin" in self.roles


Check = Callable[[Credentials, Mapping[str, str], "Policy"], bool]
_TOKEN = re.compile(r"\s*([^\s()]*%\(\w+\)s[^\s()]*|\(|\)|[^\s()]+)")


class Policy:
    """Evaluates named rules: Zun's defaults overridden by an operator's mapping."""

    def __init__(self, overrides: Mapping[str, str] | None = None) -> None:
        self.rules: dict[str, str] = {**DEFAULT_RULES, **(overrides or {})}
        self._compiled: dict[str, Check] = {}
        for name in self.rules:  # fail at start-up, not on the first request
            self._check(name)

    def allows(self, rule: str, creds: Credentials, target: Mapping[str, str]) -> bool:
        """True when ``rule`` lets ``creds`` act on ``target``; an unknown rule denies."""
        if rule not in self.rules:
            # A rule the code enforces but nobody defined is a bug, not a permission:
            # deny, and say so where an operator looks.
            _log.error("policy rule %r is not defined: denied", rule)
            return False
        return self._check(rule)(creds, target, self)

    def _check(self, name: str) -> Check:
        if name not in self._compiled:
            self._compiled[name] = _parse(self.rules[name])
        return self._compiled[name]


def _parse(text: str) -> Check:
    tokens = _TOKEN.findall(text.strip())
    if not tokens:
        return lambda _c, _t, _p: True
    pos, check = _parse_or(tokens, 0)
    if pos != len(tokens):
        raise PolicySyntaxError(f"unexpected {tokens[pos]!r} in rule {text!r}")
    return check


def _parse_or(tokens: list[str], pos: int) -> tuple[int, Check]:
    pos, left = _parse_and(tokens, pos)
    while pos < len(tokens) and tokens[pos] == "or":
        pos, right = _parse_and(tokens, pos + 1)
        left = _either(left, right)
    return pos, left


def _parse_and(tokens: list[str], pos: int) -> tuple[int, Check]:
    pos, left = _parse_not(tokens, pos)
    while pos < len(tokens) and tokens[pos] == "and":
        pos, right = _parse_not(tokens, pos + 1)
        left = _both(left, right)
    return pos, left


def _parse_not(tokens: list[str], pos: int) -> tuple[int, Check]:
    if pos < len(tokens) and tokens[pos] == "not":
        pos, inner = _parse_not(tokens, pos + 1)
        return pos, lambda c, t, p: not inner(c, t, p)
    return _parse_atom(tokens, pos)


def _parse_atom(tokens: list[str], pos: int) -> tuple[int, Check]:
    if pos >= len(tokens):
        raise PolicySyntaxError("rule ends too early")
    tok = tokens[pos]
    if tok == "(":
        pos, inner = _parse_or(tokens, pos + 1)
        if pos >= len(tokens) or tokens[pos] != ")":
            raise PolicySyntaxError("missing ')'")
        return pos + 1, inner
    return pos + 1, _leaf(tok)


def _either(a: Check, b: Check) -> Check:
    return lambda c, t, p: a(c, t, p) or b(c, t, p)


def _both(a: Check, b: Check) -> Check:
    return lambda c, t, p: a(c, t, p) and b(c, t, p)


def _leaf(tok: str) -> Check:
    if tok == "@":
        return lambda _c, _t, _p: True
    if tok == "!":
        return lambda _c, _t, _p: False
    kind, sep, value = tok.partition(":")
    if not sep:
        raise PolicySyntaxError(f"cannot read check {tok!r}")
    if kind == "rule":
        return lambda c, t, p: p.allows(value, c, t) if value in p.rules else False
    if kind == "role":
        return lambda c, _t, _p: value.lower() in {r.lower() for r in c.roles}
    if kind == "is_admin":
        want = value.lower() == "true"
        return lambda c, _t, _p: c.is_admin == want
    if kind in ("project_id", "user_id"):
        return _match(kind, value)
    raise PolicySyntaxError(f"unknown check kind {kind!r} in {tok!r}")


def _match(kind: str, value: str) -> Check:
    template = re.fullmatch(r"%\((\w+)\)s", value)

    def check(c: Credentials, t: Mapping[str, str], _p: Policy) -> bool:
        mine = c.project_id if kind == "project_id" else c.user_id
        expected = t.get(template.group(1)) if template else value
        return mine is not None and expected is not None and mine == expected

    return check
