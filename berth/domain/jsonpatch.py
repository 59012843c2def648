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

__all__ = ["MAX_LITERAL", "PatchError", "apply_patch", "check_patch", "python_literal"]

_PATH = re.compile(r"(/[A-Za-z0-9_-]+)+")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
# The longest Python-literal string parsed (a labels dict): past it, parsing only
# costs the server memory and time.
MAX_LITERAL = 65_536
# Entries a dict value (labels) may hold.
MAX_ENTRIES = 128
_ALWAYS_READ_ONLY = frozenset(
    {"created_at", "id", "links", "updated_at", "uuid", "project_id", "user_id"}
)


class PatchError(errors.Invalid):
    """The patch document is malformed or touches what it may not."""


def python_literal(where: str, text: str) -> Any:
    """The Python literal ``text`` (what python-magnumclient sends for dicts), else Invalid.

    ``ast.literal_eval`` raises more than ValueError: TypeError for ``{[]: 1}``,
    RecursionError or MemoryError for deep nesting; each is the client's mistake.
    """
    shown = text[:60] + ("..." if len(text) > 60 else "")
    if len(text) > MAX_LITERAL:
        raise PatchError(f"Invalid value for {where}: longer than {MAX_LITERAL} characters.")
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        raise PatchError(f"Invalid value for {where}: {shown!r} is not a literal.") from None


def _literal(path: str, value: Any) -> Any:
    if not isinstance(value, str):
        return value
    return python_literal(path, value)


def _check_value(path: str, value: Any) -> None:
    """Strings (and dict keys and values) without control characters; dicts bounded."""
    items = list(value.items()) if isinstance(value, dict) else [(None, value)]
    if len(items) > MAX_ENTRIES:
        raise PatchError(f"Invalid value for {path}: at most {MAX_ENTRIES} entries are allowed.")
    for key, item in items:
        for text in (key, item):
            if isinstance(text, str) and _CONTROL.search(text):
                raise PatchError(
                    f"Invalid value for {path}: control characters (NUL, newlines, tabs, ...) "
                    "are not allowed."
                )


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
            raise PatchError(f"Invalid patch operation: {str(op)[:200]}.")
        kind, path = op.get("op"), op.get("path")
        if kind not in ("add", "replace", "remove"):
            raise PatchError(
                f"Invalid patch operation {str(kind)[:40]!r}: use add, replace or remove."
            )
        if not isinstance(path, str) or not _PATH.fullmatch(path):
            raise PatchError(f"Invalid patch path {str(path)[:80]!r}.")
        if "value" in op:
            _check_value(path, op["value"])
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
        _check_value("/" + top, value)
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
