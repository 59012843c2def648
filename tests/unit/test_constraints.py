"""constraints.txt pins what pyproject.toml asks for, and the suite runs on those pins.

scripts/lib.sh installs ``.venv`` with ``pip install -c constraints.txt -e ".[test]"``:
a requirement added to pyproject.toml without a pin would float to whatever PyPI holds
on the day (and a pin outside pyproject's range would make the install fail).
"""

from __future__ import annotations

import tomllib
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]


def _pins() -> dict[str, str]:
    pins: dict[str, str] = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, _, pinned = line.partition("==")
            assert pinned, f"constraints.txt: {line!r} is not an exact pin (name==version)"
            pins[canonicalize_name(name)] = pinned.strip()
    return pins


def _requirements() -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = list(project["dependencies"])
    for extra in project.get("optional-dependencies", {}).values():
        wanted += extra
    return [Requirement(spec) for spec in wanted]


def test_every_requirement_is_pinned_within_its_range() -> None:
    pins = _pins()
    for req in _requirements():
        name = canonicalize_name(req.name)
        assert name in pins, f"{req.name} (pyproject.toml) has no pin: scripts/update-constraints"
        assert req.specifier.contains(pins[name], prereleases=True), (
            f"constraints.txt pins {req.name}=={pins[name]}, outside pyproject.toml's {req}"
        )


def test_the_suite_runs_on_the_pinned_versions() -> None:
    """The libraries this process imports are the pinned ones (scripts/test installed
    them), so the figures in docs/benchmarks.md and a CI run compare like with like."""
    pins = _pins()
    drift = {}
    for req in _requirements():
        name = canonicalize_name(req.name)
        try:
            installed = version(req.name)
        except PackageNotFoundError:
            continue  # an extra this venv was not installed with
        if installed != pins[name]:
            drift[req.name] = (installed, pins[name])
    assert not drift, f"installed != pinned (run scripts/test to reinstall .venv): {drift}"
