"""Plug-ins: drivers found through Python entry points, one group per kind of driver.

Every kind of driver Berth can be given (a runtime, a network or a volume driver
on an agent, a cluster driver in the control plane) is a ``Kind``: an
entry-point group whose entries name a factory. Berth declares its own drivers
in its ``pyproject.toml``; a third-party package declares more in its own, and
once it is installed a setting selects them by name without touching Berth.

This module knows nothing of the kinds themselves (each is declared beside its
Protocol, in ``berth.runtimes.base``, ``berth.networks.base``, ...), so the
control plane and the agent side can both use it without importing each other.
"""

from __future__ import annotations

import functools
import logging
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from importlib.metadata import EntryPoint, entry_points
from typing import Generic, TypeVar, cast

from berth import errors

__all__ = ["Kind", "PluginNotFound"]

log = logging.getLogger(__name__)

F = TypeVar("F")


@functools.lru_cache(maxsize=64)
def _scan(
    group: str, path: tuple[str, ...], source: Callable[..., Iterable[EntryPoint]]
) -> tuple[EntryPoint, ...]:
    """The entry points of ``group`` installed on ``path`` (``sys.path`` when asked).

    One scan reads every installed distribution's metadata (~45 ms here, with the
    test extra's ~200 distributions), and the API and the agent each look up
    several kinds as they start (and a test suite starts many apps). A process's
    installed drivers do not change while it runs: a package installed meanwhile is
    found after a restart, as its modules would be; a new ``sys.path`` scans again.
    ``source`` is ``importlib.metadata.entry_points`` (part of the key, so that a test
    which stands another in for it is never answered from an earlier scan).
    """
    del path  # part of the cache key only: entry_points() reads sys.path itself
    return tuple(source(group=group))


class PluginNotFound(errors.BerthError):
    """No installed distribution provides the driver a setting names (or it cannot be loaded)."""


@dataclass(frozen=True, slots=True)
class Kind(Generic[F]):
    """One kind of driver: the entry-point ``group`` whose entries are factories of type ``F``.

    ``noun`` names the kind in messages ("runtime driver"); ``setting`` is the
    setting that selects one (``runtime_driver``), when a setting does.
    """

    group: str
    noun: str
    setting: str | None = None

    def _entries(self) -> dict[str, EntryPoint]:
        # A name declared twice (two distributions): the first on sys.path wins, as for imports.
        found: dict[str, EntryPoint] = {}
        for ep in _scan(self.group, tuple(sys.path), entry_points):
            found.setdefault(ep.name, ep)
        return found

    def names(self) -> list[str]:
        """The names installed under this kind, sorted."""
        return sorted(self._entries())

    def load(self, name: str) -> F:
        """The factory registered as ``name``, or ``PluginNotFound`` naming the installed ones."""
        return self._load(name, self._entries())

    def _load(self, name: str, entries: dict[str, EntryPoint]) -> F:
        ep = entries.get(name)
        if ep is None:
            choices = ", ".join(sorted(entries)) or "none"
            where = ""
            if self.setting:
                where = f" (setting {self.setting}, BERTH_{self.setting.upper()})"
            raise PluginNotFound(
                f"no {self.noun} named {name!r} is installed{where}: the installed ones are "
                f"{choices} (entry-point group {self.group}; after changing Berth's "
                "pyproject.toml, reinstall it with pip install -e .)"
            )
        try:
            factory = ep.load()
        except Exception as exc:
            raise PluginNotFound(
                f"the {self.noun} {name!r} ({ep.value}) cannot be loaded: {exc}"
            ) from exc
        if not callable(factory):
            raise PluginNotFound(f"the {self.noun} {name!r} ({ep.value}) is not callable")
        # Entry points are untyped: the Kind's declaration states what its factories are.
        return cast(F, factory)

    def load_all(self) -> dict[str, F]:
        """Every factory of this kind that loads, by name; a broken one is logged and skipped."""
        loaded: dict[str, F] = {}
        entries = self._entries()  # one scan of the installed distributions, not one a name
        for name in sorted(entries):
            try:
                loaded[name] = self._load(name, entries)
            except PluginNotFound as exc:
                log.error("%s", exc.message)
        return loaded
