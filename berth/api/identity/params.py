"""Query-string helpers for the identity routes, with Keystone's lenient flag semantics."""

from __future__ import annotations

from fastapi import Request

from berth import errors
from berth.api.identity.views import v3_url
from berth.config import Settings

__all__ = ["flag", "optional_bool", "self_url", "subject_token"]

_FALSE = frozenset({"0", "false", "no", "off", "f", "n"})


def flag(request: Request, name: str) -> bool:
    """True when ``?name`` is present and not explicitly false (``?nocatalog`` counts as true)."""
    value = request.query_params.get(name)
    return value is not None and value.strip().lower() not in _FALSE


def optional_bool(request: Request, name: str) -> bool | None:
    """``None`` when the parameter is absent, else its truth value."""
    if name not in request.query_params:
        return None
    return flag(request, name)


def self_url(request: Request, settings: Settings, path: str) -> str:
    """The ``links.self`` of a list: its public URL with the query string kept."""
    url = f"{v3_url(request, settings)}/{path}"
    query = request.url.query
    return f"{url}?{query}" if query else url


def subject_token(request: Request) -> str:
    """The token named by ``X-Subject-Token``; ``Invalid`` when the header is missing."""
    token = request.headers.get("x-subject-token")
    if not token:
        raise errors.Invalid("The X-Subject-Token header is required.")
    return token
