"""A cluster driver for the live tests of the dashboard and the CLI: no nodes, just steps.

It is registered with a live berth-api through the real extension point: ``install``
writes a ``.dist-info`` with an ``entry_points.txt`` naming ``driver`` below under
``berth.cluster_drivers``, and the server is started with that directory (and this
repository) on its ``PYTHONPATH``. Templates select it with ``driver: e2e-fake``.

Each create/update reports a few steps, ``e2e_step_seconds`` (a label, default 1) apart,
then answers fake addresses; the label ``e2e_fail`` makes a create fail with that message
after its first step.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from berth.clusters import ClusterSpec, DriverInfo, NodeProvisioner, Outcome
from berth.clusters.driver import Report

NAME = "e2e-fake"
REPO = Path(__file__).resolve().parents[2]


class FakeClusterDriver:
    info = DriverInfo(NAME, "vm", "debian", "swarm-mode", "1.0")

    async def _steps(self, spec: ClusterSpec, report: Report, *, fail: bool) -> Outcome:
        pause = float(spec.labels.get("e2e_step_seconds", "1"))
        steps = [f"Preparing the network of {spec.name}"]
        steps += [
            f"Starting master {i + 1} of {spec.master_count}" for i in range(spec.master_count)
        ]
        steps += [f"Starting node {i + 1} of {spec.node_count}" for i in range(spec.node_count)]
        for number, step in enumerate(steps):
            await report(step)
            await asyncio.sleep(pause)
            if fail and number == 0 and spec.labels.get("e2e_fail"):
                raise RuntimeError(spec.labels["e2e_fail"])
        masters = tuple(f"10.99.0.{10 + i}" for i in range(spec.master_count))
        workers = tuple(f"10.99.0.{100 + i}" for i in range(spec.node_count))
        return Outcome(f"tcp://{masters[0]}:2376", masters, workers, "24.0.7", "24.0.7")

    async def create(self, spec: ClusterSpec, nodes: NodeProvisioner, report: Report) -> Outcome:
        return await self._steps(spec, report, fail=True)

    async def update(self, spec: ClusterSpec, nodes: NodeProvisioner, report: Report) -> Outcome:
        return await self._steps(spec, report, fail=False)

    async def delete(self, spec: ClusterSpec, nodes: NodeProvisioner, report: Report) -> None:
        await report(f"Removing the nodes of {spec.name}")
        await asyncio.sleep(0.2)


def driver() -> FakeClusterDriver:
    """The entry point."""
    return FakeClusterDriver()


def install(where: Path) -> dict[str, str]:
    """Register the driver in ``where``; the environment a live server needs to find it."""
    info = where / "berth_e2e_fake_driver-1.0.dist-info"
    info.mkdir(parents=True, exist_ok=True)
    (info / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: berth-e2e-fake-driver\nVersion: 1.0\n"
    )
    (info / "entry_points.txt").write_text(
        f"[berth.cluster_drivers]\n{NAME} = tests.e2e.fake_cluster_driver:driver\n"
    )
    return {"PYTHONPATH": f"{where}:{REPO}"}
