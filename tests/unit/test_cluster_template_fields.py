"""coerce_field: each kind of cluster-template attribute, its coercions and its limits."""

from __future__ import annotations

from typing import Any

import pytest

from berth import errors
from berth.domain.cluster_templates import coerce_field


@pytest.mark.parametrize(
    ("name", "value", "stored"),
    [
        ("name", None, None),
        ("labels", None, {}),
        ("labels", {"a": 1}, {"a": "1"}),
        ("flavor_id", 42, "42"),
        ("coe", "swarm-mode", "swarm-mode"),
        ("public", True, True),
        ("public", "Yes", True),
        ("public", "off", False),
        ("apiserver_port", 2000, 2000),
        ("apiserver_port", " 2000 ", 2000),
    ],
)
def test_values_are_coerced(name: str, value: Any, stored: Any) -> None:
    assert coerce_field(name, value) == stored


@pytest.mark.parametrize(
    ("name", "value", "why"),
    [
        ("name", True, "Expected 'str'"),
        ("name", 10**256, "Length must be 1-255"),
        ("name", "", "Length must be 1-255"),
        ("flavor_id", "x" * 256, "Length must be 1-255"),
        ("flavor_id", "a\nb", "Control characters"),
        ("coe", "mesos", "Value should be one of: kubernetes, swarm, swarm-mode"),
        ("public", "maybe", "Expected a boolean"),
        ("apiserver_port", True, "Expected 'int'"),
        ("apiserver_port", "1_0", "Expected 'int'"),
        ("apiserver_port", "80", "at least 1024"),
        ("docker_volume_size", 2**31, "at most 2147483647"),
        ("labels", ["a"], "Expected a dict"),
    ],
)
def test_bad_values_say_why(name: str, value: Any, why: str) -> None:
    with pytest.raises(errors.Invalid) as caught:
        coerce_field(name, value)
    assert f"field/attribute {name}." in str(caught.value) and why in str(caught.value)
