"""Magnum's JSON-Patch subset (``add``/``replace``/``remove``) over a plain dict, without I/O.

Rules (spec §4.9): paths match ``^(/[\\w-]+)+$``; values are strings, numbers or
booleans, except that the dict fields accept a Python-literal string such as
``"{'k': 'v'}"`` (what python-magnumclient sends) or a real JSON object; a
top-level ``add`` needs the attribute to be null; some paths are read-only and
some attributes cannot be removed.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterable, Mapping
from typing import Any

from berth import errors

__all__ = ["PatchError", "apply_patch", "check_patch"]

_PATH = re.compile(r"^(/[\w-]+)+$")
_ALWAYS_READ_ONLY = frozenset(
    {"created_at", "id", "links", "updated_at", "uuid", "project_id", "user_id"}
)


class PatchError(errors.Invalid):
    """The patch document is malformed or touches what it may not."""


def _literal(path: str, value: Any) -> Any:
    if not isinstance(value, str):
        return value
    try:
        return ast.literal_eval(value)
    except (ValueError, SyntaxError):
        raise PatchError(f"Invalid value for {path}: {value!r} is not a literal.") from None


def apply_patch(
    doc: Mapping[str, Any],
    patch: Any,
    *,
    dict_fields: Iterable[str] = (),
    read_only: Iterable[str] = (),
    non_removable: Iterable[str] = (),
) -> dict[str, Any]:
    """Return a copy of ``doc`` with ``patch`` applied, or raise PatchError."""
    ops = check_patch(patch, read_only=read_only)
    out: dict[str, Any] = {k: (dict(v) if isinstance(v, dict) else v) for k, v in doc.items()}
    dicts, keep = set(dict_fields), set(non_removable)
    for op in ops:
        kind, path = op["op"], op["path"]
        parts = path.strip("/").split("/")
        top = parts[0]
        if top not in out:
            raise PatchError(f"Can't {kind} {path}: no such attribute.")
        if kind != "remove" and "value" not in op:
            raise PatchError(f"'add' and 'replace' operations need a value ({path}).")
        value = op.get("value")
        if isinstance(value, (list, dict)) and top not in dicts:
            raise PatchError(f"Invalid value for {path}: objects and lists are not allowed.")
        if len(parts) == 1:
            _apply_top(out, kind, top, value, dicts, keep)
        elif len(parts) == 2 and top in dicts:
            _apply_key(out, kind, path, parts[1], value)
        else:
            raise PatchError(f"Can't {kind} {path}: nested paths only exist in dict attributes.")
    return out


def check_patch(patch: Any, *, read_only: Iterable[str] = ()) -> list[dict[str, Any]]:
    """The operations of ``patch`` if its shape is valid, else PatchError; needs no document.

    What Magnum's wsme layer checks before the resource is looked up, so a
    malformed body is a 400 even when the resource does not exist.
    """
    if not isinstance(patch, list) or not patch:
        raise PatchError("The patch must be a non-empty JSON array of operations.")
    ro = _ALWAYS_READ_ONLY | set(read_only)
    for op in patch:
        if not isinstance(op, dict) or set(op) - {"op", "path", "value"}:
            raise PatchError(f"Invalid patch operation: {op!r}.")
        kind, path = op.get("op"), op.get("path")
        if kind not in ("add", "replace", "remove"):
            raise PatchError(f"Invalid patch operation {kind!r}: use add, replace or remove.")
        if not isinstance(path, str) or not _PATH.match(path):
            raise PatchError(f"Invalid patch path {path!r}.")
        if path.strip("/").split("/")[0] in ro:
            raise PatchError(f"'{path}' is an internal attribute and can not be updated")
    return patch


def _apply_top(
    out: dict[str, Any], kind: str, top: str, value: Any, dicts: set[str], keep: set[str]
) -> None:
    if kind == "remove":
        if top in keep:
            raise PatchError(f"Attribute {top} can not be removed")
        out[top] = {} if top in dicts else None
        return
    if kind == "add" and out[top] not in (None, {}, ""):
        raise PatchError(
            f"Adding a new attribute ({top}) to the root of the resource is "
            "not allowed: use replace."
        )
    if top in dicts:
        value = _literal("/" + top, value)
        if not isinstance(value, dict):
            raise PatchError(f"Invalid value for /{top}: a dict is expected.")
    out[top] = value


def _apply_key(out: dict[str, Any], kind: str, path: str, key: str, value: Any) -> None:
    current = dict(out.get(path.split("/")[1]) or {})
    if kind == "remove":
        if key not in current:
            raise PatchError(f"Can't remove {path}: it does not exist.")
        del current[key]
    elif kind == "replace" and key not in current:
        raise PatchError(f"Can't replace {path}: it does not exist.")
    else:
        current[key] = value
    out[path.split("/")[1]] = current
