"""Rebuild in the agent's pure plan: recreate, label, acknowledge; every crash converges."""

from __future__ import annotations

from dataclasses import replace

import pytest

from berth.agent.diff import (
    Acknowledge,
    Action,
    Create,
    EnsureImage,
    History,
    Pause,
    Remove,
    Start,
    plan,
)
from berth.domain.hostsync import DesiredContainer, PendingOp
from berth.runtimes.base import LABEL_REBUILD, RuntimeContainer

REBUILD = PendingOp("req-9", "rebuild", {"image": "busybox:2"})


def want(state: str = "running", **kw: object) -> DesiredContainer:
    base = DesiredContainer(
        uuid="u1",
        name="web",
        project_id="p1",
        image="busybox:2",
        desired_state=state,  # type: ignore[arg-type]
        spec_version=3,
        labels={"team": "a"},
        pending_ops=[REBUILD],
        runtime_id="old",
    )
    return replace(base, **kw)  # type: ignore[arg-type]


def seen(state: str = "running", rebuild_id: str | None = None) -> RuntimeContainer:
    return RuntimeContainer("u1", "old", state, "", 3, rebuild_id=rebuild_id)  # type: ignore[arg-type]


def labelled(d: DesiredContainer) -> DesiredContainer:
    return replace(d, labels={"team": "a", LABEL_REBUILD: "req-9"}, pending_ops=[])


@pytest.mark.parametrize(
    ("desired", "observed", "expected"),
    [
        (
            want("running"),
            seen("running"),
            [EnsureImage("busybox:2", None), Remove(), Create(labelled(want())), Start()],
        ),
        (
            want("created"),
            seen("stopped"),
            [EnsureImage("busybox:2", None), Remove(), Create(labelled(want("created")))],
        ),
        (
            want("paused"),
            seen("paused"),
            [
                EnsureImage("busybox:2", None),
                Remove(),
                Create(labelled(want("paused"))),
                Start(),
                Pause(),
            ],
        ),
        # crashed between remove and create: it existed (runtime_id) yet is rebuilt
        (
            want("running"),
            None,
            [EnsureImage("busybox:2", None), Create(labelled(want())), Start()],
        ),
    ],
    ids=["running", "created", "paused", "crashed-after-remove"],
)
def test_rebuild_recreates_then_acknowledges(
    desired: DesiredContainer, observed: RuntimeContainer | None, expected: list[Action]
) -> None:
    assert plan(desired, observed) == [*expected, Acknowledge("req-9")]


def test_a_container_that_carries_the_rebuild_id_is_done() -> None:
    # crashed after create, before the report: nothing is rebuilt twice
    assert plan(want(), seen("running", rebuild_id="req-9")) == [Acknowledge("req-9")]


def test_an_older_rebuild_label_does_not_count() -> None:
    actions = plan(want(), seen("running", rebuild_id="req-1"))
    assert Remove() in actions and actions[-1] == Acknowledge("req-9")


def test_a_done_rebuild_is_not_planned_again() -> None:
    done = History(done_ops=frozenset({"req-9"}))
    assert plan(want(), seen("running", rebuild_id="req-9"), history=done) == []


def test_a_held_container_is_not_rebuilt() -> None:
    assert plan(want(held=True), seen("running")) == []


def test_delete_wins_over_a_pending_rebuild() -> None:
    assert plan(want("deleted"), seen("running")) == [Remove()]
