"""Statements built once per shape, with the request's values bound when they run.

Building a SELECT through the ORM (each ``Row.column == value`` goes through the
attribute's comparator, then ``order_by`` and ``limit`` copy the statement) and
then walking it for SQLAlchemy's cache key cost about 0.3 ms of CPU per request
on the slower of the CPUs measured: a quarter of an empty container list
(bench/list_throughput.py, docs/benchmarks.md). The hot reads (a container list,
a container show: what clients poll) instead take a statement made once for their
*shape*, which columns they compare and how they sort, whose values are bind
parameters. SQLAlchemy memoizes a statement's cache key on the object, so a
statement that is reused is neither rebuilt nor walked again.

A shape holds no value: the project a request may see is the bind parameter
``SCOPE_PROJECT``, given with the other values at execution (``scope_params``).
The cache is bounded (a tenant cycling filter combinations only evicts shapes).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any, TypeVar

from sqlalchemy import Select, bindparam

from berth.store.scope import Scope

__all__ = ["MAX_SHAPES", "SCOPE_PROJECT", "cached", "scope_params", "scoped", "size"]

S = TypeVar("S")

# Distinct statements kept: every shape the API's hot reads can take is a few
# hundred (containers: which of ~15 filters are given, 12 sort keys, 2 directions,
# scoped or not), and the usual ones a handful; each is a few kilobytes.
MAX_SHAPES = 512
SCOPE_PROJECT = "scope_project"

_shapes: OrderedDict[Hashable, Any] = OrderedDict()


def cached(key: Hashable, build: Callable[[], S]) -> S:
    """The statement made by ``build`` for ``key``, made once while it stays in the cache.

    ``key`` must name everything ``build`` puts into the statement (the model, which
    columns, the sort, whether it is scoped): two shapes with one key would share a
    statement. Values go in as bind parameters, never into ``build``'s closure.
    """
    found = _shapes.get(key)
    if found is None:
        found = build()
        _shapes[key] = found
        if len(_shapes) > MAX_SHAPES:
            _shapes.popitem(last=False)
    else:
        _shapes.move_to_end(key)
    return found  # type: ignore[no-any-return]


def scoped(stmt: Select[Any], model: Any, all_projects: bool) -> Select[Any]:
    """``stmt`` limited to the project bound as ``SCOPE_PROJECT`` (all rows with
    ``all_projects``, which only the services set after the policy allowed it)."""
    if all_projects:
        return stmt
    return stmt.where(model.project_id == bindparam(SCOPE_PROJECT))


def scope_params(scope: Scope) -> dict[str, Any]:
    """The values a ``scoped`` statement of ``scope`` runs with."""
    return {} if scope.all_projects else {SCOPE_PROJECT: scope.project_id}


def size() -> int:
    """How many shapes are cached (for tests)."""
    return len(_shapes)
