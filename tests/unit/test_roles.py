"""Role implication: admin ⊃ member ⊃ reader; service stands apart."""

from __future__ import annotations

import pytest

from berth.identity import roles


def test_implied_roles_are_transitive_nearest_first() -> None:
    assert roles.implied_roles("admin") == ("member", "reader")
    assert roles.implied_roles("member") == ("reader",)
    assert roles.implied_roles("reader") == ()
    assert roles.implied_roles("service") == ()
    assert roles.implied_roles("unknown") == ()


def test_effective_roles_keep_order_and_drop_duplicates() -> None:
    assert roles.effective_roles(["admin"]) == ("admin", "member", "reader")
    assert roles.effective_roles(["reader", "member"]) == ("reader", "member")
    assert roles.effective_roles(["service", "admin", "member"]) == (
        "service",
        "admin",
        "member",
        "reader",
    )
    assert roles.effective_roles([]) == ()


@pytest.mark.parametrize(
    ("held", "required", "ok"),
    [
        (["admin"], "reader", True),
        (["admin"], "member", True),
        (["member"], "reader", True),
        (["member"], "admin", False),
        (["reader"], "member", False),
        (["service"], "reader", False),
        (["custom"], "custom", True),
        ([], "reader", False),
    ],
)
def test_has_role(held: list[str], required: str, ok: bool) -> None:
    assert roles.has_role(held, required) is ok


def test_cycles_in_custom_rules_terminate() -> None:
    rules = {"a": ("b",), "b": ("c",), "c": ("a",)}
    assert roles.implied_roles("a", rules) == ("b", "c")
    assert roles.effective_roles(["b"], rules) == ("b", "c", "a")


def test_builtin_roles() -> None:
    assert set(roles.BUILTIN_ROLES) == {"admin", "member", "reader", "service"}
