"""Request-body descriptions for the OpenAPI of routes that read their JSON by hand.

Most routes parse the raw body themselves (microversion-dependent fields, the
APIs' own 400 bodies instead of FastAPI's 422), so FastAPI sees no body to
describe. These helpers put the shape in ``openapi_extra``: documentation for
clients, and what schemathesis generates bodies from. Parsing is unchanged.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import TypeAdapter

from berth.domain import cluster_templates

__all__ = [
    "ANY_OBJECT",
    "CAPSULE_TEMPLATE",
    "JSON_PATCH",
    "TEMPLATE_BODY",
    "body",
    "kinds_schema",
    "model_schema",
    "props",
    "wrapped",
]

# Any JSON object: the action routes take their few parameters from query or body.
ANY_OBJECT: dict[str, Any] = {"type": "object"}

_SCALAR: dict[str, Any] = {"type": ["string", "integer", "number", "boolean", "null"]}

# Magnum's PATCH body: a list of add/replace/remove operations (RFC 6902 subset).
JSON_PATCH: dict[str, Any] = {
    "type": "array",
    "minItems": 1,
    "items": {
        "type": "object",
        "required": ["op", "path"],
        "properties": {
            "op": {"type": "string", "enum": ["add", "replace", "remove"]},
            "path": {"type": "string", "pattern": "^(/[A-Za-z0-9_-]+)+$"},
            "value": {
                "anyOf": [
                    _SCALAR,
                    {"type": "object", "additionalProperties": _SCALAR},
                ]
            },
        },
        "additionalProperties": False,
    },
}

_KINDS: dict[str, dict[str, Any]] = {
    "str": {"type": "string"},
    "enum": {"type": "string"},
    "int": {"type": "integer"},
    "bool": {"type": "boolean"},
    "dict": {"type": "object", "additionalProperties": {"type": "string"}},
    "list": {"type": "array", "items": {"type": "object"}},
    "strs": {"type": "array", "items": {"type": "string"}},
    "any": {},
}


def _inline(node: Any, defs: Mapping[str, Any]) -> Any:
    # The models are not recursive, so every $ref can be replaced by its target:
    # the operation's schema then stands alone (no $defs outside components).
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/$defs/"):
            return _inline(defs[ref.removeprefix("#/$defs/")], defs)
        return {k: _inline(v, defs) for k, v in node.items() if k != "$defs"}
    if isinstance(node, list):
        return [_inline(v, defs) for v in node]
    return node


def model_schema(model: Any) -> dict[str, Any]:
    """The JSON schema of ``model`` (a Pydantic model or dataclass) with every ``$ref`` inlined."""
    schema = TypeAdapter(model).json_schema()
    inlined: dict[str, Any] = _inline(schema, schema.get("$defs", {}))
    return inlined


def kinds_schema(
    kinds: Mapping[str, str],
    *,
    required: tuple[str, ...] = (),
    enums: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """An object schema from a table of attribute kinds (str, int, bool, dict, strs, ...)."""
    properties: dict[str, Any] = {}
    for name, kind in kinds.items():
        properties[name] = dict(_KINDS[kind])
        if enums and name in enums:
            properties[name]["enum"] = list(enums[name])
    return {
        "type": "object",
        "properties": properties,
        "required": list(required),
        "additionalProperties": False,
    }


def props(*, required: tuple[str, ...] = (), **kinds: str) -> dict[str, Any]:
    """An object schema with the named attributes of the given kinds (see ``kinds_schema``)."""
    return kinds_schema(kinds, required=required)


def wrapped(key: str, schema: Mapping[str, Any]) -> dict[str, Any]:
    """``{key: schema}``: the Keystone and Zun bodies that nest the resource under its name."""
    return {
        "type": "object",
        "properties": {key: dict(schema)},
        "required": [key],
        "additionalProperties": False,
    }


def body(schema: Mapping[str, Any], *, required: bool = True) -> dict[str, Any]:
    """The ``openapi_extra`` of a route whose JSON body has ``schema``."""
    return {
        "requestBody": {
            "required": required,
            "content": {"application/json": {"schema": dict(schema)}},
        }
    }


_STRINGS: dict[str, Any] = {"type": "array", "items": {"type": "string"}}
_STR_MAP: dict[str, Any] = {"type": "object", "additionalProperties": {"type": "string"}}
_MEMBER: dict[str, Any] = {
    "type": "object",
    "required": ["image"],
    "properties": {
        "name": {"type": "string"},
        "image": {"type": "string"},
        "command": _STRINGS,
        "args": _STRINGS,
        "workDir": {"type": "string"},
        "imagePullPolicy": {"type": "string", "enum": ["Always", "Never", "IfNotPresent"]},
        "env": _STR_MAP,
        "stdin": {"type": "boolean"},
        "tty": {"type": "boolean"},
        "resources": {
            "type": "object",
            "properties": {"requests": _STR_MAP, "limits": _STR_MAP},
        },
        "ports": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "containerPort": {"type": "integer"},
                    "protocol": {"type": "string"},
                },
            },
        },
        "volumeMounts": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {"name": {"type": "string"}, "mountPath": {"type": "string"}},
            },
        },
    },
    "additionalProperties": False,
}
# Zun's capsule template (the pod-like document ``openstack capsule create`` sends).
CAPSULE_TEMPLATE: dict[str, Any] = {
    "type": "object",
    "required": ["kind", "metadata", "spec"],
    "properties": {
        "kind": {"type": "string", "enum": ["capsule"]},
        "capsuleVersion": {"type": "string", "enum": ["beta"]},
        "availabilityZone": {"type": "string"},
        "metadata": {
            "type": "object",
            "properties": {"name": {"type": "string"}, "labels": _STR_MAP},
        },
        "spec": {
            "type": "object",
            "required": ["containers"],
            "properties": {
                "restartPolicy": {"type": "string", "enum": ["Always", "OnFailure", "Never"]},
                "containers": {"type": "array", "minItems": 1, "items": _MEMBER},
                "initContainers": {"type": "array", "items": _MEMBER},
                "volumes": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "properties": {
                            "name": {"type": "string"},
                            "cinder": {
                                "type": "object",
                                "properties": {
                                    "size": {"type": "integer"},
                                    "volumeID": {"type": "string"},
                                },
                            },
                        },
                    },
                },
            },
        },
    },
    "additionalProperties": False,
}
# Magnum's cluster-template create body, from the attribute table the parser uses.
TEMPLATE_BODY: dict[str, Any] = kinds_schema(
    {name: spec.kind for name, spec in cluster_templates.FIELDS.items()},
    required=("coe", "image_id"),
    enums={n: s.choices for n, s in cluster_templates.FIELDS.items() if s.choices},
)
