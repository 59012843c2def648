"""Property tests of every request parser: any JSON in, a value or a clean 4xx out.

Each parser gets arbitrary JSON (``None``, booleans, integers up to hundreds of
digits, floats with nan and inf, text with NUL and control characters, lists
and objects), and valid documents with one to three values swapped for
arbitrary JSON (so the fuzz reaches past the first check). The outcome must be
a parsed value or a Berth error the API maps to a 4xx: never another
exception, which the API would answer with a 500.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from berth import errors
from berth.api.errors import status_of
from berth.api.identity import schemas as identity
from berth.api.internal.router import desired_query
from berth.api.zun import params, schemas
from berth.api.zun.microversions import APIVersion
from berth.config import Settings
from berth.domain import capsules, cluster_templates, clusters, jsonpatch

pytestmark = pytest.mark.filterwarnings("ignore::SyntaxWarning")  # literal_eval of junk

SETTINGS = Settings(admin_password="x" * 10, agent_password="y" * 10)
FUZZ = settings(
    max_examples=300, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck)
)

_TEXT = st.text(
    alphabet=st.one_of(
        st.sampled_from("\x00\x01\t\n\r\x1b\x7f\u2028 {}[]'\"/:.-_0123456789aZ"),
        st.characters(),
    ),
    max_size=12,
)
_INTS = st.one_of(
    st.integers(-(2**70), 2**70),
    st.sampled_from([2**31 - 1, 2**31, -(2**31) - 1, 2**63, 10**300, -(10**4000)]),
)
# Values that broke parsers before: numbers in odd spellings, and Python literals
# (the Magnum dict fields and taints take them through ast.literal_eval).
NASTY = st.sampled_from(
    [
        "1e400",
        "nan",
        "-inf",
        "9" * 50,
        "9" * 4000,
        "١٢",
        "²",
        "0x10",
        " 7 ",
        "a\n",
        "True",
        "None",
        "{[]: 1}",
        "{'a': {1, 2}}",
        "-" * 3000 + "1",
        "[" * 150 + "]" * 150,
        "{'k': 1e999}",
        "[{'key': 'k', 'effect': 'NoSchedule', 'value': []}]",
        "[{'key': 'k\x00', 'effect': 'NoSchedule'}]",
        {"k": ["v"]},
        [{"key": 10**4000, "effect": "NoSchedule"}],
    ]
)
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    _INTS,
    st.floats(allow_nan=True, allow_infinity=True),
    _TEXT,
    NASTY,
)
JSON = st.recursive(
    SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(_TEXT, inner, max_size=4)
    ),
    max_leaves=12,
)


def _paths(doc: Any, at: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [at]
    if isinstance(doc, dict):
        for key, value in doc.items():
            found += _paths(value, (*at, key))
    elif isinstance(doc, list):
        for i, value in enumerate(doc):
            found += _paths(value, (*at, i))
    return found


@st.composite
def mutated(draw: st.DrawFn, valid: Any) -> Any:
    """``valid`` with one to three values (or the whole) replaced by arbitrary JSON."""
    doc = copy.deepcopy(valid)
    for _ in range(draw(st.integers(1, 3))):
        path = draw(st.sampled_from(_paths(doc)))
        value = copy.deepcopy(draw(st.one_of(NASTY, JSON)))  # NASTY holds shared objects
        if not path:
            return value
        parent = doc
        for step in path[:-1]:
            parent = parent[step]
        parent[path[-1]] = value
    return doc


def documents(valid: Any) -> st.SearchStrategy[Any]:
    return st.one_of(JSON, mutated(valid))


def clean(parser: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """``parser(*args)``; a Berth error is fine if the API answers it with a 4xx."""
    try:
        return parser(*args, **kwargs)
    except errors.BerthError as exc:
        assert status_of(exc) < 500, exc
        return None


def _as_object(doc: Any) -> dict[str, Any]:
    # The routes refuse a body that is not an object before any parser runs.
    return doc if isinstance(doc, dict) else {"value": doc}


# -- Zun ----------------------------------------------------------------------

CONTAINER = {
    "image": "nginx:latest",
    "name": "web",
    "command": ["sh", "-c", "echo hi"],
    "cpu": 0.5,
    "memory": "512",
    "labels": {"a": "b"},
    "environment": {"K": "V"},
    "restart_policy": {"Name": "on-failure", "MaximumRetryCount": "3"},
    "security_groups": ["default"],
    "nets": [{"network": "net1"}],
    "healthcheck": {"cmd": "true", "interval": 5, "retries": 2, "timeout": 3},
    "exposed_ports": {"80/tcp": {}},
    "hints": {"k": "v"},
    "hostname": "box",
}


@FUZZ
@given(doc=documents(CONTAINER), version=st.sampled_from([APIVersion(1, 1), APIVersion(1, 40)]))
def test_container_create_parses_or_refuses(doc: Any, version: APIVersion) -> None:
    req = clean(schemas.parse_model, schemas.ContainerCreate, _as_object(doc))
    if req is not None:
        clean(schemas.check_limits, SETTINGS, req)
        clean(schemas.command_list, req.command, version)
        clean(schemas.check_counts, req)


@FUZZ
@given(doc=documents({"cpu": 1, "memory": 256, "name": "n1", "auto_heal": True}))
def test_container_patch_parses_or_refuses(doc: Any) -> None:
    patch = clean(schemas.parse_model, schemas.ContainerPatch, _as_object(doc))
    if patch is not None:
        clean(schemas.number_in, patch.cpu, "cpu", 0.1, 16.0)
        clean(schemas.int_in, patch.memory, "memory", 4, 8192)


CAPSULE = {
    "kind": "capsule",
    "capsuleVersion": "beta",
    "metadata": {"name": "cap", "labels": {"a": "b"}},
    "restartPolicy": "Always",
    "spec": {
        "restartPolicy": "OnFailure",
        "containers": [
            {
                "image": "nginx",
                "name": "c1",
                "command": ["sh"],
                "args": ["-c", "true"],
                "env": [{"name": "K", "value": "V"}],
                "resources": {"requests": {"cpu": "500m", "memory": "128Mi"}},
                "ports": [{"containerPort": 80, "protocol": "TCP"}],
                "volumeMounts": [{"name": "vol", "mountPath": "/data"}],
                "workDir": "/w",
            }
        ],
        "volumes": [{"name": "vol", "cinder": {"size": 1, "autoRemove": True}}],
    },
}


@FUZZ
@given(doc=documents(CAPSULE))
def test_capsule_template_parses_or_refuses(doc: Any) -> None:
    clean(capsules.parse_template, doc)


@FUZZ
@given(value=JSON)
def test_zun_scalar_parsers_parse_or_refuse(value: Any) -> None:
    clean(params.parse_bool, value, "flag")
    clean(params.parse_bool, value, "flag", extended=True)
    clean(params.parse_int, value, "limit", minimum=1)
    clean(schemas.kill_signal, value)
    text = value if isinstance(value, str) or value is None else str(value)[:50]
    clean(schemas.logs_since, text)
    clean(schemas.logs_tail, text)
    numeric = isinstance(value, int | float | str) and not isinstance(value, bool)
    if numeric and len(str(value)) < 999:
        clean(schemas.number_in, value, "cpu", 0.1, 16.0)
        clean(schemas.int_in, value, "memory", 4, 8192)


# -- Magnum -------------------------------------------------------------------

TEMPLATE = {
    "name": "tpl",
    "coe": "swarm-mode",
    "image_id": "node",
    "docker_volume_size": 5,
    "apiserver_port": 6443,
    "labels": {"a": "b"},
    "public": "true",
    "server_type": "vm",
    "http_proxy": "http://proxy:3128",
}
CLUSTER = {
    "name": "c1",
    "cluster_template_id": "tpl",
    "node_count": 2,
    "master_count": 1,
    "labels": {"k": "v"},
    "merge_labels": True,
    "create_timeout": 60,
    "keypair": "key",
}
NODEGROUP = {
    "name": "ng1",
    "node_count": 1,
    "min_node_count": 0,
    "max_node_count": 3,
    "labels": {"a": "b"},
    "node_labels": {"role": "db"},
    "node_taints": [{"key": "k", "value": "v", "effect": "NoSchedule"}],
    "role": "worker",
}
PATCH = [
    {"op": "replace", "path": "/name", "value": "other"},
    {"op": "add", "path": "/labels/x", "value": "1"},
    {"op": "replace", "path": "/labels", "value": "{'a': 'b'}"},
    {"op": "remove", "path": "/keypair_id"},
]


@FUZZ
@given(doc=documents(TEMPLATE))
def test_cluster_template_fields_parse_or_refuse(doc: Any) -> None:
    clean(cluster_templates.coerce_fields, _as_object(doc), allowed=frozenset(TEMPLATE))


@FUZZ
@given(doc=documents(CLUSTER))
def test_cluster_create_parses_or_refuses(doc: Any) -> None:
    clean(clusters.coerce_create, _as_object(doc))


@FUZZ
@given(doc=documents(NODEGROUP))
def test_nodegroup_create_parses_or_refuses(doc: Any) -> None:
    clean(clusters.coerce_nodegroup, _as_object(doc))
    clean(clusters.coerce_taints, doc)


@FUZZ
@given(value=st.one_of(NASTY, JSON))
def test_python_literal_fields_parse_or_refuse(value: Any) -> None:
    clean(clusters.coerce_taints, value)
    for op in ("add", "replace"):
        patch = [{"op": op, "path": "/labels", "value": value}]
        clean(jsonpatch.apply_patch, {"labels": {}}, patch, dict_fields=("labels",))


@FUZZ
@given(patch=documents(PATCH))
def test_json_patch_applies_or_refuses(patch: Any) -> None:
    current = {"name": "tpl", "labels": {"x": "0"}, "keypair_id": "k", "node_count": 1}
    doc = clean(
        jsonpatch.apply_patch,
        current,
        patch,
        dict_fields=("labels",),
        non_removable=("name",),
    )
    if doc is not None:
        for name, value in doc.items():
            if name in cluster_templates.FIELDS:
                clean(cluster_templates.coerce_field, name, value)


# -- Identity and the internal API ---------------------------------------------

AUTH = {
    "auth": {
        "identity": {
            "methods": ["password"],
            "password": {
                "user": {"name": "u", "domain": {"name": "Default"}, "password": "pw"}
            },
        },
        "scope": {"project": {"name": "p", "domain": {"id": "default"}}},
    }
}
IDENTITY_BODIES: list[tuple[type[Any], str, dict[str, Any]]] = [
    (identity.UserCreate, "user", {"name": "u", "password": "pw", "email": "a@b"}),
    (identity.UserPatch, "user", {"name": "u2", "description": "d", "enabled": False}),
    (identity.ProjectCreate, "project", {"name": "p", "description": "d", "tags": ["t"]}),
    (identity.ProjectPatch, "project", {"name": "p2", "enabled": True}),
    (identity.RoleCreate, "role", {"name": "r", "description": "d"}),
    (identity.PasswordChange, "user", {"password": "new", "original_password": "old"}),
]


@FUZZ
@given(doc=documents(AUTH))
def test_auth_body_parses_or_refuses(doc: Any) -> None:
    body = clean(identity.parse, identity.AuthBody, _as_object(doc), "auth")
    if body is not None:
        clean(body.to_request)


@FUZZ
@given(data=st.data(), which=st.integers(0, len(IDENTITY_BODIES) - 1))
def test_identity_bodies_parse_or_refuse(data: st.DataObject, which: int) -> None:
    model, key, valid = IDENTITY_BODIES[which]
    doc = data.draw(documents({key: valid}))
    parsed = clean(identity.parse, model, _as_object(doc), key)
    for method in ("to_spec", "to_update"):
        if parsed is not None and hasattr(parsed, method):
            clean(getattr(parsed, method))


@FUZZ
@given(generation=st.one_of(st.none(), _TEXT), wait=st.one_of(st.none(), _TEXT))
def test_desired_query_parses_or_refuses(generation: str | None, wait: str | None) -> None:
    query = {k: v for k, v in (("generation", generation), ("wait", wait)) if v is not None}
    clean(desired_query, query)
