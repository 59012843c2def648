"""Policy rules as data (Zun's names and defaults) and a small oslo.policy-syntax evaluator.

We do not use oslo.policy itself: it is built around a process-global
oslo.config object, which our rule "config is passed in, never global" forbids.
The syntax we accept is the subset Zun's defaults and typical overrides use:
``rule:<name>``, ``role:<name>``, ``is_admin:True``, ``project_id:%(project_id)s``,
``user_id:%(user_id)s``, ``@`` (allow), ``!`` (deny), ``""`` (allow), and
``and`` / ``or`` / ``not`` with parentheses.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Final

__all__ = ["DEFAULT_RULES", "Credentials", "Policy", "PolicySyntaxError"]

_OWNER: Final = "rule:admin_or_owner"
_ADMIN: Final = "rule:admin_api"

DEFAULT_RULES: Final[dict[str, str]] = {
    "context_is_admin": "role:admin",
    "admin_or_owner": "is_admin:True or project_id:%(project_id)s",
    "admin_or_user": "is_admin:True or user_id:%(user_id)s",
    "admin_api": "rule:context_is_admin",
    "deny_everybody": "!",
    "container:create": _OWNER,
    "container:create:runtime": _ADMIN,
    "container:create:privileged": "rule:deny_everybody",
    "container:create:requested_destination": _ADMIN,
    "container:create:image_pull_policy": _ADMIN,
    "container:delete": _OWNER,
    "container:delete_all_projects": _ADMIN,
    "container:delete_force": _ADMIN,
    "container:get_one": _OWNER,
    "container:get_one_all_projects": _ADMIN,
    "container:get_all": _OWNER,
    "container:get_all_all_projects": _ADMIN,
    "container:get_one:host": _ADMIN,
    "container:get_one:image_pull_policy": _ADMIN,
    "container:get_one:privileged": _ADMIN,
    "container:get_one:runtime": _ADMIN,
    "container:actions": _OWNER,
    "container:action:events": _ADMIN,
    **{
        f"container:{verb}": _OWNER
        for verb in (
            "update",
            "start",
            "stop",
            "reboot",
            "pause",
            "unpause",
            "logs",
            "execute",
            "execute_resize",
            "kill",
            "rename",
            "attach",
            "resize",
            "top",
            "get_archive",
            "put_archive",
            "stats",
            "commit",
            "add_security_group",
            "remove_security_group",
            "network_detach",
            "network_attach",
            "rebuild",
            "resize_container",
        )
    },
    "capsule:create": _OWNER,
    "capsule:delete": _OWNER,
    "capsule:get": _OWNER,
    "capsule:get_all": _OWNER,
    "capsule:delete_all_projects": _ADMIN,
    "capsule:get_one_all_projects": _ADMIN,
    "capsule:get_all_all_projects": _ADMIN,
    "capsule:get:host": _ADMIN,
    # Berth: data volumes (Zun leaves them to Cinder) and host-path mounts.
    "volume:create": _OWNER,
    "volume:delete": _OWNER,
    "volume:get": _OWNER,
    "volume:get_all": _OWNER,
    "volume:get_all_all_projects": _ADMIN,
    "container:create:host_path": _ADMIN,
    "image:pull": _ADMIN,
    "image:get_all": _ADMIN,
    "image:get_one": _ADMIN,
    "image:delete": _ADMIN,
    "image:search": _OWNER,
    # Berth: the image store (Glance stand-in). Projects upload their own private images;
    # public ones are for every project, so only admins publish them.
    "image:upload": _OWNER,
    "image:upload:public": _ADMIN,
    "host:get_all": _ADMIN,
    "host:get": _ADMIN,
    "host:evacuate": _ADMIN,
    "zun-service:get_all": _ADMIN,
    "zun-service:delete": _ADMIN,
    "zun-service:enable": _ADMIN,
    "zun-service:disable": _ADMIN,
    "zun-service:force_down": _ADMIN,
    "availability_zones:get_all": _OWNER,
    "quota:get": _OWNER,
    "quota:get_default": _OWNER,
    "quota:update": _ADMIN,
    "quota:delete": _ADMIN,
    "quota_class:get": _ADMIN,
    "quota_class:update": _ADMIN,
    "registry:create": _OWNER,
    "registry:delete": _OWNER,
    "registry:get_one": _OWNER,
    "registry:get_all": _OWNER,
    "registry:update": _OWNER,
    "registry:get_all_all_projects": _ADMIN,
    "network:attach_external_network": "role:admin",
    # Berth: networks are project resources (Zun wraps Neutron networks, admin only).
    "network:create": _OWNER,
    "network:delete": _OWNER,
    "network:get": _OWNER,
    "network:get_all": _OWNER,
    "network:get_all_all_projects": _ADMIN,
    # Berth: security groups (Zun leaves them to Neutron).
    "security_group:create": _OWNER,
    "security_group:update": _OWNER,
    "security_group:delete": _OWNER,
    "security_group:get": _OWNER,
    "security_group:get_all": _OWNER,
    "security_group:get_all_all_projects": _ADMIN,
    "berth:internal": "role:service",
    # Magnum (container-infra): the cluster API's rules and defaults.
    **{
        f"clustertemplate:{verb}": _OWNER
        for verb in ("create", "delete", "detail", "get", "get_all", "update")
    },
    **{
        f"clustertemplate:{verb}_all_projects": _ADMIN
        for verb in ("delete", "detail", "get_one", "get_all", "update")
    },
    "clustertemplate:publish": _ADMIN,
    **{
        f"cluster:{verb}": _OWNER
        for verb in ("create", "delete", "detail", "get", "get_all", "update", "resize", "upgrade")
    },
    **{
        f"cluster:{verb}_all_projects": _ADMIN
        for verb in ("delete", "detail", "get_one", "get_all", "update", "upgrade")
    },
    "cluster:update_health_status": _ADMIN,
    "nodegroup:get": _OWNER,
    "nodegroup:get_all": _OWNER,
    "nodegroup:create": _OWNER,
    "nodegroup:update": _OWNER,
    "nodegroup:delete": _OWNER,
    # Magnum's quotas share Zun's quota:get/update/delete rules; these two are Magnum's.
    "quota:create": _ADMIN,
    "quota:get_all": _ADMIN,
    "certificate:get": _OWNER,
    "certificate:create": _OWNER,
    "certificate:rotate_ca": _OWNER,
    "stats:get_all": _OWNER,
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
        """True when ``rule`` lets ``creds`` act on ``target``; unknown rules allow."""
        if rule not in self.rules:
            return True
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
