"""Zun's parameter quirks: bool-ish strings, ``None`` strings, query merged with body."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request

from berth import errors
from berth.api.bounds import INT32_MAX, check_text, parse_json
from berth.api.zun.microversions import PREFIX
from berth.domain.paging import Paging

__all__ = [
    "ListQuery",
    "action_params",
    "json_body",
    "list_query",
    "next_link",
    "parse_bool",
    "parse_int",
    "reject_unknown",
    "sort_params",
]

_TRUE = {"true", "True"}
_FALSE = {"false", "False"}
_EXT_TRUE = {"true", "1", "on", "yes"}
_EXT_FALSE = {"false", "0", "off", "no"}


def parse_bool(value: Any, name: str, *, extended: bool = False, default: bool = False) -> bool:
    """A Zun boolean: JSON bool or True/False strings; ``extended`` adds 1/0, on/off, yes/no."""
    if value is None:
        return default
    if isinstance(value, bool):
        return value
    text = str(value)
    if extended:
        if text.lower() in _EXT_TRUE:
            return True
        if text.lower() in _EXT_FALSE:
            return False
    elif text in _TRUE:
        return True
    elif text in _FALSE:
        return False
    raise errors.Invalid(
        f"Invalid input for field/attribute {name}. Value: {value}. "
        f"'{value}' is not a valid boolean value."
    )


def parse_int(
    value: Any, name: str, *, minimum: int | None = None, maximum: int = INT32_MAX
) -> int | None:
    """An integer from JSON or a digit string, at most ``maximum``; ``None``/``"None"`` absent."""
    if value is None or value == "None":
        return None
    if isinstance(value, bool):
        raise errors.Invalid(f"Invalid input for field/attribute {name}. Value: {value}.")
    try:
        number = int(str(value).strip())
    except ValueError:
        raise errors.Invalid(
            f"Invalid input for field/attribute {name}. Value: {value}. It must be an integer."
        ) from None
    if minimum is not None and number < minimum:
        raise errors.Invalid(
            f"Invalid input for field/attribute {name}. Value: {value}. "
            f"It must be at least {minimum}."
        )
    if number > maximum:
        raise errors.Invalid(
            f"Invalid input for field/attribute {name}. Value: {value}. "
            f"It must be at most {maximum}."
        )
    return number


async def json_body(request: Request, *, required: bool) -> dict[str, Any]:
    """The JSON object in the body; 415 without a JSON content type when ``required``."""
    raw = await request.body()
    ctype = request.headers.get("content-type", "")
    if required and "application/json" not in ctype:
        raise errors.UnsupportedMediaType(
            "The server could not comply with the request since it is either malformed or "
            "otherwise incorrect: send the body as JSON with Content-Type: application/json."
        )
    if not raw.strip():
        if required:
            raise errors.Invalid("The request body is empty: send a JSON object.")
        return {}
    if "application/json" not in ctype and not required:
        return {}
    try:
        data = parse_json(raw)
    except ValueError as exc:
        raise errors.Invalid(f"Malformed JSON in request body: {exc}.") from None
    if not isinstance(data, dict):
        raise errors.Invalid("The request body must be a JSON object.")
    check_text(data)  # every body of the API: no NUL, no lone surrogate
    return data


async def action_params(request: Request) -> dict[str, Any]:
    """Action parameters: the query string, overlaid by a JSON body if one was sent."""
    params: dict[str, Any] = dict(request.query_params)
    params.update(await json_body(request, required=False))
    return params


def reject_unknown(params: dict[str, Any], allowed: AbstractSet[str]) -> None:
    unknown = sorted(set(params) - allowed)
    if unknown:
        raise errors.Invalid(f"Unknown parameters: {', '.join(unknown)}")


def sort_params(query: Mapping[str, str]) -> tuple[str, str]:
    """``sort_key`` (default ``id``; services check it) and ``sort_dir`` (asc or desc, else 400)."""
    sort_dir = query.get("sort_dir", "asc")
    if sort_dir not in ("asc", "desc"):
        raise errors.Invalid(f"Invalid sort direction {sort_dir}: use asc or desc.")
    return query.get("sort_key", "id"), sort_dir


def next_link(
    base: str, collection: str, uuids: Sequence[str], page: int, sort_key: str, sort_dir: str
) -> str | None:
    """Zun's ``next``: set only when the page is full, pointing after its last item.

    Unlike self links, ``next`` keeps upstream's ``<host>/v1/...`` path without the
    ``/container`` prefix: the stock client drops scheme, host and ``/v1`` and
    appends the rest to its catalog endpoint (``.../container/v1``), so a prefix
    in the path would be doubled. Berth serves ``/v1/...`` at the root as the
    container API, so the link also resolves when followed as it is.
    """
    if not uuids or len(uuids) < page:
        return None
    host = base.removesuffix(PREFIX)
    return (
        f"{host}/v1/{collection}?sort_key={sort_key}&sort_dir={sort_dir}&limit={page}"
        f"&marker={uuids[-1]}"
    )


_PAGING = frozenset({"all_projects", "limit", "marker", "sort_key", "sort_dir"})


@dataclass(frozen=True, slots=True)
class ListQuery:
    """A collection GET's query: Zun's paging parameters and the route's own filters."""

    all_projects: bool
    limit: int | None
    marker: str | None
    sort_key: str
    sort_dir: str
    filters: dict[str, str]

    @property
    def paging(self) -> Paging:
        """``limit``, ``marker``, ``sort_key``, ``sort_dir`` as the services take them."""
        return Paging(self.limit, self.marker, self.sort_key, self.sort_dir)

    def next_link(self, base: str, collection: str, uuids: Sequence[str], page: int) -> str | None:
        return next_link(base, collection, uuids, page, self.sort_key, self.sort_dir)


def list_query(request: Request, filters: Iterable[str] = ()) -> ListQuery:
    """Parse a list route's query string; 400 for a parameter the route does not know."""
    query = dict(request.query_params)
    names = frozenset(filters)
    reject_unknown(query, _PAGING | names)
    sort_key, sort_dir = sort_params(query)
    return ListQuery(
        all_projects=parse_bool(query.get("all_projects"), "all_projects", extended=True),
        limit=parse_int(query.get("limit"), "limit", minimum=1),
        marker=query.get("marker"),
        sort_key=sort_key,
        sort_dir=sort_dir,
        filters={k: v for k, v in query.items() if k in names},
    )
