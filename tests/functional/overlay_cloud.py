"""The multi-host overlay cloud: test hosts apart at the network level, on the overlay driver.

Each test host is a network namespace with its own dockerd and berth-agent
(``tests/functional/underlay.py``, ``tests/functional/hosts.py``); berth-api and
every agent run with the overlay network driver. ``tests/functional/test_overlay.py``
(the overlay itself) and ``tests/functional/test_swarm_across_hosts.py`` (a swarm
cluster on two of these hosts) each build one for their module.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

from berth.networks.base import NETWORK_DRIVERS
from tests.functional.docker_engine import engine_or_skip, ensure_test_image
from tests.functional.hosts import Cloud, HostSpec, cloud

__all__ = ["AGENTS", "OVERLAY", "overlay_cloud"]

REPO = Path(__file__).resolve().parents[2]
OVERLAY = {"BERTH_NETWORK_DRIVER": "overlay"}
# Networks no container wants leave a host at once (a tunnel endpoint goes with its network).
AGENTS = {**OVERLAY, "BERTH_NETWORK_IDLE_SECONDS": "0"}


def _declared(site: Path) -> dict[str, str]:
    """The environment that lets an agent load the ``overlay`` driver by name.

    Berth declares it in pyproject.toml; an install made before that does not list
    it yet, so the test then registers it itself (as a third-party plug-in would).
    """
    if "overlay" in NETWORK_DRIVERS.names():
        return {}
    info = site / "berth_overlay_test-1.0.dist-info"
    info.mkdir(parents=True, exist_ok=True)
    (info / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: berth-overlay-test\nVersion: 1.0\n"
    )
    (info / "entry_points.txt").write_text(
        "[berth.networks]\noverlay = berth.networks.overlay:driver\n"
    )
    paths = [str(site), os.environ.get("PYTHONPATH", ""), str(REPO)]
    return {"PYTHONPATH": ":".join(p for p in paths if p)}


@contextlib.contextmanager
def overlay_cloud(
    work: Path,
    specs: list[HostSpec],
    api_settings: dict[str, str] | None = None,
    images: tuple[str, ...] = (),
) -> Iterator[Cloud]:
    """A cloud of ``specs`` hosts apart, on the overlay; ``images`` copied onto each host."""
    engine = engine_or_skip()
    ensure_test_image(engine)
    try:
        with cloud(
            work,
            specs,
            engine,
            {"BERTH_SERVICE_DOWN_TIME": "30", **OVERLAY, **(api_settings or {})},
            separate=True,
            agent_settings={**AGENTS, **_declared(work / "site-packages")},
            images=images,
        ) as c:
            yield c
    finally:
        engine.close()
