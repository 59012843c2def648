"""Every module of ``berth`` imports and says what it offers: ``__all__`` lists only names it has.

One walk over the whole package (STYLE.md habit 2), so a new module is checked the
day it is added. Alembic's migration scripts are left out: Alembic loads them, with
its own context, and they offer nothing to import.
"""

from __future__ import annotations

import importlib
import pkgutil
import types

import pytest

import berth

_MIGRATIONS = "berth.store.migrations"


def _modules() -> list[str]:
    # Sorted names, so every xdist worker collects the same parameters in the same order.
    found = pkgutil.walk_packages(berth.__path__, prefix="berth.")
    names = {m.name for m in found if not m.name.startswith(_MIGRATIONS + ".")}
    return sorted(names | {"berth"})


def _offers(mod: types.ModuleType) -> list[str]:
    """The public names a module defines itself (not its submodules nor imported modules)."""
    return [
        name
        for name, value in vars(mod).items()
        if not name.startswith("_")
        and not isinstance(value, types.ModuleType)
        and name != "annotations"  # `from __future__ import annotations`
    ]


@pytest.mark.parametrize("module", _modules())
def test_the_module_lists_its_public_surface(module: str) -> None:
    mod = importlib.import_module(module)
    listed = getattr(mod, "__all__", None)
    if listed is None:
        # Only a package with nothing in it (an empty __init__) may go without.
        assert hasattr(mod, "__path__") and not _offers(mod), (
            f"{module} has no __all__: list the names it offers (STYLE.md habit 2)"
        )
        return
    assert listed or hasattr(mod, "__path__"), f"{module}.__all__ is empty: list what it offers"
    assert all(isinstance(name, str) for name in listed), module
    assert len(set(listed)) == len(listed), f"{module}.__all__ lists a name twice"
    missing = [name for name in listed if not hasattr(mod, name)]
    assert not missing, f"{module}.__all__ lists names it does not have: {missing}"


def test_the_walk_finds_the_packages() -> None:
    # A broken walk (a wrong path or prefix) would check nothing and pass.
    modules = _modules()
    assert {"berth", "berth.api.zun", "berth.agent.loop", "berth.store"} <= set(modules)
    assert len(modules) > 100
