"""The suite's module order under pytest-xdist: the most expensive modules first.

``scripts/test`` runs two workers with ``--dist loadfile`` (a module at a time on
one worker, so module fixtures such as a live berth-api or a swarm cluster are made
once) and ``--no-loadscope-reorder``, so modules are handed out in collection order.
xdist's default order, most *tests* first, started the modules with a few long
real-engine tests (a swarm cluster, the compat suite on two runtimes) last, and
one worker ran them alone for minutes while the other idled. Longest first is the
classic schedule for that (longest-processing-time): the long modules overlap,
the cheap ones fill the end.

A module's cost is its seconds in ``tests/module_costs.json`` (setup, call and
teardown of its tests, summed), written by ``--write-module-costs`` after a run
that passed (the modules it ran are updated, the others kept, the deleted
dropped); a module not in the file yet counts as the most expensive, so a new
long module cannot end up last. The order inside a module never changes.
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import pytest

__all__ = [
    "COSTS_FILE",
    "pytest_addoption",
    "pytest_collection_modifyitems",
    "pytest_runtest_logreport",
    "pytest_sessionfinish",
]

COSTS_FILE = Path(__file__).with_name("module_costs.json")
_measured: defaultdict[str, float] = defaultdict(float)


def _costs() -> dict[str, float]:
    try:
        loaded = json.loads(COSTS_FILE.read_text())
    except (OSError, ValueError):
        return {}
    return {str(k): float(v) for k, v in loaded.items()} if isinstance(loaded, dict) else {}


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--write-module-costs",
        action="store_true",
        help=f"after a passing run, record each module's seconds in tests/{COSTS_FILE.name}",
    )


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Most expensive module first (a stable sort: each module keeps its own order)."""
    costs = _costs()
    items.sort(key=lambda item: -costs.get(item.nodeid.split("::", 1)[0], float("inf")))


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    _measured[report.nodeid.split("::", 1)[0]] += report.duration


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    config = session.config
    if not config.getoption("write_module_costs") or exitstatus != 0:
        return
    if hasattr(config, "workerinput"):  # an xdist worker: the controller writes
        return
    costs = {**_costs(), **_measured}
    root = config.rootpath
    kept = {k: round(v, 1) for k, v in sorted(costs.items()) if (root / k).is_file()}
    COSTS_FILE.write_text(json.dumps(kept, indent=1) + "\n")
